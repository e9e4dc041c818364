/**
 * GPT-2 with TransformerLens hook points. Independent of RxJS: a pipeline stage wraps `Gpt2Model`.
 *
 *   const model = await loadGpt2('path/to/gpt2', { processing: 'center_writing_weights' });
 *   const { activations } = await model.runWithHooks(
 *     { data: ids, shape: [batch, seq] },
 *     { hooks: ['blocks.*.hook_resid_pre'] },
 *   );
 *   model.dispose();
 *
 * The weights go to the tfjs backend active at load time (select it first, e.g. with `selectBackend`).
 */
import { readGpt2Config } from './gpt2-config.js';
import { Gpt2Model } from './gpt2.js';
import type { Gpt2ModelOptions } from './gpt2.js';
import { loadGpt2Weights } from './gpt2-weights.js';
import { parseWeightProcessing } from './process-weights.js';
import type { WeightProcessing } from './process-weights.js';

export interface LoadGpt2Options extends Gpt2ModelOptions {
  /** Default `none`: Hugging Face's numbers exactly. */
  processing?: WeightProcessing;
}

/** Loads a GPT-2 from a Hugging Face directory (`config.json` + `model.safetensors`). */
export async function loadGpt2(dir: string, options: LoadGpt2Options = {}): Promise<Gpt2Model> {
  const processing = parseWeightProcessing(options.processing ?? 'none');
  const config = await readGpt2Config(dir);
  const weights = await loadGpt2Weights(dir, config);
  return Gpt2Model.create(config, weights, { ...options, processing });
}

export { Gpt2Model } from './gpt2.js';
export type { Gpt2ModelOptions, Intervention, RunResult, RunWithHooksOptions } from './gpt2.js';
export { ACTIVATION_FUNCTIONS, parseGpt2Config, readGpt2Config } from './gpt2-config.js';
export type { ActivationFunction, Gpt2Config } from './gpt2-config.js';
export { expectedGpt2Tensors, loadGpt2Weights } from './gpt2-weights.js';
export type { Gpt2BlockWeights, Gpt2Weights, LayerNormWeights, LinearWeights } from './gpt2-weights.js';
export {
  BLOCK_SITES,
  EMBED_SITES,
  FINAL_SITES,
  describeHookNames,
  hookShape,
  listHookNames,
  parseHookName,
  planRun,
  resolveHookPatterns,
  validateTokenBatch,
} from './hook-points.js';
export type { Activation, HookPoint, HookSite, RunPlan, RunRequest, TokenBatch } from './hook-points.js';
export { WEIGHT_PROCESSINGS, centerRows, parseWeightProcessing, processWeights } from './process-weights.js';
export type { WeightProcessing } from './process-weights.js';
