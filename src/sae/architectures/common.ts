/**
 * Pieces shared by the architectures: the linear encoder/decoder, the squared-error loss and their
 * backward passes. Every product with a transposed operand materialises the transpose first and calls a
 * plain matMul: wasm runs matMul with transposeA/transposeB 10-40x slower than without (and tfjs autodiff
 * of `x @ W` would use exactly those), so an SAE step is ~12x faster written this way.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { SaeTrainingConfig } from '../config.js';
import { param } from './types.js';
import type { Grads, Params } from './types.js';

/**
 * aᵀ b for a [B, m], b [B, n]. XNNPACK's matMul is markedly faster when the output has the fewer columns
 * ([6144, 1024] @ [1024, 768] beats [768, 1024] @ [1024, 6144] by ~35%), so for m < n this computes
 * (bᵀ a)ᵀ instead; the extra transpose of the [n, m] result costs far less.
 */
export function matMulAT(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  if (a.shape[1] < b.shape[1])
    return tf.transpose(tf.matMul(tf.transpose(b) as tf.Tensor2D, a)) as tf.Tensor2D;
  return tf.matMul(tf.transpose(a) as tf.Tensor2D, b);
}

/** a bᵀ, plus an optional bias row. */
export function matMulBT(a: tf.Tensor2D, b: tf.Tensor2D, bias?: tf.Tensor1D): tf.Tensor2D {
  const bt = tf.transpose(b) as tf.Tensor2D;
  return bias === undefined ? tf.matMul(a, bt) : (tf.fused.matMul({ a, b: bt, bias }) as tf.Tensor2D);
}

/**
 * Σ over rows of a [B, n] matrix. wasm's Sum reduces the last axis and transposes for any other, which
 * costs ~75 ms on a [1024, 6144] matrix; a ones-row matMul costs ~2 ms.
 */
export function columnSum(x: tf.Tensor): tf.Tensor1D {
  const [rows, cols] = x.shape as [number, number];
  return tf.reshape(tf.matMul(tf.ones([1, rows]), x as tf.Tensor2D), [cols]);
}

/*
 * 0/1 masks from arithmetic: wasm's comparison kernels are slow (a broadcast greaterEqual against a
 * [B, 1] column takes ~0.8 s on [1024, 6144], ~30 ms without broadcasting, plus ~10 ms to cast the bool),
 * while sub + step take ~20 ms. Both forms are exact: for finite floats x - t > 0 exactly when x > t.
 */

/** 1 where x > t, else 0. */
export function above(x: tf.Tensor | number, t: tf.Tensor | number): tf.Tensor {
  return tf.step(tf.sub(x, t));
}

/** 1 where x >= t, else 0. */
export function atLeast(x: tf.Tensor, t: tf.Tensor | number): tf.Tensor {
  return tf.sub(1, tf.step(tf.sub(t, x)));
}

/** x - b_dec when `apply_b_dec_to_input`, else x. */
export function centeredInput(x: tf.Tensor2D, p: Params, cfg: SaeTrainingConfig): tf.Tensor2D {
  return cfg.apply_b_dec_to_input ? (tf.sub(x, param<tf.Tensor1D>(p, 'b_dec')) as tf.Tensor2D) : x;
}

/** x_c @ W_enc + bias. */
export function encodeLinear(xc: tf.Tensor2D, p: Params, bias: tf.Tensor1D): tf.Tensor2D {
  return tf.fused.matMul({ a: xc, b: param<tf.Tensor2D>(p, 'W_enc'), bias }) as tf.Tensor2D;
}

/** acts @ W_dec + b_dec, plus x @ W_skip when `withSkip` and the transcoder has one. */
export function decodeLinear(acts: tf.Tensor2D, p: Params, x: tf.Tensor2D, withSkip = true): tf.Tensor2D {
  const wDec = param<tf.Tensor2D>(p, 'W_dec');
  const out = tf.fused.matMul({ a: acts, b: wDec, bias: param<tf.Tensor1D>(p, 'b_dec') }) as tf.Tensor2D;
  return withSkip && p.W_skip ? (tf.add(out, tf.matMul(x, p.W_skip as tf.Tensor2D)) as tf.Tensor2D) : out;
}

/** weight · mean over rows of Σ_d (recon - target)², and its gradient with respect to recon. */
export function squaredError(
  recon: tf.Tensor2D,
  target: tf.Tensor2D,
  weight = 1,
): { loss: tf.Scalar; grad: tf.Tensor2D } {
  const rows = recon.shape[0];
  const diff = tf.sub(recon, target);
  return {
    loss: tf.mul(tf.sum(tf.square(diff)), weight / rows) as tf.Scalar,
    grad: tf.mul(diff, (2 * weight) / rows) as tf.Tensor2D,
  };
}

/** ‖W_dec[j]‖ for every feature j. */
export function rowNorms(w: tf.Tensor2D): tf.Tensor1D {
  return tf.sqrt(tf.sum(tf.square(w), 1)) as tf.Tensor1D;
}

export interface DecoderTerm {
  /** [B, d_sae] the activations multiplied by W_dec. */
  acts: tf.Tensor2D;
  /** [B, d_out] dL/d(output) for this reconstruction. */
  grad: tf.Tensor2D;
  /** Whether this reconstruction included x @ W_skip. */
  skip: boolean;
}

/**
 * Backward of one or more reconstructions `acts_i @ W_dec + b_dec (+ x @ W_skip)`. Several terms are
 * stacked along the batch so that each weight gradient is a single matMul. Returns the parameter
 * gradients and dL/d(acts_i) for each term.
 */
export function decoderBackward(
  terms: DecoderTerm[],
  p: Params,
  x: tf.Tensor2D,
): { grads: Grads; dActs: tf.Tensor2D[] } {
  const wDec = param<tf.Tensor2D>(p, 'W_dec');
  const acts =
    terms.length === 1
      ? terms[0]!.acts
      : tf.concat2d(
          terms.map((t) => t.acts),
          0,
        );
  const gradOut =
    terms.length === 1
      ? terms[0]!.grad
      : tf.concat2d(
          terms.map((t) => t.grad),
          0,
        );
  const grads: Grads = {
    W_dec: matMulAT(acts, gradOut),
    b_dec: columnSum(gradOut),
  };
  if (p.W_skip) {
    const skipGrads = terms.filter((t) => t.skip).map((t) => t.grad);
    const g = skipGrads.length === 1 ? skipGrads[0]! : tf.addN(skipGrads);
    grads.W_skip = skipGrads.length === 0 ? tf.zerosLike(p.W_skip) : matMulAT(x, g as tf.Tensor2D);
  }
  const dAll = matMulBT(gradOut, wDec);
  const rows = x.shape[0];
  const dActs =
    terms.length === 1 ? [dAll] : terms.map((_, i) => tf.slice2d(dAll, [i * rows, 0], [rows, -1]));
  return { grads, dActs };
}

/**
 * Backward of `x_c @ W_enc` given dL/d(pre-activation) [B, d_sae]: the W_enc gradient and, when b_dec is
 * subtracted from the input, its contribution to the b_dec gradient (-W_enc Σ_b dPre).
 */
export function encoderBackward(
  xc: tf.Tensor2D,
  dPre: tf.Tensor2D,
  dPreColumnSum: tf.Tensor1D,
  p: Params,
  cfg: SaeTrainingConfig,
): { W_enc: tf.Tensor2D; b_dec?: tf.Tensor1D } {
  const wEnc = param<tf.Tensor2D>(p, 'W_enc');
  const out: { W_enc: tf.Tensor2D; b_dec?: tf.Tensor1D } = { W_enc: matMulAT(xc, dPre) };
  if (cfg.apply_b_dec_to_input) {
    out.b_dec = tf.neg(tf.reshape(tf.matMul(wEnc, tf.reshape(dPreColumnSum, [-1, 1])), [-1])) as tf.Tensor1D;
  }
  return out;
}

/**
 * Gradient on W_dec of a penalty Σ_j w_j ‖W_dec[j]‖: row j gets w_j W_dec[j] / ‖W_dec[j]‖.
 */
export function normPenaltyGrad(wDec: tf.Tensor2D, norms: tf.Tensor1D, weights: tf.Tensor1D): tf.Tensor2D {
  return tf.mul(wDec, tf.reshape(tf.div(weights, norms), [-1, 1])) as tf.Tensor2D;
}

/** Adds gradient contributions that may be absent. */
export function addGrads(...parts: (tf.Tensor | undefined)[]): tf.Tensor {
  const present = parts.filter((t): t is tf.Tensor => t !== undefined);
  return present.length === 1 ? present[0]! : tf.addN(present);
}

/** Merges the decoder-side and encoder-side gradients (b_dec can receive both). */
export function mergeGrads(
  decoder: Grads,
  encoder: { W_enc: tf.Tensor2D; b_dec?: tf.Tensor1D },
  extra: Grads,
): Grads {
  return {
    ...decoder,
    ...extra,
    W_enc: encoder.W_enc,
    b_dec: addGrads(decoder.b_dec, encoder.b_dec),
  };
}
