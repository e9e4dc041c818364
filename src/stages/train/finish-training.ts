/**
 * The end of a training run: consumes the steps, and when they end writes the resumable checkpoint and,
 * unless the run was interrupted, the final SAELens folders (one per SAE); emits one summary. The run
 * completed when every SAE saw its `training_tokens`, was interrupted on Ctrl-C (`--resume` continues
 * exactly), or ran out of data (the SAEs are saved as they are, with a warning).
 */
import { asyncStage } from '../../pipeline/async-stage.js';
import type { Flow } from '../../pipeline/flow.js';
import type { Logger } from '../../pipeline/logger.js';
import type { Stage } from '../../pipeline/stage.js';
import type { SaeStepMetrics, SaeTrainer } from '../../sae/index.js';
import type { TrainingStep } from './train-steps.js';

export interface TrainingSummary {
  status: 'completed' | 'interrupted' | 'data_exhausted';
  batches: number;
  saes: Array<{ name: string; tokens: number; final: SaeStepMetrics | null; path: string | null }>;
  checkpoint: string;
}

export function finishTraining(
  trainer: SaeTrainer,
  options: { checkpointDir: string; outputDir: string; flow?: Flow; log?: Logger },
): Stage<TrainingStep, TrainingSummary> {
  const last = new Map<string, SaeStepMetrics>();
  return asyncStage<TrainingStep, TrainingSummary>(
    'finish-training',
    (step) => {
      for (const m of step.saes) last.set(m.sae, m);
    },
    {
      flow: options.flow,
      flush: async (emit) => {
        await trainer.saveCheckpoint(options.checkpointDir);
        const status: TrainingSummary['status'] = trainer.done
          ? 'completed'
          : options.flow?.stopped
            ? 'interrupted'
            : 'data_exhausted';
        if (status !== 'interrupted')
          await trainer.saveCheckpoint(options.outputDir, { trainerState: false });
        if (status === 'data_exhausted')
          options.log?.warn(
            'the activations ran out before training_tokens was reached; the SAEs were saved as they are',
          );
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
