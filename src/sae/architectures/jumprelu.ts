/**
 * jumprelu SAE, as SAELens's JumpReLUTrainingSAE (Gemma Scope's recipe, "step" sparsity loss):
 *   h = x_c W_enc + b_enc,  θ = exp(log_threshold),  f = h · 1[h > θ],  x̂ = f W_dec + b_dec (+ x W_skip)
 *   loss = mse + l0_coefficient · mean_b Σ_j 1[h_bj > θ_j]
 * Straight-through estimators with a rectangle kernel K(u) = 1[|u| < 1/2] of bandwidth ε:
 *   ∂f/∂h = 1[h > θ] (no estimator on h);  ∂f/∂θ ≈ -(θ/ε) K((h-θ)/ε);  ∂1[h > θ]/∂θ ≈ -(1/ε) K((h-θ)/ε)
 * and no gradient from the L0 term to h. log_threshold's gradient is θ · ∂L/∂θ.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { SaeTrainingConfig } from '../config.js';
import {
  above,
  centeredInput,
  columnSum,
  decodeLinear,
  decoderBackward,
  encodeLinear,
  encoderBackward,
  mergeGrads,
  squaredError,
} from './common.js';
import { param } from './types.js';
import type { ArchitectureModule, ForwardResult, Grads, Params, StepInput } from './types.js';

export const jumprelu: ArchitectureModule = {
  featureParams: (cfg) => ({ b_enc: 0, log_threshold: Math.log(cfg.jumprelu_init_threshold) }),

  forward(p: Params, input: StepInput, cfg: SaeTrainingConfig): ForwardResult {
    const rows = input.x.shape[0];
    const xc = centeredInput(input.x, p, cfg);
    const h = encodeLinear(xc, p, param(p, 'b_enc'));
    const theta = tf.exp(param<tf.Tensor1D>(p, 'log_threshold'));
    const active = above(h, theta);
    const f = tf.mul(h, active) as tf.Tensor2D;
    const recon = decodeLinear(f, p, input.x);
    const mse = squaredError(recon, input.target);
    const l0 = tf.mul(tf.sum(active), input.coefficient / rows) as tf.Scalar;
    return {
      featureActs: f,
      reconstruction: recon,
      losses: { mse_loss: mse.loss, l0_loss: l0 },
      cache: { xc, h, theta, active, G: mse.grad },
    };
  },

  backward(p: Params, input: StepInput, fwd: ForwardResult, cfg: SaeTrainingConfig): Grads {
    const rows = input.x.shape[0];
    const { xc, h, theta, active, G } = fwd.cache as Record<string, tf.Tensor>;
    const eps = cfg.jumprelu_bandwidth;
    const dec = decoderBackward([{ acts: fwd.featureActs, grad: G as tf.Tensor2D, skip: true }], p, input.x);
    const dF = dec.dActs[0]!;
    const dH = tf.mul(dF, active!) as tf.Tensor2D;
    const dHSum = columnSum(dH) as tf.Tensor1D;
    const enc = encoderBackward(xc as tf.Tensor2D, dH, dHSum, p, cfg);
    // K((h-θ)/ε) = 1[|h-θ|/ε < 1/2]
    const kernel = above(0.5, tf.abs(tf.div(tf.sub(h!, theta!), eps)));
    // ∂L/∂θ = -(θ/ε) Σ_b K·∂L/∂f - (c/(Bε)) Σ_b K
    const dTheta = tf.sub(
      tf.mul(columnSum(tf.mul(kernel, dF)), tf.div(theta!, -eps)),
      tf.mul(columnSum(kernel), input.coefficient / (rows * eps)),
    );
    return mergeGrads(dec.grads, enc, { b_enc: dHSum, log_threshold: tf.mul(dTheta, theta!) });
  },
};
