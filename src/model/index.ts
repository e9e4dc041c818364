/**
 * Models with TransformerLens hook points, any registered family (registry.ts; GPT-2 today), on either
 * engine. Independent of RxJS: pipeline stages wrap a runner.
 *
 *   const model = await loadModel('path/to/gpt2', { processing: 'center_writing_weights' });
 *   const runner = TfjsRunner.create(model);          // or new OnnxRunner(model), or createRunner(...)
 *   const { activations } = await runner.runWithHooks(
 *     { data: ids, shape: [batch, seq] },
 *     { hooks: ['blocks.*.hook_resid_pre'] },
 *   );
 *   runner.dispose();
 *
 * The tfjs runner's weights go to the tfjs backend active when it is created (select it first, e.g. with
 * `selectBackend`).
 */
import { loadModel } from './registry.js';
import type { LoadModelOptions } from './registry.js';
import { TfjsRunner } from './tfjs-runner.js';
import type { TfjsRunnerOptions } from './tfjs-runner.js';

/** Loads a model from a Hugging Face folder and uploads it to TensorFlow.js. */
export async function loadTfjsModel(
  dir: string,
  options: LoadModelOptions & TfjsRunnerOptions = {},
): Promise<TfjsRunner> {
  return TfjsRunner.create(await loadModel(dir, options), options);
}

export { ACTIVATION_FUNCTIONS } from './config.js';
export type { ActivationFunction, HookDim, HookLayout, HookSiteSpec, ModelConfig } from './config.js';
export { Model, runForward } from './family.js';
export type { DashboardWeights, FamilyForward, ForwardStart, HookFn, ModelFamily } from './family.js';
export { familyByName, familyOf, loadModel, parseModelConfig, readModelConfig } from './registry.js';
export type { LoadModelOptions } from './registry.js';
export { TfjsRunner } from './tfjs-runner.js';
export type { Intervention, TfjsReplacement, TfjsRunnerOptions } from './tfjs-runner.js';
export { MODEL_ENGINES, hookOrderChecker } from './runner.js';
export type {
  ModelEngineName,
  ModelRunner,
  Replacements,
  RunOptions,
  RunResult,
  SaeOutputs,
  VariantResult,
  VariantsOptions,
} from './runner.js';
export { applyReplacement, checkReplacement } from './replacement.js';
export type { HookReplacement, ReplacementSae, SaeValues } from './replacement.js';
export { klDivergence, nextTokenLoss, referenceOf } from './loss.js';
export {
  GPT2_HOOKS,
  expectedGpt2Tensors,
  gpt2Family,
  loadGpt2Weights,
  processGpt2Weights,
} from './families/gpt2.js';
export type { Gpt2BlockWeights, Gpt2Weights, LayerNormWeights, LinearWeights } from './families/gpt2.js';
export {
  describeHookNames,
  hookShape,
  listHookNames,
  parseHookName,
  planRun,
  resolveHookPatterns,
  siteWidth,
  validateTokenBatch,
} from './hook-points.js';
export type { Activation, HookPoint, HookSite, RunPlan, RunRequest, TokenBatch } from './hook-points.js';
export { WEIGHT_PROCESSINGS, centerRows, parseWeightProcessing } from './process-weights.js';
export type { WeightProcessing } from './process-weights.js';
