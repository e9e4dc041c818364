/**
 * topk SAE, as SAELens's TopKTrainingSAE (and the shared machinery of batchtopk):
 *   h = x_c W_enc + b_enc,  h_r = h ⊙ ‖W_dec‖ (when rescale_acts_by_decoder_norm, else h)
 *   S = the k largest entries of each row of h_r,  f = relu(h_r) on S, 0 elsewhere
 *   x̂ = (f / ‖W_dec‖) W_dec + b_dec (+ x W_skip)  =  (relu(h) on S) W_dec + b_dec (+ x W_skip)
 *   loss = mse + AuxK
 * AuxK (dead latents only): with k_aux = d_out / 2, scale = min(n_dead / k_aux, 1), A = the top
 * min(k_aux, n_dead) dead entries of each row of h_r (kept even when negative, as SAELens does),
 *   aux = aux_loss_coefficient · scale · mean_b ‖(h on A) W_dec + b_dec - (y - x̂)‖²   (y - x̂ held constant)
 * The decoder-norm rescaling only changes which entries are selected: its gradient through ‖W_dec‖ cancels
 * exactly, so the backward pass treats the selection masks as constants.
 *
 * Selection keeps every entry >= the k-th largest value of its row, so exact ties at the k-th value keep
 * more than k (float ties between distinct features are vanishingly rare).
 */
import * as tf from '@tensorflow/tfjs-core';
import { outputWidth } from '../config.js';
import type { SaeTrainingConfig } from '../config.js';
import {
  atLeast,
  centeredInput,
  columnSum,
  decodeLinear,
  decoderBackward,
  encodeLinear,
  encoderBackward,
  mergeGrads,
  rowNorms,
  squaredError,
} from './common.js';
import type { DecoderTerm } from './common.js';
import { param } from './types.js';
import type { ArchitectureModule, ForwardResult, Grads, Params, StepInput } from './types.js';

/** Returns a 0/1 mask [B, d_sae] of the selected entries of h_r. */
export type Selector = (hr: tf.Tensor2D, cfg: SaeTrainingConfig, input: StepInput) => tf.Tensor2D;

/** The k-th largest value of each row, as a [B, 1] column. */
export function kthLargestPerRow(values: tf.Tensor2D, k: number): tf.Tensor2D {
  const top = tf.topk(values, k, true).values;
  return tf.slice2d(top, [0, k - 1], [-1, 1]);
}

const selectTopKPerRow: Selector = (hr, cfg) => atLeast(hr, kthLargestPerRow(hr, cfg.k)) as tf.Tensor2D;

/** AuxK's k_aux: SAELens's d/2 heuristic, d being the width of the reconstructed activations. */
export function auxKBase(cfg: SaeTrainingConfig): number {
  return Math.max(1, Math.floor(outputWidth(cfg) / 2));
}

/** x_c, h and h_r (the values selection ranks) of a batch; norms is ‖W_dec‖ when h_r is rescaled. */
export function topKPreActivations(
  p: Params,
  x: tf.Tensor2D,
  cfg: SaeTrainingConfig,
): { xc: tf.Tensor2D; h: tf.Tensor2D; hr: tf.Tensor2D; norms?: tf.Tensor1D } {
  const xc = centeredInput(x, p, cfg);
  const h = encodeLinear(xc, p, param(p, 'b_enc'));
  const norms = cfg.rescale_acts_by_decoder_norm ? rowNorms(param(p, 'W_dec')) : undefined;
  const hr = norms ? (tf.mul(h, norms) as tf.Tensor2D) : h;
  return { xc, h, hr, norms };
}

export function makeTopKModule(select: Selector): ArchitectureModule {
  return {
    featureParams: () => ({ b_enc: 0 }),

    forward(p: Params, input: StepInput, cfg: SaeTrainingConfig): ForwardResult {
      const { xc, h, hr, norms } = topKPreActivations(p, input.x, cfg);
      const selected = select(hr, cfg, input);
      // a = f / ‖W_dec‖, computed without the round trip through the norm.
      const a = tf.mul(tf.relu(h), selected) as tf.Tensor2D;
      const f = norms ? (tf.mul(a, norms) as tf.Tensor2D) : a;
      const recon = decodeLinear(a, p, input.x);
      const mse = squaredError(recon, input.target);
      const losses: Record<string, tf.Scalar> = { mse_loss: mse.loss };
      const cache: Record<string, tf.Tensor> = { xc, a, G: mse.grad };

      if (input.deadMask !== null && input.numDead > 0 && cfg.aux_loss_coefficient > 0) {
        const base = auxKBase(cfg);
        const kAux = Math.min(base, input.numDead);
        const scale = Math.min(input.numDead / base, 1);
        // Live features sink to -1e30 (far below any pre-activation): only dead ones can be selected,
        // and kAux <= numDead keeps the k-th value a dead feature's own.
        const masked = tf.add(hr, tf.mul(tf.sub(input.deadMask, 1), 1e30)) as tf.Tensor2D;
        const auxSelected = atLeast(masked, kthLargestPerRow(masked, kAux));
        const auxActs = tf.mul(h, auxSelected) as tf.Tensor2D;
        const residual = tf.sub(input.target, recon) as tf.Tensor2D;
        const auxRecon = decodeLinear(auxActs, p, input.x, false);
        const aux = squaredError(auxRecon, residual, cfg.aux_loss_coefficient * scale);
        losses.auxiliary_reconstruction_loss = aux.loss;
        Object.assign(cache, { auxSelected, auxActs, Gaux: aux.grad });
      } else {
        losses.auxiliary_reconstruction_loss = tf.scalar(0);
      }
      return { featureActs: f, reconstruction: recon, losses, cache };
    },

    backward(p: Params, input: StepInput, fwd: ForwardResult, cfg: SaeTrainingConfig): Grads {
      const { xc, a, G, auxSelected, auxActs, Gaux } = fwd.cache;
      const terms: DecoderTerm[] = [{ acts: a as tf.Tensor2D, grad: G as tf.Tensor2D, skip: true }];
      if (auxActs) terms.push({ acts: auxActs as tf.Tensor2D, grad: Gaux as tf.Tensor2D, skip: false });
      const dec = decoderBackward(terms, p, input.x);
      // a > 0 exactly where the entry was selected and relu passed it.
      let dH = tf.mul(dec.dActs[0]!, tf.step(a!)) as tf.Tensor2D;
      if (auxActs) dH = tf.add(dH, tf.mul(dec.dActs[1]!, auxSelected!)) as tf.Tensor2D;
      const dHSum = columnSum(dH) as tf.Tensor1D;
      const enc = encoderBackward(xc as tf.Tensor2D, dH, dHSum, p, cfg);
      return mergeGrads(dec.grads, enc, { b_enc: dHSum });
    },
  };
}

export const topk: ArchitectureModule = makeTopKModule(selectTopKPerRow);
