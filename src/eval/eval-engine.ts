/**
 * What the evaluator needs from a model, whichever engine runs it: for one token batch, the clean forward,
 * one zero-ablation forward per replaced hook and one forward per SAE with its hook replaced (the
 * conventions are in evaluator.ts), reduced to the per-token numbers the metrics take; and plain captures
 * for the dashboards. model-eval-engine.ts implements it on a model runner of either engine.
 */
import type { Activation, ModelConfig, ModelEngineName, TokenBatch } from '../model/index.js';
import type { EvalTarget } from './sae-targets.js';

export type EvalEngineName = ModelEngineName;

/** One SAE's numbers for one batch; rows = batch * seq, losses [batch * (seq - 1)], KL [rows]. */
export interface TargetForwards {
  /** The clean activation at the hook the SAE reconstructs [rows, d_out]. */
  original: Float32Array;
  /** Its feature activations [rows, d_sae] and reconstruction [rows, d_out] on the clean input. */
  features: Float32Array;
  reconstruction: Float32Array;
  /** Next-token losses with the SAE spliced in, and with its hook zero-ablated. */
  loss: Float32Array;
  ablationLoss: Float32Array;
  /** KL(clean ‖ patched) and KL(clean ‖ ablated) per position; null without computeKl. */
  kl: ArrayLike<number> | null;
  ablationKl: ArrayLike<number> | null;
}

export interface BatchForwards {
  /** Next-token losses of the clean forward, [batch * (seq - 1)]. */
  cleanLoss: Float32Array;
  /** In the order of the targets. */
  targets: TargetForwards[];
}

export interface ForwardsOptions {
  /** [rows], 0 where the patched forward keeps the original activation (excluded tokens). */
  keep: Uint8Array | undefined;
  computeKl: boolean;
}

/** A model that captures hooks (the dashboards' second pass). */
export interface HookCapture {
  readonly config: ModelConfig;
  runWithHooks(
    tokens: TokenBatch,
    options: { hooks: readonly string[] },
  ): Promise<{ activations: Map<string, Activation> }>;
}

export interface EvalEngine extends HookCapture {
  readonly name: EvalEngineName;
  forwards(
    tokens: TokenBatch,
    targets: readonly EvalTarget[],
    options: ForwardsOptions,
  ): Promise<BatchForwards>;
  dispose(): void | Promise<void>;
}
