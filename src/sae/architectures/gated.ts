/**
 * gated SAE, as SAELens's GatedTrainingSAE:
 *   P = x_c W_enc,  π_gate = P + b_gate,  π_mag = P ⊙ exp(r_mag) + b_mag
 *   f = 1[π_gate > 0] ⊙ relu(π_mag),  x̂ = f W_dec + b_dec (+ x W_skip)
 *   g = relu(π_gate)
 *   loss = mse + l1_coefficient · mean_b Σ_j g_bj ‖W_dec[j]‖ + mean_b ‖g W_dec + b_dec (+ x W_skip) - y‖²
 * The gate's step has no gradient; the auxiliary reconstruction trains the gate path.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { SaeTrainingConfig } from '../config.js';
import {
  centeredInput,
  columnSum,
  decodeLinear,
  decoderBackward,
  encoderBackward,
  mergeGrads,
  normPenaltyGrad,
  rowNorms,
  squaredError,
} from './common.js';
import { param } from './types.js';
import type { ArchitectureModule, ForwardResult, Grads, Params, StepInput } from './types.js';

export const gated: ArchitectureModule = {
  featureParams: () => ({ b_gate: 0, r_mag: 0, b_mag: 0 }),

  forward(p: Params, input: StepInput, cfg: SaeTrainingConfig): ForwardResult {
    const rows = input.x.shape[0];
    const xc = centeredInput(input.x, p, cfg);
    const P = tf.matMul(xc, param<tf.Tensor2D>(p, 'W_enc'));
    const piGate = tf.add(P, param(p, 'b_gate'));
    const expR = tf.exp(param(p, 'r_mag'));
    const piMag = tf.add(tf.mul(P, expR), param(p, 'b_mag'));
    const f = tf.mul(tf.step(piGate), tf.relu(piMag)) as tf.Tensor2D;
    const recon = decodeLinear(f, p, input.x);
    const mse = squaredError(recon, input.target);
    const g = tf.relu(piGate) as tf.Tensor2D;
    const norms = rowNorms(param(p, 'W_dec'));
    const gSum = columnSum(g);
    const l1 = tf.mul(tf.dot(gSum, norms), input.coefficient / rows) as tf.Scalar;
    const aux = squaredError(decodeLinear(g, p, input.x), input.target);
    return {
      featureActs: f,
      reconstruction: recon,
      losses: { mse_loss: mse.loss, l1_loss: l1, auxiliary_reconstruction_loss: aux.loss },
      cache: { xc, P, expR, g, gSum, norms, G: mse.grad, Gaux: aux.grad },
    };
  },

  backward(p: Params, input: StepInput, fwd: ForwardResult, cfg: SaeTrainingConfig): Grads {
    const rows = input.x.shape[0];
    const { xc, P, expR, g, gSum, norms, G, Gaux } = fwd.cache as Record<string, tf.Tensor>;
    const c = input.coefficient / rows;
    const f = fwd.featureActs;
    const dec = decoderBackward(
      [
        { acts: f, grad: G as tf.Tensor2D, skip: true },
        { acts: g as tf.Tensor2D, grad: Gaux as tf.Tensor2D, skip: true },
      ],
      p,
      input.x,
    );
    // f > 0 exactly where the gate is open and relu(π_mag) passes.
    const dPiMag = tf.mul(dec.dActs[0]!, tf.step(f));
    const dPiGate = tf.mul(tf.add(dec.dActs[1]!, tf.mul(norms!, c)), tf.step(g!));
    const dP = tf.add(tf.mul(dPiMag, expR!), dPiGate) as tf.Tensor2D;
    const enc = encoderBackward(xc as tf.Tensor2D, dP, columnSum(dP) as tf.Tensor1D, p, cfg);
    dec.grads.W_dec = tf.add(
      dec.grads.W_dec!,
      normPenaltyGrad(param(p, 'W_dec'), norms as tf.Tensor1D, tf.mul(gSum!, c) as tf.Tensor1D),
    );
    return mergeGrads(dec.grads, enc, {
      b_gate: columnSum(dPiGate),
      b_mag: columnSum(dPiMag),
      r_mag: tf.mul(columnSum(tf.mul(dPiMag, P!)), expR!),
    });
  },
};
