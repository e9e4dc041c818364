/**
 * The interface every training architecture implements. Each architecture is one small file holding its
 * forward (encode, decode, loss terms) and its hand-written backward, so that it can be ported (to an
 * ONNX graph, say) without the rest of the trainer.
 *
 * Shapes: x [B, d_in], target [B, d_out] (the same tensor as x for an SAE), W_enc [d_in, d_sae],
 * W_dec [d_sae, d_out], b_dec [d_out], W_skip [d_in, d_out], per-feature vectors [d_sae].
 * Losses are means over the batch of per-token sums, as in SAELens.
 */
import type * as tf from '@tensorflow/tfjs-core';
import type { SaeTrainingConfig } from '../config.js';

export type ParamName =
  'W_enc' | 'b_enc' | 'W_dec' | 'b_dec' | 'W_skip' | 'log_threshold' | 'b_gate' | 'r_mag' | 'b_mag';

/** Training parameters by name; which names are present depends on the architecture and options. */
export type Params = Partial<Record<ParamName, tf.Tensor>>;
export type Grads = Partial<Record<ParamName, tf.Tensor>>;

export interface StepInput {
  /** [B, d_in], already normalised. */
  x: tf.Tensor2D;
  /** [B, d_out], the reconstruction target (x itself for an SAE). */
  target: tf.Tensor2D;
  /** The sparsity coefficient for this step (l1 or l0 after warm-up); unused by topk/batchtopk. */
  coefficient: number;
  /** [d_sae] 1 for dead features, 0 otherwise; null when none are dead. Used by the AuxK loss. */
  deadMask: tf.Tensor1D | null;
  numDead: number;
  /**
   * batchtopk on a batch processed in row chunks: the selection threshold over the whole batch (from
   * `batchThreshold`), since a chunk alone cannot know it. Absent when the batch is processed at once.
   */
  batchThreshold?: tf.Tensor;
}

export interface ForwardResult {
  /** [B, d_sae] feature activations f (what counts as firing). */
  featureActs: tf.Tensor2D;
  /** [B, d_out] x̂. */
  reconstruction: tf.Tensor2D;
  /** `mse_loss` plus the architecture's weighted terms; the total loss is their sum. */
  losses: Record<string, tf.Scalar>;
  /** Intermediates the backward pass reuses. */
  cache: Record<string, tf.Tensor>;
  /**
   * Extra scalars the trainer reads back with the losses (batchtopk: `min_positive_act`). Over row chunks
   * the trainer keeps their minimum, so a stat must be a minimum over the batch's tokens.
   */
  stats?: Record<string, tf.Scalar>;
}

export interface ArchitectureModule {
  /** Per-feature parameters beyond W_enc, W_dec, b_dec (and W_skip), with their initial value. */
  featureParams(cfg: SaeTrainingConfig): Partial<Record<ParamName, number>>;
  forward(p: Params, input: StepInput, cfg: SaeTrainingConfig): ForwardResult;
  /** Gradients of the total loss with respect to every parameter in `p`. */
  backward(p: Params, input: StepInput, fwd: ForwardResult, cfg: SaeTrainingConfig): Grads;
  /**
   * For architectures whose selection couples the tokens of a batch (batchtopk): given the batch's row
   * chunks (normalised x), the value `StepInput.batchThreshold` must carry for every chunk's forward.
   */
  batchThreshold?(p: Params, xChunks: tf.Tensor2D[], cfg: SaeTrainingConfig): tf.Tensor;
}

export function param<T extends tf.Tensor>(p: Params, name: ParamName): T {
  const t = p[name];
  if (t === undefined) throw new Error(`parameter ${name} is missing`);
  return t as T;
}
