import { asyncStage } from '../../pipeline/async-stage.js';
import type { Flow } from '../../pipeline/flow.js';
import type { Stage } from '../../pipeline/stage.js';
import type { RunOptions, RunResult, TfjsReplacement, TokenBatch as ModelTokens } from '../../model/index.js';
import type { TokenBatch } from '../text/types.js';

/** Next-token cross-entropy of each window: `loss[b * (contextSize - 1) + t]` predicts token t + 1. */
export interface LossBatch {
  readonly seqIds: Int32Array;
  readonly batchSize: number;
  readonly contextSize: number;
  readonly loss: Float32Array;
  /** Logits [batch, contextSize, vocab], only when asked for (they are large). */
  readonly logits?: Float32Array;
}

/** A runner of either engine (tfjs also takes JS-function interventions). */
interface LossModel {
  runWithHooks(tokens: ModelTokens, options: RunOptions<TfjsReplacement>): Promise<RunResult>;
}

export interface ModelLossOptions {
  model: LossModel;
  /** Hook replacements (an SAE's reconstruction, zero ablation) applied during the forward. */
  interventions?: Readonly<Record<string, TfjsReplacement>>;
  returnLogits?: boolean;
  flow?: Flow;
}

/** The logits/loss stage: token batches in, per-token next-token loss (and optionally logits) out. */
export function modelLoss(options: ModelLossOptions): Stage<TokenBatch, LossBatch> {
  return asyncStage<TokenBatch, LossBatch>(
    'model-loss',
    async (batch, emit) => {
      const run = await options.model.runWithHooks(
        { data: batch.tokens, shape: [batch.batchSize, batch.contextSize] },
        { interventions: options.interventions, returnLoss: true, returnLogits: options.returnLogits },
      );
      emit({
        seqIds: batch.seqIds,
        batchSize: batch.batchSize,
        contextSize: batch.contextSize,
        loss: run.lossPerToken!.data,
        ...(run.logits ? { logits: run.logits.data } : {}),
      });
    },
    { flow: options.flow },
  );
}
