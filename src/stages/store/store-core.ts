/**
 * The activation store's logic without the stream around it: activation batches in, shuffled training
 * batches out, and the state a checkpoint needs to continue exactly (`snapshot`, `ActivationStoreCore.restore`).
 * Synchronous and free of I/O, so the stage and the checkpoint writer each see it between two batches.
 */
import {
  activationIds,
  hookMatrix,
  hookNames,
  hookValues,
  type ActivationBatch,
} from '../../arrow/activation-batch.js';
import { UserError } from '../../pipeline/errors.js';
import { Mulberry32 } from '../../util/random.js';
import { MixingBuffer, type MixingBufferState } from './mixing-buffer.js';
import {
  estimateScalingFactors,
  normalizeRowsInPlace,
  scaleInPlace,
  storeAppliesScaling,
  type NormalizeMode,
} from './normalization.js';
import { concatBlocks, gatherRows, type HookWidths, type RowBlock } from './row-block.js';

export interface StoreCoreOptions {
  readonly hooks: readonly string[];
  readonly trainBatchSizeTokens: number;
  readonly nBatchesInBuffer: number;
  readonly seed: number;
  readonly excludeTokenIds?: readonly number[];
  readonly normalizeActivations?: NormalizeMode;
  readonly nBatchesForNormEstimate?: number;
  readonly onScalingFactors?: (factors: Record<string, number>) => void;
  /**
   * Batches the consumer has used so far. When given, served batches are kept until it has used them, so
   * that `snapshot` can hand the unused ones to a resumed run (they are alive downstream anyway).
   */
  readonly consumed?: () => number;
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

/**
 * Everything a store holds between two input batches. A store restored from it, fed the input that
 * followed batch `inputBatches`, serves from `nextIndex` on exactly what the original store served.
 */
export interface StoreSnapshot {
  /** Activation batches received: the resumed input starts after this many. */
  readonly inputBatches: number;
  /** Rows in those batches, excluded tokens included (a cache reader seeks by rows). */
  readonly inputRows: number;
  /** Index of the first batch of `queued`, the next one the consumer needs. */
  readonly nextIndex: number;
  readonly widths: HookWidths;
  /** Scaling factors, or null while the normalisation sample is still being collected. */
  readonly factors: Readonly<Record<string, number>> | null;
  readonly buffer: MixingBufferState;
  /** Blocks collected for the normalisation estimate, not yet in the buffer. */
  readonly sample: readonly RowBlock[];
  /** Batches served but not yet consumed, as served (scaled). */
  readonly queued: readonly RowBlock[];
}

export function checkStoreOptions(o: StoreCoreOptions): void {
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

/** The served hooks' rows of a batch (views where the data is float32) and the rows to keep, if not all. */
function rowsOf(
  batch: ActivationBatch,
  widths: HookWidths,
  exclude: ReadonlySet<number>,
): { block: RowBlock; keep?: number[] } {
  const hooks: Record<string, Float32Array> = {};
  for (const hook of Object.keys(widths)) hooks[hook] = hookMatrix(batch, hook);
  const block: RowBlock = { rows: batch.numRows, hooks };
  const ids = exclude.size > 0 ? activationIds(batch) : null;
  if (!ids) return { block };
  const keep: number[] = [];
  for (let r = 0; r < batch.numRows; r++) if (!exclude.has(ids.token[r] as number)) keep.push(r);
  return keep.length === batch.numRows ? { block } : { block, keep };
}

export class ActivationStoreCore {
  private readonly mode: NormalizeMode;
  private readonly exclude: ReadonlySet<number>;
  private widths: HookWidths | null = null;
  private buffer: MixingBuffer | null = null;
  private factors: Record<string, number> | null;
  private sample: RowBlock[] = [];
  private sampleRows = 0;
  private served = 0;
  private inputBatches = 0;
  private inputRows = 0;
  /** Served batches the consumer may not have used yet (only with `consumed`). */
  private retained: TrainingBatch[] = [];

  constructor(private readonly options: StoreCoreOptions) {
    checkStoreOptions(options);
    this.mode = options.normalizeActivations ?? 'none';
    this.exclude = new Set(options.excludeTokenIds ?? []);
    this.factors = storeAppliesScaling(this.mode) ? null : {};
  }

  /** A store in the state `snapshot` describes; `queued()` gives the batches to serve first. */
  static restore(snapshot: StoreSnapshot, options: StoreCoreOptions): ActivationStoreCore {
    const core = new ActivationStoreCore(options);
    const expected = options.hooks.join(', ');
    if (Object.keys(snapshot.widths).join(', ') !== expected)
      throw new UserError(
        `the saved activation store holds hooks ${Object.keys(snapshot.widths).join(', ')}, not ${expected}`,
      );
    const bs = options.trainBatchSizeTokens;
    if (snapshot.queued.some((b) => b.rows !== bs))
      throw new UserError(`the saved activation store holds batches of other sizes than ${bs} tokens`);
    core.widths = snapshot.widths;
    core.buffer = MixingBuffer.restore(
      snapshot.widths,
      options.nBatchesInBuffer * options.trainBatchSizeTokens,
      options.trainBatchSizeTokens,
      snapshot.buffer,
    );
    core.factors = snapshot.factors === null ? null : { ...snapshot.factors };
    if (core.factors !== null) options.onScalingFactors?.(core.factors);
    core.sample = [...snapshot.sample];
    core.sampleRows = core.sample.reduce((n, b) => n + b.rows, 0);
    core.inputBatches = snapshot.inputBatches;
    core.inputRows = snapshot.inputRows;
    core.served = snapshot.nextIndex + snapshot.queued.length;
    core.retained = snapshot.queued.map((b, i) => ({
      index: snapshot.nextIndex + i,
      rows: b.rows,
      hooks: b.hooks,
      scalingFactors: core.factors as Record<string, number>,
    }));
    return core;
  }

  /** Batches served but not yet consumed (after `restore`: the ones to hand the consumer first). */
  queued(): TrainingBatch[] {
    if (!this.options.consumed) return this.retained.splice(0);
    this.release();
    return [...this.retained];
  }

  /** Adds one activation batch; returns the training batches that became ready (possibly none). */
  push(batch: ActivationBatch): TrainingBatch[] {
    if (this.widths === null) this.start(batch);
    this.release();
    this.inputBatches += 1;
    this.inputRows += batch.numRows;
    const widths = this.widths as HookWidths;
    const { block, keep } = rowsOf(batch, widths, this.exclude);
    if (this.factors === null) {
      // The sample waits for the estimate outside the buffer, so it is held on to as it came (filtered).
      const kept = keep ? gatherRows(block, widths, keep) : block;
      this.sample.push(kept);
      this.sampleRows += kept.rows;
      const target = (this.options.nBatchesForNormEstimate ?? 100) * this.options.trainBatchSizeTokens;
      return this.sampleRows >= target ? this.settleFactors() : [];
    }
    return this.serve((this.buffer as MixingBuffer).push(block, keep));
  }

  /** At the end of the input: every remaining whole batch. */
  finish(): TrainingBatch[] {
    if (this.widths === null) return [];
    const settled = this.sampleRows > 0 ? this.settleFactors() : [];
    return [...settled, ...this.serve((this.buffer as MixingBuffer).finish())];
  }

  /**
   * The state to resume from once the consumer has used `consumed` batches, or null when there is none to
   * save (a resumed run then replays the input up to `consumed`). Views of live arrays: write them out before the
   * store takes its next batch. Needs the `consumed` option, which keeps the unused batches.
   */
  snapshot(consumed: number): StoreSnapshot | null {
    if (!this.options.consumed) throw new Error('ActivationStoreCore.snapshot needs the consumed option');
    this.release(consumed);
    // Before any input, or while a run resumed from a checkpoint without a store replays up to its batch:
    // the state to save is the one the next resume can rebuild by replaying.
    if (this.widths === null || this.buffer === null || consumed > this.served) return null;
    const first = this.retained[0]?.index ?? this.served;
    if (first !== consumed) {
      throw new Error(
        `activation store: the consumer used ${consumed} batches but the store kept batches from ${first} (served ${this.served})`,
      );
    }
    return {
      inputBatches: this.inputBatches,
      inputRows: this.inputRows,
      nextIndex: consumed,
      widths: this.widths,
      factors: this.factors,
      buffer: this.buffer.state(),
      sample: [...this.sample],
      queued: this.retained.map((b) => ({ rows: b.rows, hooks: b.hooks })),
    };
  }

  private start(batch: ActivationBatch): void {
    this.widths = widthsOf(batch, this.options.hooks);
    this.buffer = new MixingBuffer(
      this.widths,
      this.options.nBatchesInBuffer * this.options.trainBatchSizeTokens,
      this.options.trainBatchSizeTokens,
      new Mulberry32(this.options.seed),
    );
    if (this.factors !== null) {
      this.factors = Object.fromEntries(this.options.hooks.map((h) => [h, 1]));
      this.options.onScalingFactors?.(this.factors);
    }
  }

  /** Drops the kept batches the consumer has used. */
  private release(consumed = this.options.consumed?.() ?? Infinity): void {
    let used = 0;
    while (used < this.retained.length && (this.retained[used] as TrainingBatch).index < consumed) used++;
    if (used > 0) this.retained.splice(0, used);
  }

  private settleFactors(): TrainingBatch[] {
    const widths = this.widths as HookWidths;
    const factors = estimateScalingFactors(concatBlocks(this.sample, widths), widths);
    this.factors = factors;
    this.options.onScalingFactors?.(factors);
    const out: TrainingBatch[] = [];
    for (const block of this.sample.splice(0))
      out.push(...this.serve((this.buffer as MixingBuffer).push(block)));
    this.sampleRows = 0;
    return out;
  }

  private serve(batches: RowBlock[]): TrainingBatch[] {
    const factors = this.factors as Record<string, number>;
    return batches.map((b) => {
      for (const [hook, values] of Object.entries(b.hooks)) {
        scaleInPlace(values, factors[hook] ?? 1);
        normalizeRowsInPlace(values, values.length / b.rows, this.mode);
      }
      const out: TrainingBatch = {
        index: this.served++,
        rows: b.rows,
        hooks: b.hooks,
        scalingFactors: factors,
      };
      if (this.options.consumed) this.retained.push(out);
      return out;
    });
  }
}
