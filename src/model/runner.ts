/**
 * What an engine that runs a model offers, whichever engine it is (onnxruntime: src/engine/onnx/
 * onnx-runner.ts; TensorFlow.js: tfjs-runner.ts); both run the family's one forward (family.ts).
 */
import type { ModelConfig } from './config.js';
import type { Model } from './family.js';
import { parseHookName, planRun } from './hook-points.js';
import type { Activation, RunPlan, TokenBatch } from './hook-points.js';
import type { HookReplacement } from './replacement.js';
import type { WeightProcessing } from './process-weights.js';

export const MODEL_ENGINES = ['onnx', 'tfjs'] as const;
export type ModelEngineName = (typeof MODEL_ENGINES)[number];

export type Replacements = Readonly<Record<string, HookReplacement>>;

export interface RunOptions<R = HookReplacement> {
  /** Hook names or glob patterns (`blocks.*.hook_resid_post`) to capture. */
  hooks?: string | readonly string[];
  /** Exact hook name -> replacement; the forward continues from the replaced value. */
  interventions?: Readonly<Record<string, R>>;
  /** Also return logits [batch, seq, vocab] (runs the whole model). */
  returnLogits?: boolean;
  /** Also return the next-token cross-entropy [batch, seq - 1] (runs the whole model). */
  returnLoss?: boolean;
  /**
   * [batch * seq], 0 where SAE replacements keep the original activation (excluded tokens); default all 1.
   * Zero ablation replaces every position.
   */
  keep?: Uint8Array;
  /** Stop after the deepest captured or replaced hook when neither logits nor loss are asked for. Default true. */
  stopAtDeepestHook?: boolean;
}

/** What the SAE replacing a hook computed, one row per token: [batch * seq, d_sae] and [batch * seq, d_out]. */
export interface SaeOutputs {
  features: Activation;
  reconstruction: Activation;
}

export interface RunResult {
  /**
   * Captured activations by hook name, in execution order; a replaced hook holds the replacement (what the
   * rest of the forward saw).
   */
  activations: Map<string, Activation>;
  logits?: Activation;
  lossPerToken?: Activation;
  /** By replaced hook, for SAE replacements. */
  saeOutputs: Map<string, SaeOutputs>;
}

export interface VariantsOptions {
  /** Hooks to capture in the clean forward. */
  hooks?: string | readonly string[];
  /** One patched forward per entry. */
  variants: readonly Replacements[];
  /** Also KL(clean ‖ patched) per position for every variant. */
  kl?: boolean;
  keep?: Uint8Array;
}

export interface VariantResult {
  lossPerToken: Activation;
  /** [batch, seq], when asked for. */
  kl?: Activation;
  saeOutputs: Map<string, SaeOutputs>;
}

export interface ModelRunner {
  readonly engine: ModelEngineName;
  readonly model: Model;
  readonly config: ModelConfig;
  readonly processing: WeightProcessing;
  runWithHooks(tokens: TokenBatch, options?: RunOptions): Promise<RunResult>;
  /**
   * A clean forward (capturing `hooks`, with its losses) and one patched forward per variant, with their
   * losses and, with `kl`, KL(clean ‖ patched) per position.
   */
  runVariants(
    tokens: TokenBatch,
    options: VariantsOptions,
  ): Promise<{ clean: RunResult; variants: VariantResult[] }>;
  dispose(): void | Promise<void>;
}

/**
 * Follows a forward through the hook points and checks it reaches them in the order hook-points.ts
 * derives from the family's layout (a family whose forward and hook list disagree fails loudly).
 * Returns each hook's execution-order index.
 */
export function hookOrderChecker(config: ModelConfig): (name: string) => number {
  let next = 0;
  return (name) => {
    const order = parseHookName(config, name).order;
    if (order !== next) throw new Error(`the ${config.family} forward reached hook ${name} out of order`);
    next++;
    return order;
  };
}

/** The run plan of `runWithHooks` options: what to capture, replace and return, and how far to run. */
export function planOf<R>(
  config: ModelConfig,
  options: RunOptions<R>,
  interventions: readonly string[],
): RunPlan {
  return planRun(config, {
    hooks: options.hooks,
    interventions,
    returnLogits: options.returnLogits,
    returnLoss: options.returnLoss,
    stopAtDeepestHook: options.stopAtDeepestHook,
  });
}
