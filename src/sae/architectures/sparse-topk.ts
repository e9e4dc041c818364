/**
 * The topk family's training forward and backward computed from the selected entries only (the sparse
 * step), with the same results as the dense one in topk.ts up to float32 rounding:
 *   - selection: TopK of h_r per row gives k indices; batchtopk takes, per row, the TopK of as many entries
 *     as the fullest row has at or above the batch threshold, masking the rest, so each row's selected
 *     entries are exactly the dense step's (ties included);
 *   - decoder: the k selected rows of W_dec are gathered once, [B, k, d_out], and serve both the
 *     reconstruction (a weighted sum of them) and dL/da at the selected entries (their dot products with the
 *     gradient of the reconstruction); the dense step does two [B, d_sae] x [d_sae, d_out] GEMMs for these;
 *   - W_dec and W_enc gradients: the per-entry rows a_bj·G_b and dPre_bj·x_c,b scatter-added into the rows
 *     of the selected features (ScatterND with reduction add) instead of two more dense GEMMs;
 *   - AuxK works on the dead features' columns only: their pre-activations are gathered, [B, n_dead], and
 *     the AuxK decode, its backward and its gradients are GEMMs over those columns, scattered back into the
 *     rows of the dead features. Its cost follows n_dead instead of d_sae; when no feature is dead one live
 *     column stands in, masked out by the dead bias and weighted 0, as in the dense step.
 * Only the encoder product stays dense (TopK needs every pre-activation).
 *
 * The step holds both matrices as rows in this path: W_enc [d_sae, d_in], W_dec [d_sae, d_out]
 * (train-step.ts `stepParamShapes`): gathering and scattering whole rows is contiguous, and the encoder
 * reads W_enc transposed in place (a Gemm attribute).
 *
 * Where it pays: the gathered rows are B·k·d_out floats (100 MB at B 1024, k 32, d 768) written and read
 * back, and ScatterND's add runs on one thread, so it beats the dense GEMMs only while k is a small fraction
 * of d_sae; `sparseTopKApplies` holds the measured rule (README "Performance").
 */
import type { IntArg, Ops } from '../../ops/ops.js';
import type { SaeTrainingConfig } from '../config.js';
import { centeredInput, squaredError } from './common.js';
import { param } from './types.js';
import type { ParamValues, TrainInputs, TrainOutputs } from './types.js';

export interface SparseSelection<T> {
  /**
   * Entries TopK takes per row: k, or (batch selection) the fullest row's count at or above `threshold`,
   * which then masks the entries below it.
   */
  perRow(o: Ops<T>, hr: T): { k: IntArg<T>; threshold?: T };
}

/** acts [B, k] times the gathered rows [B, k, d]: Σ_j acts_bj rows_bj, [B, d]. */
function weightedRows<T>(o: Ops<T>, acts: T, rows: T): T {
  return o.reshape(o.batchMatMul(o.reshape(acts, [0, 1, -1]), rows), [0, -1]);
}

/** rows [B, k, d] dotted with vecs [B, d]: [B, k]. */
function rowDots<T>(o: Ops<T>, rows: T, vecs: T): T {
  return o.reshape(o.batchMatMul(rows, o.reshape(vecs, [0, -1, 1])), [0, -1]);
}

/** The outer products acts_bj·vecs_b, [B, k, d]: one gradient row per selected entry. */
function entryRows<T>(o: Ops<T>, acts: T, vecs: T): T {
  return o.batchMatMul(o.reshape(acts, [0, -1, 1]), o.reshape(vecs, [0, 1, -1]));
}

export function sparseTopKTrain<T>(
  o: Ops<T>,
  p: ParamValues<T>,
  input: TrainInputs<T>,
  cfg: SaeTrainingConfig,
  selection: SparseSelection<T>,
  batchSelection: boolean,
): TrainOutputs<T> {
  const wEnc = param(p, 'W_enc');
  const wDec = param(p, 'W_dec');
  const bEnc = param(p, 'b_enc');
  const bDec = param(p, 'b_dec');
  const xc = centeredInput(o, p, input.x, cfg);
  const h = o.matMul(xc, wEnc, { transB: true, bias: bEnc });
  const norms = cfg.rescale_acts_by_decoder_norm ? o.sqrt(o.sum(o.mul(wDec, wDec), 1)) : undefined;
  const hr = norms === undefined ? h : o.mul(h, norms);

  const { k, threshold } = selection.perRow(o, hr);
  const top = o.topK(hr, k);
  const ids = top.indices;
  const hSel = o.gatherLast(h, ids);
  // Batch selection: entries below the threshold in rows that hold fewer than the fullest are dropped.
  const kept = threshold === undefined ? undefined : o.greaterEqual(top.values, threshold);
  const a = kept === undefined ? o.relu(hSel) : o.mul(o.relu(hSel), kept);
  const rows = o.gather(wDec, ids);
  let recon = o.add(weightedRows(o, a, rows), bDec);
  if (p.W_skip !== undefined) recon = o.add(recon, o.matMul(input.x, p.W_skip));
  const mse = squaredError(o, recon, input.target, input.invRows);
  const losses: [string, T][] = [['mse_loss', mse.loss]];
  const firing = o.greater(a, o.scalar(0));
  const dPre = o.mul(rowDots(o, rows, mse.grad), firing);

  let gWDec = o.scatterAddRows(o.zerosLike(wDec), ids, entryRows(o, a, mse.grad));
  let gWEnc = o.scatterAddRows(o.zerosLike(wEnc), ids, entryRows(o, dPre, xc));
  let gBEnc = o.scatterAddRows(o.zerosLike(bEnc), ids, dPre);
  let gBDec = o.sum(mse.grad, 0);

  if (input.aux !== undefined) {
    const aux = input.aux;
    // The dead features: TopK of the 0/1 dead mask takes all of them (at least one index, so the shapes
    // stay valid in a step with none; that column is a live one, masked by the bias and weighted 0).
    const deadMask = o.greater(aux.deadBias, o.scalar(-1));
    const dead = o.topK(deadMask, o.intArg(o.maximum(o.sum(deadMask), o.scalar(1)))).indices;
    const hrDead = o.add(o.gather(hr, dead, 1), o.gather(aux.deadBias, dead));
    const auxSel = o.greaterEqual(hrDead, o.min(o.topKValues(hrDead, aux.kAux), 1, true));
    const auxActs = o.mul(o.gather(h, dead, 1), auxSel);
    const deadRows = o.gather(wDec, dead);
    const auxRecon = o.matMul(auxActs, deadRows, { bias: bDec });
    const auxErr = squaredError(o, auxRecon, o.sub(input.target, recon), input.invRows, aux.weight);
    losses.push(['auxiliary_reconstruction_loss', auxErr.loss]);
    const dAux = o.mul(o.matMul(auxErr.grad, deadRows, { transB: true }), auxSel);
    gWDec = o.scatterAddRows(gWDec, dead, o.matMul(auxActs, auxErr.grad, { transA: true }));
    gWEnc = o.scatterAddRows(gWEnc, dead, o.matMul(dAux, xc, { transA: true }));
    gBEnc = o.scatterAddRows(gBEnc, dead, o.sum(dAux, 0));
    gBDec = o.add(gBDec, o.sum(auxErr.grad, 0));
  } else {
    losses.push(['auxiliary_reconstruction_loss', o.scalar(0)]);
  }

  const grads: ParamValues<T> = { W_enc: gWEnc, W_dec: gWDec, b_enc: gBEnc };
  if (p.W_skip !== undefined) grads.W_skip = o.matMul(input.x, mse.grad, { transA: true });
  // x_c = x - b_dec: b_dec also receives -W_encᵀ Σ_b dPre (W_enc held as rows: Σ_b dPre · W_enc).
  grads.b_dec = cfg.apply_b_dec_to_input
    ? o.sub(gBDec, o.reshape(o.matMul(o.reshape(gBEnc, [1, -1]), wEnc), [-1]))
    : gBDec;

  const stats: [string, T][] = [];
  if (batchSelection) {
    // Smallest positive activation f among the selected entries: zeros are lifted to 1e30.
    const f = norms === undefined ? a : o.mul(a, o.gather(norms, ids));
    stats.push(['min_positive_act', o.min(o.add(f, o.mul(o.sub(o.scalar(1), firing), o.scalar(1e30))))]);
  }
  return {
    losses,
    stats,
    firing,
    fired: o.scatterAddRows(o.zerosLike(bEnc), ids, firing),
    reconstruction: recon,
    grads,
  };
}
