/**
 * standard (ReLU) SAE, as SAELens's StandardTrainingSAE:
 *   h = x_c W_enc + b_enc,  f = relu(h),  x̂ = f W_dec + b_dec (+ x W_skip)
 *   loss = mse + l1_coefficient · mean_b Σ_j f_bj ‖W_dec[j]‖
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  centeredInput,
  columnSum,
  decodeLinear,
  decoderBackward,
  encodeLinear,
  encoderBackward,
  mergeGrads,
  normPenaltyGrad,
  rowNorms,
  squaredError,
} from './common.js';
import { param } from './types.js';
import type { ArchitectureModule, ForwardResult, Grads, Params, StepInput } from './types.js';
import type { SaeTrainingConfig } from '../config.js';

export const standard: ArchitectureModule = {
  featureParams: () => ({ b_enc: 0 }),

  forward(p: Params, input: StepInput, cfg: SaeTrainingConfig): ForwardResult {
    const rows = input.x.shape[0];
    const xc = centeredInput(input.x, p, cfg);
    const f = tf.relu(encodeLinear(xc, p, param(p, 'b_enc'))) as tf.Tensor2D;
    const recon = decodeLinear(f, p, input.x);
    const mse = squaredError(recon, input.target);
    const norms = rowNorms(param(p, 'W_dec'));
    const fSum = columnSum(f);
    const l1 = tf.mul(tf.dot(fSum, norms), input.coefficient / rows) as tf.Scalar;
    return {
      featureActs: f,
      reconstruction: recon,
      losses: { mse_loss: mse.loss, l1_loss: l1 },
      cache: { xc, G: mse.grad, norms, fSum },
    };
  },

  backward(p: Params, input: StepInput, fwd: ForwardResult, cfg: SaeTrainingConfig): Grads {
    const rows = input.x.shape[0];
    const { xc, G, norms, fSum } = fwd.cache as Record<string, tf.Tensor>;
    const c = input.coefficient / rows;
    const f = fwd.featureActs;
    // dL/df = G W_decᵀ + c ‖W_dec[j]‖; the penalty's part rides along as the matMul's bias.
    const dec = decoderBackward([{ acts: f, grad: G as tf.Tensor2D, skip: true }], p, input.x);
    const dF = tf.add(dec.dActs[0]!, tf.mul(norms!, c));
    const dH = tf.mul(dF, tf.step(f)) as tf.Tensor2D;
    const dHSum = columnSum(dH) as tf.Tensor1D;
    const enc = encoderBackward(xc as tf.Tensor2D, dH, dHSum, p, cfg);
    dec.grads.W_dec = tf.add(
      dec.grads.W_dec!,
      normPenaltyGrad(param(p, 'W_dec'), norms as tf.Tensor1D, tf.mul(fSum!, c) as tf.Tensor1D),
    );
    return mergeGrads(dec.grads, enc, { b_enc: dHSum });
  },
};
