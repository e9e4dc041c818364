/**
 * Where a training run's activation batches come from, as a stream that cycles its data until the run
 * stops (SAELens cycles until every SAE has its training_tokens), and starts where a resumed run's
 * checkpointed activation store stopped receiving: from a model, the windows before that point are
 * tokenized and packed again but not run through the model; from a cache, reading seeks to the saved row.
 */
import { skip, type Observable } from 'rxjs';
import type { ActivationBatch } from '../../arrow/index.js';
import type { Flow } from '../../pipeline/flow.js';
import { cacheReader } from '../cache/index.js';
import { modelActivations, type ActivationEngine } from '../model/index.js';
import { documentSource, pack, tokenize } from '../text/index.js';
import { cycleUntilStopped } from './activation-input.js';
import { requireTokensPerPass } from './require-tokens-per-pass.js';
import type { Tokenizer } from '../../tokenizer/index.js';
import type { TrainingConfig } from './training-pipeline.js';

export interface StreamStart {
  /** Activation batches (model forwards, or cache reads) the restored store had received. */
  readonly inputBatches: number;
  /** Rows in them. */
  readonly inputRows: number;
}

export const STREAM_START: StreamStart = { inputBatches: 0, inputRows: 0 };

export function trainingActivations(
  cfg: TrainingConfig,
  source: {
    model: ActivationEngine | null;
    hooks: readonly string[];
    rowsPerPass: number | null;
    tokenizer: Tokenizer | null;
    /** `prepend_bos` as resolved (the option, else the family's default). */
    prependBos: boolean;
  },
  start: StreamStart,
  flow: Flow,
): Observable<ActivationBatch> {
  const { model, hooks, tokenizer } = source;
  if (model === null || tokenizer === null) {
    // Only the first pass starts at the saved row.
    let startRow = start.inputRows % (source.rowsPerPass ?? Infinity);
    return cycleUntilStopped(() => {
      const reader = cacheReader({ path: cfg.activations as string, hooks, flow, startRow });
      startRow = 0;
      return reader;
    }, flow);
  }
  const windows = () => {
    // A dataset too small for one training batch fails its first pass instead of cycling forever.
    const enough = requireTokensPerPass({
      need: cfg.train_batch_size_tokens,
      dataset: cfg.dataset,
      contextSize: cfg.context_size,
      flow,
    });
    return documentSource(cfg.dataset, { shuffle: true, seed: cfg.seed }, flow).pipe(
      tokenize(tokenizer),
      enough.countTokens,
      pack({
        contextSize: cfg.context_size,
        batchSize: cfg.store_batch_size_prompts,
        tokenizer,
        prependBos: source.prependBos,
        disableConcatSequences: cfg.disable_concat_sequences,
      }),
      enough.checkWindows,
    );
  };
  // Whole forwards are skipped, so every forward sees the batch it saw in an uninterrupted run.
  return cycleUntilStopped(windows, flow).pipe(
    skip(start.inputBatches),
    modelActivations({ model, hooks, flow }),
  );
}
