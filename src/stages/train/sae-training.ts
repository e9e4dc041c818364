import type { Flow } from '../../pipeline/flow.js';
import type { Logger } from '../../pipeline/logger.js';
import type { MetricsWriter } from '../../pipeline/metrics.js';
import type { Progress } from '../../pipeline/progress.js';
import { asyncStage } from '../../pipeline/async-stage.js';
import type { Stage } from '../../pipeline/stage.js';
import type { SaeStepMetrics, SaeTrainer } from '../../sae/index.js';
import type { TrainingBatch } from '../store/activation-store.js';

export interface SaeTrainingOptions {
  trainer: SaeTrainer;
  /** Where the resumable checkpoint (SAELens folders + optimiser/trainer state) is kept. */
  checkpointDir: string;
  /** Where the final SAELens folders go (one per SAE) when training completes. */
  outputDir: string;
  /** Write a checkpoint every this many training tokens (0: only at the end and on interruption). */
  checkpointEveryTokens: number;
  /**
   * Also write one when this many minutes have passed since the last (0: never by time), so that a
   * run killed without warning (SIGKILL, a lost node) loses at most that much work.
   */
  checkpointEveryMinutes?: number;
  /** Clock in milliseconds (tests replace it). */
  now?: () => number;
  flow?: Flow;
  progress?: Progress;
  metrics?: MetricsWriter;
  log?: Logger;
}

export interface SaeTrainingSummary {
  status: 'completed' | 'interrupted' | 'data_exhausted';
  batches: number;
  saes: Array<{ name: string; tokens: number; final: SaeStepMetrics | null; path: string | null }>;
  checkpoint: string;
}

/** The latest metrics line of each SAE, for the live progress display (a sweep shows the first SAE's). */
function progressValues(m: SaeStepMetrics): Record<string, number> {
  return { loss: m.loss, l0: m.l0, ev: m.explained_variance, dead: m.dead_features };
}

/**
 * The trainer stage: shuffled training batches in, one summary out when the input ends or every SAE has
 * seen its `training_tokens`. Each step's metrics go to metrics.jsonl (`event: "train"`, one record per
 * SAE); checkpoints are written every `checkpointEveryTokens` and when the run is interrupted, so that
 * `--resume` continues exactly; the final SAELens folders are written when training completes.
 * Width mismatches between the activations and the SAE configs fail before the first step.
 */
export function saeTraining(options: SaeTrainingOptions): Stage<TrainingBatch, SaeTrainingSummary> {
  const { trainer, flow, progress, metrics, log } = options;
  const last = new Map<string, SaeStepMetrics>();
  let checked = false;
  let sinceCheckpoint = 0;
  const now = options.now ?? Date.now;
  const everyMs = (options.checkpointEveryMinutes ?? 0) * 60_000;
  let lastCheckpointAt = now();
  // Batches wait here until there are as many as the trainer takes in one call (a chunk of steps).
  const pending: TrainingBatch[] = [];
  const train = async (): Promise<void> => {
    const batches = pending.splice(0);
    const results = await trainer.steps(batches.map((b) => ({ rows: b.rows, activations: b.hooks })));
    results.forEach((result, i) => {
      for (const m of result.saes) {
        last.set(m.sae, m);
        metrics?.write('train', { ...m });
      }
      const rows = batches[i]!.rows;
      progress?.advance({ items: 1, tokens: result.phase === 'train' ? rows : 0 });
      const first = result.saes[0];
      if (first) progress?.report(progressValues(first));
      sinceCheckpoint += rows;
    });
    const byTokens = options.checkpointEveryTokens > 0 && sinceCheckpoint >= options.checkpointEveryTokens;
    const byTime = everyMs > 0 && now() - lastCheckpointAt >= everyMs;
    if ((byTokens || byTime) && !trainer.done) {
      sinceCheckpoint = 0;
      lastCheckpointAt = now();
      await trainer.saveCheckpoint(options.checkpointDir);
      log?.info(`checkpoint after ${trainer.batches} batches: ${options.checkpointDir}`);
    }
  };
  return asyncStage<TrainingBatch, SaeTrainingSummary>(
    'sae-training',
    async (batch) => {
      if (trainer.done) return;
      if (!checked) {
        const widths = Object.fromEntries(
          Object.entries(batch.hooks).map(([h, v]) => [h, v.length / batch.rows]),
        );
        trainer.checkHookWidths(widths);
        checked = true;
      }
      pending.push(batch);
      if (pending.length >= trainer.batchesWanted(batch.rows) || pending[0]!.rows !== batch.rows)
        await train();
    },
    {
      flow,
      flush: async (emit) => {
        // Batches still waiting are trained unless the run was interrupted (a resumed run replays them).
        if (pending.length > 0 && !flow?.stopped && !trainer.done) await train();
        await trainer.saveCheckpoint(options.checkpointDir);
        const status: SaeTrainingSummary['status'] = trainer.done
          ? 'completed'
          : flow?.stopped
            ? 'interrupted'
            : 'data_exhausted';
        if (status !== 'interrupted')
          await trainer.saveCheckpoint(options.outputDir, { trainerState: false });
        if (status === 'data_exhausted') {
          log?.warn(
            'the activations ran out before training_tokens was reached; the SAEs were saved as they are',
          );
        }
        emit({
          status,
          batches: trainer.batches,
          checkpoint: options.checkpointDir,
          saes: trainer.configs.map((cfg) => ({
            name: cfg.name,
            tokens: last.get(cfg.name)?.tokens ?? 0,
            final: last.get(cfg.name) ?? null,
            path: status === 'interrupted' ? null : `${options.outputDir}/${cfg.name}`,
          })),
        });
      },
    },
  );
}
