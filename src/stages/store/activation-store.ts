import { Observable } from 'rxjs';
import type { ActivationBatch } from '../../arrow/activation-batch.js';
import { defineStage, type Stage } from '../../pipeline/stage.js';
import { type NormalizeMode } from './normalization.js';
import {
  ActivationStoreCore,
  checkStoreOptions,
  type StoreSnapshot,
  type TrainingBatch,
} from './store-core.js';

export type { StoreSnapshot, TrainingBatch } from './store-core.js';

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
  /** Makes the store checkpointable: see `StoreTracker`. */
  tracker?: StoreTracker;
  /** Continue where a checkpointed store stood; the input must start after its `inputBatches`. */
  resume?: StoreSnapshot;
  /**
   * Whether the run was interrupted. From then on the store takes no more input and, when its input ends,
   * keeps what it holds instead of serving it as the end of the data: what arrives after a stop may be
   * cut short (the batch a packer flushes when its source stops), and a resumed run must not inherit it.
   */
  stopped?: () => boolean;
}

/**
 * Connects a running store to the checkpoint that saves it. `consumed` says how many served batches the
 * consumer (the trainer) has used: the store keeps the others until then, so a checkpoint can save them.
 */
export class StoreTracker {
  private core: ActivationStoreCore | null = null;

  constructor(readonly consumed: () => number) {}

  attach(core: ActivationStoreCore): void {
    this.core = core;
  }

  /** The running store's state for a consumer that has used `consumed()` batches; null before any input. */
  snapshot(): StoreSnapshot | null {
    return this.core?.snapshot(this.consumed()) ?? null;
  }
}

/**
 * The activation store: activation batches (from the model or a cache) in, shuffled training batches of
 * `trainBatchSizeTokens` rows out, through SAELens's mixing buffer. Deterministic given the seed and
 * the input order. Memory is bounded by the buffer (plus the normalisation sample, at the start).
 */
export function activationStore(options: ActivationStoreOptions): Stage<ActivationBatch, TrainingBatch> {
  const coreOptions = { ...options, consumed: options.tracker?.consumed };
  checkStoreOptions(coreOptions);
  const stopped = options.stopped ?? (() => false);
  return defineStage(
    'activation-store',
    (source) =>
      new Observable<TrainingBatch>((subscriber) => {
        let core: ActivationStoreCore;
        try {
          core = options.resume
            ? ActivationStoreCore.restore(options.resume, coreOptions)
            : new ActivationStoreCore(coreOptions);
        } catch (e) {
          subscriber.error(e);
          return;
        }
        options.tracker?.attach(core);
        const emit = (batches: TrainingBatch[]) => {
          for (const b of batches) subscriber.next(b);
        };
        emit(core.queued());
        const sub = source.subscribe({
          next: (batch) => {
            if (stopped()) return;
            try {
              emit(core.push(batch));
            } catch (e) {
              subscriber.error(e);
            }
          },
          error: (e) => subscriber.error(e),
          complete: () => {
            try {
              if (!stopped()) emit(core.finish());
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
