import { Observable } from 'rxjs';
import {
  activationIds,
  hookMatrix,
  hookNames,
  hookValues,
  type ActivationBatch,
} from '../../arrow/activation-batch.js';
import { UserError } from '../../pipeline/errors.js';
import { defineStage, type Stage } from '../../pipeline/stage.js';
import { Mulberry32 } from '../../util/random.js';
import { MixingBuffer } from './mixing-buffer.js';
import {
  estimateScalingFactors,
  normalizeRowsInPlace,
  scaleInPlace,
  storeAppliesScaling,
  type NormalizeMode,
} from './normalization.js';
import { concatBlocks, gatherRows, type HookWidths, type RowBlock } from './row-block.js';

export interface ActivationStoreOptions {
  /** Hooks to serve, all from the same tokens (e.g. a transcoder's input and output hook). */
  hooks: readonly string[];
  /** Rows (tokens) per training batch (SAELens `train_batch_size_tokens`). */
  trainBatchSizeTokens: number;
  /** Buffer capacity in training batches: the buffer holds `nBatchesInBuffer * trainBatchSizeTokens` rows. */
  nBatchesInBuffer: number;
  seed: number;
  /** Tokens whose rows are dropped (SAELens `exclude_special_tokens`; for GPT-2, BOS/EOS 50256). */
  excludeTokenIds?: readonly number[];
  normalizeActivations?: NormalizeMode;
  /** Training batches' worth of rows used to estimate the scaling factor (`expected_average_only_in`). */
  nBatchesForNormEstimate?: number;
  /** Called once with the scaling factors when they are known (to record and later fold them). */
  onScalingFactors?: (factors: Record<string, number>) => void;
}

/** A shuffled batch of activations for training: `hooks[h]` is row-major [rows, d_h], float32. */
export interface TrainingBatch {
  /** 0, 1, 2, ... in the order served. */
  readonly index: number;
  readonly rows: number;
  readonly hooks: Readonly<Record<string, Float32Array>>;
  /** The factor each hook was multiplied by (1 unless `expected_average_only_in`). */
  readonly scalingFactors: Readonly<Record<string, number>>;
}

function checkOptions(o: ActivationStoreOptions): void {
  if (o.hooks.length === 0) throw new UserError('the activation store needs at least one hook');
  if (!Number.isInteger(o.trainBatchSizeTokens) || o.trainBatchSizeTokens < 1) {
    throw new UserError(`train_batch_size_tokens must be a positive integer, got ${o.trainBatchSizeTokens}`);
  }
  if (!Number.isInteger(o.nBatchesInBuffer) || o.nBatchesInBuffer < 2) {
    throw new UserError(`n_batches_in_buffer must be an integer >= 2, got ${o.nBatchesInBuffer}`);
  }
  const est = o.nBatchesForNormEstimate ?? 100;
  if (!Number.isInteger(est) || est < 1) {
    throw new UserError(`n_batches_for_norm_estimate must be a positive integer, got ${est}`);
  }
}

/** The rows of an activation batch for the served hooks, minus excluded tokens. */
function toRowBlock(batch: ActivationBatch, widths: HookWidths, exclude: ReadonlySet<number>): RowBlock {
  const hooks: Record<string, Float32Array> = {};
  for (const hook of Object.keys(widths)) hooks[hook] = hookMatrix(batch, hook);
  const block: RowBlock = { rows: batch.numRows, hooks };
  if (exclude.size === 0) return block;
  const ids = activationIds(batch);
  if (!ids) return block;
  const keep: number[] = [];
  for (let r = 0; r < batch.numRows; r++) if (!exclude.has(ids.token[r] as number)) keep.push(r);
  return keep.length === batch.numRows ? block : gatherRows(block, widths, keep);
}

function widthsOf(batch: ActivationBatch, hooks: readonly string[]): HookWidths {
  const available = hookNames(batch);
  const widths: Record<string, number> = {};
  for (const hook of hooks) {
    if (!available.includes(hook)) {
      throw new UserError(
        `hook ${hook} is not in the activations; they hold ${available.join(', ') || 'no hooks'}`,
      );
    }
    widths[hook] = hookValues(batch, hook).d;
  }
  return widths;
}

/**
 * The activation store: activation batches (from the model or a cache) in, shuffled training batches of
 * `trainBatchSizeTokens` rows out, through SAELens's mixing buffer. Deterministic given the seed and
 * the input order. Memory is bounded by the buffer (plus the normalisation sample, at the start).
 */
export function activationStore(options: ActivationStoreOptions): Stage<ActivationBatch, TrainingBatch> {
  checkOptions(options);
  const mode = options.normalizeActivations ?? 'none';
  const exclude = new Set(options.excludeTokenIds ?? []);
  return defineStage(
    'activation-store',
    (source) =>
      new Observable<TrainingBatch>((subscriber) => {
        let widths: HookWidths | null = null;
        let buffer: MixingBuffer | null = null;
        let factors: Record<string, number> | null = storeAppliesScaling(mode) ? null : {};
        const sample: RowBlock[] = [];
        let sampleRows = 0;
        const sampleTarget = (options.nBatchesForNormEstimate ?? 100) * options.trainBatchSizeTokens;
        let served = 0;

        const serve = (batches: RowBlock[]) => {
          for (const b of batches) {
            const f = factors as Record<string, number>;
            for (const [hook, values] of Object.entries(b.hooks)) {
              scaleInPlace(values, f[hook] ?? 1);
              normalizeRowsInPlace(values, values.length / b.rows, mode);
            }
            subscriber.next({ index: served++, rows: b.rows, hooks: b.hooks, scalingFactors: f });
          }
        };
        const settleFactors = () => {
          if (factors !== null || widths === null) return;
          const joined = concatBlocks(sample, widths);
          factors = estimateScalingFactors(joined, widths);
          options.onScalingFactors?.(factors);
          for (const block of sample.splice(0)) serve((buffer as MixingBuffer).push(block));
        };

        const sub = source.subscribe({
          next: (batch) => {
            try {
              if (widths === null) {
                widths = widthsOf(batch, options.hooks);
                buffer = new MixingBuffer(
                  widths,
                  options.nBatchesInBuffer * options.trainBatchSizeTokens,
                  options.trainBatchSizeTokens,
                  new Mulberry32(options.seed),
                );
                if (factors !== null) {
                  factors = Object.fromEntries(options.hooks.map((h) => [h, 1]));
                  options.onScalingFactors?.(factors);
                }
              }
              const block = toRowBlock(batch, widths, exclude);
              if (factors === null) {
                sample.push(block);
                sampleRows += block.rows;
                if (sampleRows >= sampleTarget) settleFactors();
                return;
              }
              serve((buffer as MixingBuffer).push(block));
            } catch (e) {
              subscriber.error(e);
            }
          },
          error: (e) => subscriber.error(e),
          complete: () => {
            try {
              if (widths !== null) {
                if (sampleRows > 0) settleFactors();
                serve((buffer as MixingBuffer).finish());
              }
              subscriber.complete();
            } catch (e) {
              subscriber.error(e);
            }
          },
        });
        return () => sub.unsubscribe();
      }),
  );
}
