/**
 * Pieces the architectures share, on the op layer: the centred input, the linear decoder, the squared
 * error and its gradient, and the backward pass of the decoder and encoder products. W_dec is held as
 * [d_out, d_sae] (types.ts says why), so its "rows" ‖W_dec[j]‖ are the columns of that matrix.
 */
import type { Ops } from '../../ops/ops.js';
import type { SaeTrainingConfig } from '../config.js';
import { param } from './types.js';
import type { ParamValues } from './types.js';

/** x - b_dec when `apply_b_dec_to_input`, else x. */
export function centeredInput<T>(o: Ops<T>, p: ParamValues<T>, x: T, cfg: SaeTrainingConfig): T {
  return cfg.apply_b_dec_to_input ? o.sub(x, param(p, 'b_dec')) : x;
}

/** x_c W_enc + bias. */
export function encodeLinear<T>(o: Ops<T>, p: ParamValues<T>, xc: T, bias: T): T {
  return o.matMul(xc, param(p, 'W_enc'), { bias });
}

/** acts W_decᵀ + b_dec, plus x W_skip when `withSkip` and the transcoder has one. */
export function decodeLinear<T>(o: Ops<T>, p: ParamValues<T>, acts: T, x: T, withSkip = true): T {
  const out = o.matMul(acts, param(p, 'W_dec'), { transB: true, bias: param(p, 'b_dec') });
  return withSkip && p.W_skip !== undefined ? o.add(out, o.matMul(x, p.W_skip)) : out;
}

/** ‖W_dec[j]‖ for every feature: the column norms of the held [d_out, d_sae] matrix. */
export function featureNorms<T>(o: Ops<T>, wDec: T): T {
  // Squares then a sum over the leading axis: onnxruntime's ReduceSumSquare there is ~5x slower.
  return o.sqrt(o.sum(o.mul(wDec, wDec), 0));
}

/**
 * weight · mean over rows of Σ_d (recon - target)², and its gradient with respect to recon. `weight` is
 * a scalar value (AuxK's) or omitted.
 */
export function squaredError<T>(
  o: Ops<T>,
  recon: T,
  target: T,
  invRows: T,
  weight?: T,
): { loss: T; grad: T } {
  const diff = o.sub(recon, target);
  const w = weight === undefined ? invRows : o.mul(weight, invRows);
  return { loss: o.mul(o.sumSquares(diff), w), grad: o.mul(diff, o.mul(w, o.scalar(2))) };
}

/** One reconstruction `acts W_decᵀ + b_dec (+ x W_skip)` whose loss has gradient `grad` [B, d_out]. */
export interface DecoderTerm<T> {
  acts: T;
  grad: T;
  /** Whether the reconstruction included x W_skip. */
  skip: boolean;
}

/** dL/d(acts) of a term: G W_dec (W_dec as held), plus an optional per-feature bias. */
export function actsGrad<T>(o: Ops<T>, p: ParamValues<T>, grad: T, bias?: T): T {
  return o.matMul(grad, param(p, 'W_dec'), bias === undefined ? {} : { bias });
}

/**
 * Gradients of the decoder and encoder parameters, given the architecture's reconstruction terms, the
 * gradient at the encoder's pre-activation `dPre` [B, d_sae] and its column sum, and any extra W_dec
 * gradients (norm penalties). Returns W_dec, b_dec, W_skip and W_enc.
 */
export function linearGrads<T>(
  o: Ops<T>,
  p: ParamValues<T>,
  cfg: SaeTrainingConfig,
  g: {
    /** The (normalised) input and its centred form, the encoder's input. */
    x: T;
    xc: T;
    terms: readonly DecoderTerm<T>[];
    dPre: T;
    dPreSum: T;
    extraWDec?: readonly T[];
  },
): ParamValues<T> {
  const { terms, dPre, dPreSum } = g;
  let wDec: T | undefined;
  // Gemm's bias input accumulates the terms: Σ_i Gᵢᵀ actsᵢ without separate adds.
  for (const t of terms)
    wDec = o.matMul(t.grad, t.acts, { transA: true, ...(wDec === undefined ? {} : { bias: wDec }) });
  for (const extra of g.extraWDec ?? []) wDec = o.add(wDec!, extra);
  let bDec = terms.map((t) => o.sum(t.grad, 0)).reduce((acc, s) => o.add(acc, s));
  const grads: ParamValues<T> = { W_dec: wDec!, W_enc: o.matMul(g.xc, dPre, { transA: true }) };
  if (p.W_skip !== undefined) {
    const skipGrads = terms.filter((t) => t.skip).map((t) => t.grad);
    grads.W_skip =
      skipGrads.length === 0
        ? o.zerosLike(p.W_skip)
        : o.matMul(
            g.x,
            skipGrads.reduce((acc, t) => o.add(acc, t)),
            { transA: true },
          );
  }
  if (cfg.apply_b_dec_to_input) {
    // x_c = x - b_dec: b_dec also receives -W_enc Σ_b dPre.
    bDec = o.sub(bDec, o.reshape(o.matMul(param(p, 'W_enc'), o.reshape(dPreSum, [-1, 1])), [-1]));
  }
  grads.b_dec = bDec;
  return grads;
}

/**
 * Gradient on W_dec (held [d_out, d_sae]) of a penalty Σ_j w_j ‖W_dec[j]‖: column j gets
 * w_j W_dec[j] / ‖W_dec[j]‖.
 */
export function normPenaltyGrad<T>(o: Ops<T>, wDec: T, norms: T, weights: T): T {
  return o.mul(wDec, o.div(weights, norms));
}
