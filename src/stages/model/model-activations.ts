import {
  makeActivationBatch,
  type ActivationBatch,
  type ActivationDtype,
} from '../../arrow/activation-batch.js';
import { asyncStage } from '../../pipeline/async-stage.js';
import type { Flow } from '../../pipeline/flow.js';
import type { Stage } from '../../pipeline/stage.js';
import type { ActivationEngine } from './activation-engine.js';
import { resolveHookPatterns } from '../../model/index.js';
import type { TokenBatch } from '../text/types.js';

export interface ModelActivationsOptions {
  model: ActivationEngine;
  /** Hook names or patterns (`blocks.*.hook_resid_post`); unknown names fail when the stage is built. */
  hooks: readonly string[];
  /** Element type of the hook columns (default float32). */
  dtype?: ActivationDtype;
  flow?: Flow;
}

/**
 * The model stage: token batches in, activation batches out (design contract: one row per token with
 * `seq`, `pos`, `token` and a FixedSizeList column per hook). Multi-dimensional hooks such as
 * `attn.hook_z` [batch, pos, n_heads, d_head] are flattened per token to n_heads·d_head, as SAELens
 * does for hook_z SAEs. The forward stops at the deepest requested hook.
 */
export function modelActivations(options: ModelActivationsOptions): Stage<TokenBatch, ActivationBatch> {
  const hooks = resolveHookPatterns(options.model.config, options.hooks);
  return asyncStage<TokenBatch, ActivationBatch>(
    'model-activations',
    async (batch, emit) => {
      const { batchSize, contextSize } = batch;
      const rows = batchSize * contextSize;
      const run = await options.model.runWithHooks(
        { data: batch.tokens, shape: [batchSize, contextSize] },
        { hooks },
      );
      const seq = new BigInt64Array(rows);
      const pos = new Int32Array(rows);
      for (let b = 0; b < batchSize; b++) {
        const id = BigInt(batch.seqIds[b] as number);
        for (let t = 0; t < contextSize; t++) {
          seq[b * contextSize + t] = id;
          pos[b * contextSize + t] = t;
        }
      }
      const columns: Record<string, { data: Float32Array; d: number }> = {};
      for (const hook of hooks) {
        const act = run.activations.get(hook);
        if (!act) throw new Error(`model did not return hook ${hook}`);
        columns[hook] = { data: act.data, d: act.data.length / rows };
      }
      emit(
        makeActivationBatch({ seq, pos, token: batch.tokens.slice(), hooks: columns, dtype: options.dtype }),
      );
    },
    { flow: options.flow },
  );
}
