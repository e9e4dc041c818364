/**
 * Trains several SAEs from one stream of activation batches: each SAE (its own architecture, width,
 * coefficients, hook) takes the columns of its hook from every batch. A pipeline stage calls `step` per
 * batch and writes the returned metrics; `saveCheckpoint` writes SAELens folders plus what resumption
 * needs, and `SaeTrainer.resume` continues bit-identically.
 *
 * When some SAE normalises its activations (`expected_average_only_in`), the first batches go to the
 * norm estimate (`n_batches_for_norm_estimate`, as SAELens, they are not trained on) and no SAE trains
 * until every estimate is complete, so that all SAEs see the same batches in the same order. An SAE that
 * has reached its `training_tokens` stops; the trainer is done when all are.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../pipeline/errors.js';
import { writeDirAtomic } from './atomic-dir.js';
import { resolveSaeTrainingConfigs, targetHook } from './config.js';
import type { StepEngineName } from './engines/step-engine.js';
import type { SaeTrainingConfig } from './config.js';
import { saelensConfig, writeSaeFolderFiles } from './saelens-folder.js';
import { readTrainerState, writeTrainerState } from './trainer-state.js';
import { TrainingSae } from './training-sae.js';
import type { SaeStepMetrics } from './training-sae.js';

export interface TrainingBatch {
  /** Tokens in the batch. */
  rows: number;
  /** Activations by hook name, each row-major [rows, width] float32. */
  activations: Readonly<Record<string, Float32Array>>;
}

export interface TrainerStepResult {
  /** `norm_estimate` while batches feed the normalisation estimates; `train` otherwise. */
  phase: 'norm_estimate' | 'train';
  /** Batches consumed so far, including this one. */
  batches: number;
  /** One entry per SAE that trained on this batch. */
  saes: SaeStepMetrics[];
}

export const TRAINER_MANIFEST = 'trainer.json';

/**
 * Writes another stage's state into a checkpoint being assembled in `dir`, for a trainer that has consumed
 * `batches` batches. No step runs while it does, so that count holds throughout.
 */
export type CheckpointPart = (dir: string, batches: number) => void | Promise<void>;

interface Manifest {
  format: 'saeflow-sae-trainer';
  version: 1;
  batches: number;
  saes: string[];
}

function firstNonFinite(data: Float32Array): number {
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i]!)) return i;
  return -1;
}

export class SaeTrainer {
  /** Batches consumed (norm estimation and training). */
  batches = 0;

  /** Steps and checkpoints run one at a time (downstream stages save while upstream ones train). */
  private exclusive: Promise<unknown> = Promise.resolve();

  /** Writers of the state that other stages add to every resumable checkpoint (see `addCheckpointPart`). */
  private readonly parts: CheckpointPart[] = [];

  private constructor(readonly saes: TrainingSae[]) {}

  /** Runs `fn` after every earlier step or save has finished, and before any later one starts. */
  private serialised<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.exclusive.then(fn, fn);
    this.exclusive = run.catch(() => undefined);
    return run;
  }

  /**
   * Validates the configs (UserError naming the field) and initialises every SAE on the step engine
   * `engine` (default tfjs).
   */
  static create(configs: readonly unknown[], options: { engine?: StepEngineName } = {}): SaeTrainer {
    return new SaeTrainer(
      resolveSaeTrainingConfigs(configs).map((cfg) => TrainingSae.create(cfg, options.engine)),
    );
  }

  /**
   * Continues from a checkpoint written by `saveCheckpoint`. With `configs`, they must equal the saved ones
   * (a changed option is a UserError naming it); without, the saved configs are used.
   */
  static async resume(
    dir: string,
    options: { configs?: readonly unknown[]; engine?: StepEngineName } = {},
  ): Promise<SaeTrainer> {
    const manifestPath = path.join(dir, TRAINER_MANIFEST);
    let manifest: Manifest;
    try {
      manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as Manifest;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT')
        throw new UserError(`not a trainer checkpoint: ${manifestPath} is missing`);
      throw new UserError(`${manifestPath}: ${(e as Error).message}`);
    }
    if (
      manifest.format !== 'saeflow-sae-trainer' ||
      manifest.version !== 1 ||
      !Array.isArray(manifest.saes)
    ) {
      throw new UserError(
        `${manifestPath}: not a saeflow trainer checkpoint (format ${JSON.stringify(manifest.format)})`,
      );
    }
    const expected = options.configs ? resolveSaeTrainingConfigs(options.configs) : undefined;
    if (expected) {
      const names = expected.map((c) => c.name);
      if (JSON.stringify(names) !== JSON.stringify(manifest.saes)) {
        throw new UserError(
          `cannot resume from ${dir}: it holds SAEs [${manifest.saes.join(', ')}] but the configs name [${names.join(', ')}]`,
        );
      }
    }
    const saes: TrainingSae[] = [];
    try {
      for (const [i, name] of manifest.saes.entries())
        saes.push(await readTrainerState(path.join(dir, name), expected?.[i], options.engine));
    } catch (e) {
      for (const s of saes) s.dispose();
      throw e;
    }
    resolveSaeTrainingConfigs(saes.map((s) => s.cfg));
    const trainer = new SaeTrainer(saes);
    trainer.batches = manifest.batches;
    return trainer;
  }

  get configs(): SaeTrainingConfig[] {
    return this.saes.map((s) => s.cfg);
  }

  get done(): boolean {
    return this.saes.every((s) => s.done);
  }

  /** Every hook some SAE reads (inputs and transcoder targets), in first-use order. */
  get hooks(): string[] {
    return [...new Set(this.saes.flatMap((s) => [s.cfg.hook_name, targetHook(s.cfg)]))];
  }

  /** Checks hook widths (from a cache manifest or the model) against the configs before any training. */
  checkHookWidths(widths: Readonly<Record<string, number>>, source = 'the activations'): void {
    for (const sae of this.saes) {
      const sides: [string, number, string][] = [[sae.cfg.hook_name, sae.cfg.d_in, 'd_in']];
      if (sae.cfg.d_out !== null) sides.push([targetHook(sae.cfg), sae.cfg.d_out, 'd_out']);
      for (const [hook, width, field] of sides) {
        const got = widths[hook];
        if (got === undefined) {
          throw new UserError(
            `SAE '${sae.name}' reads hook '${hook}', which ${source} do not provide (they have: ${Object.keys(widths).join(', ') || 'none'})`,
          );
        }
        if (got !== width) {
          throw new UserError(
            `SAE '${sae.name}': hook '${hook}' has width ${got} in ${source} but ${field} is ${width}`,
          );
        }
      }
    }
  }

  private hookData(
    batch: TrainingBatch,
    hook: string,
    width: number,
    sae: TrainingSae,
    field: string,
    index: number,
  ): Float32Array {
    const data = batch.activations[hook];
    const where = `batch ${index}`;
    if (data === undefined) {
      throw new UserError(
        `${where}: SAE '${sae.name}' reads hook '${hook}', which the batch lacks (it has: ${Object.keys(batch.activations).join(', ')})`,
      );
    }
    if (!(data instanceof Float32Array))
      throw new UserError(`${where}: hook '${hook}' must be a Float32Array`);
    if (data.length !== batch.rows * width) {
      const actual =
        data.length % batch.rows === 0 ? `width ${data.length / batch.rows}` : `${data.length} values`;
      throw new UserError(
        `${where}: hook '${hook}' has ${actual} for ${batch.rows} tokens but SAE '${sae.name}' has ${field} = ${width}`,
      );
    }
    return data;
  }

  private checkFinite(
    batch: TrainingBatch,
    hooks: Map<string, { width: number; readers: string[] }>,
    index: number,
  ): void {
    for (const [hook, { width, readers }] of hooks) {
      const data = batch.activations[hook]!;
      const i = firstNonFinite(data);
      if (i >= 0) {
        const step = (this.saes.find((s) => !s.done)?.step ?? 0) + index - this.batches;
        throw new UserError(
          `batch ${index} (step ${step}): activations of hook '${hook}' contain ${data[i]} at token ${Math.floor(i / width)}, ` +
            `dimension ${i % width} (read by SAE${readers.length > 1 ? 's' : ''} ${readers.map((r) => `'${r}'`).join(', ')}); nothing was trained on this batch`,
        );
      }
    }
  }

  /**
   * Consumes one batch: either adds it to the normalisation estimates or takes one optimiser step for every
   * SAE still training. Bad input (missing hook, wrong width, NaN/inf) and divergence are UserErrors; after
   * one, every SAE still holds its parameters from the last good step.
   */
  async step(batch: TrainingBatch): Promise<TrainerStepResult> {
    return (await this.steps([batch]))[0]!;
  }

  /** Batches `steps` runs together at most: the smallest chunk of the SAEs' step engines. */
  get chunkSteps(): number {
    return Math.min(...this.saes.map((s) => s.engine.maxChunkSteps));
  }

  /**
   * How many batches of `rows` tokens to hand `steps` next: 1 while normalisation estimates are pending,
   * else as many as a chunk takes but no more than the SAEs still need.
   */
  batchesWanted(rows: number): number {
    const active = this.saes.filter((s) => !s.done);
    if (active.length === 0 || active.some((s) => s.pendingNormBatches > 0)) return 1;
    const needed = Math.max(...active.map((s) => Math.ceil((s.cfg.training_tokens - s.tokens) / rows)));
    return Math.max(1, Math.min(this.chunkSteps, needed));
  }

  /**
   * Consumes batches in order, with the results of as many `step` calls: batches for the normalisation
   * estimates one by one, then each SAE trains on the training batches it still needs in one
   * `trainSteps` call (so an engine with chunks takes several steps per run). Every batch is checked
   * before any SAE trains on the run it belongs to.
   */
  steps(batches: readonly TrainingBatch[]): Promise<TrainerStepResult[]> {
    return this.serialised(() => this.stepsNow(batches));
  }

  private async stepsNow(batches: readonly TrainingBatch[]): Promise<TrainerStepResult[]> {
    const results: TrainerStepResult[] = [];
    let i = 0;
    while (i < batches.length) {
      const active = this.saes.filter((s) => !s.done);
      if (active.some((s) => s.pendingNormBatches > 0)) {
        const inputs = this.inputsOf(batches[i]!, active, this.batches);
        for (const sae of active) {
          if (sae.pendingNormBatches > 0)
            sae.observeNormBatch(inputs.get(sae)!.x, inputs.get(sae)!.y, batches[i]!.rows);
        }
        this.batches += 1;
        results.push({ phase: 'norm_estimate', batches: this.batches, saes: [] });
        i += 1;
        continue;
      }
      const run = batches.slice(i);
      const inputs = run.map((b, j) => this.inputsOf(b, active, this.batches + j));
      const perBatch: SaeStepMetrics[][] = run.map(() => []);
      // One SAE after another: each step uses every core, and a divergence stops before the next SAE.
      for (const sae of active) {
        let tokens = sae.tokens;
        let needed = 0;
        while (needed < run.length && tokens < sae.cfg.training_tokens) tokens += run[needed++]!.rows;
        const metrics = await sae.trainSteps(
          run.slice(0, needed).map((b, j) => ({ ...inputs[j]!.get(sae)!, rows: b.rows })),
        );
        metrics.forEach((m, j) => perBatch[j]!.push(m));
      }
      for (const saes of perBatch) {
        this.batches += 1;
        results.push({ phase: 'train', batches: this.batches, saes });
      }
      i = batches.length;
    }
    return results;
  }

  /** Each active SAE's input (and target) in `batch`, checked for presence, width and finiteness. */
  private inputsOf(
    batch: TrainingBatch,
    active: readonly TrainingSae[],
    index: number,
  ): Map<TrainingSae, { x: Float32Array; y: Float32Array | null }> {
    if (!Number.isSafeInteger(batch.rows) || batch.rows < 1) {
      throw new UserError(`batch ${index}: rows must be a positive integer, got ${batch.rows}`);
    }
    const inputs = new Map<TrainingSae, { x: Float32Array; y: Float32Array | null }>();
    const hooks = new Map<string, { width: number; readers: string[] }>();
    const note = (hook: string, width: number, name: string): void => {
      const entry = hooks.get(hook) ?? { width, readers: [] };
      entry.readers.push(name);
      hooks.set(hook, entry);
    };
    for (const sae of active) {
      const x = this.hookData(batch, sae.cfg.hook_name, sae.cfg.d_in, sae, 'd_in', index);
      note(sae.cfg.hook_name, sae.cfg.d_in, sae.name);
      let y: Float32Array | null = null;
      if (sae.cfg.d_out !== null) {
        y = this.hookData(batch, targetHook(sae.cfg), sae.cfg.d_out, sae, 'd_out', index);
        note(targetHook(sae.cfg), sae.cfg.d_out, sae.name);
      }
      inputs.set(sae, { x, y });
    }
    this.checkFinite(batch, hooks, index);
    return inputs;
  }

  /**
   * Writes `dir/<sae name>/` SAELens folders (normalisation folded in) with `trainer_state.safetensors`
   * beside them, and `dir/trainer.json`, atomically: a checkpoint already at `dir` is replaced only once
   * the new one is complete. Refuses (UserError, nothing written) when a parameter is not finite, so a
   * diverged run never overwrites a good checkpoint. `trainerState: false` writes only the SAELens folders.
   */
  saveCheckpoint(dir: string, options: { trainerState?: boolean } = {}): Promise<void> {
    return this.serialised(() => this.saveNow(dir, options));
  }

  private async saveNow(dir: string, options: { trainerState?: boolean }): Promise<void> {
    const withState = options.trainerState ?? true;
    const snapshots = this.saes.map((sae) => {
      const params = sae.hostParams();
      const bad = sae.nonFiniteParams(params);
      if (bad.length > 0) {
        throw new UserError(
          `not saving ${dir}: SAE '${sae.name}' has non-finite values in ${bad.join(', ')} (step ${sae.step})`,
        );
      }
      return { sae, params };
    });
    await writeDirAtomic(dir, async (tmp) => {
      for (const { sae, params } of snapshots) {
        const sub = path.join(tmp, sae.name);
        await mkdir(sub);
        const weights = sae.inferenceWeights(params);
        await writeSaeFolderFiles(
          sub,
          saelensConfig(sae.cfg, weights.architecture),
          weights,
          sae.stats.logFeatureDensity(),
        );
        if (withState) await writeTrainerState(sub, sae, params);
      }
      if (withState) {
        const manifest: Manifest = {
          format: 'saeflow-sae-trainer',
          version: 1,
          batches: this.batches,
          saes: this.saes.map((s) => s.name),
        };
        await writeFile(path.join(tmp, TRAINER_MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
        for (const part of this.parts) await part(tmp, this.batches);
      }
    });
  }

  /**
   * Adds state that belongs with the trainer's in every resumable checkpoint, so that both describe the
   * same moment (the activation store that feeds it: resuming then needs no replay of its input).
   */
  addCheckpointPart(part: CheckpointPart): void {
    this.parts.push(part);
  }

  dispose(): void {
    for (const sae of this.saes) sae.dispose();
  }
}
