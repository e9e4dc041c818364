/**
 * Evaluation windows: context size and BOS, by default as the SAEs were trained (their cfg metadata), which
 * is what their metrics should be measured on.
 */
import type { ModelConfig } from '../model/index.js';
import { UserError } from '../pipeline/errors.js';
import type { EvalTarget } from './sae-targets.js';
import { sharedMetadata } from './sae-targets.js';

export interface Windowing {
  contextSize: number;
  prependBos: boolean;
}

/**
 * Explicit options win; otherwise the `context_size` / `prepend_bos` all SAEs agree on (a context the model
 * cannot run is ignored), else min(128, n_positions) and the family's prepend_bos default.
 */
export function resolveWindowing(
  requested: { contextSize: number | null; prependBos: boolean | null },
  targets: readonly EvalTarget[],
  model: ModelConfig,
  /** TransformerLens's default for the model family (the tokenizer's `prependBos`). */
  defaultPrependBos = true,
): Windowing {
  const saved = sharedMetadata(targets, 'context_size');
  const savedFits = typeof saved === 'number' && Number.isInteger(saved) && saved >= 2 && saved <= model.nCtx;
  const contextSize = requested.contextSize ?? (savedFits ? saved : Math.min(128, model.nCtx));
  if (contextSize > model.nCtx) {
    throw new UserError(`--context_size ${contextSize} exceeds the model's n_positions (${model.nCtx})`);
  }
  const savedBos = sharedMetadata(targets, 'prepend_bos');
  return {
    contextSize,
    prependBos: requested.prependBos ?? (typeof savedBos === 'boolean' ? savedBos : defaultPrependBos),
  };
}
