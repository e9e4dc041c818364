/**
 * topk SAE, as SAELens's TopKTrainingSAE, and the machinery its relatives (batchtopk,
 * matryoshka_batchtopk) share:
 *   h = x_c W_enc + b_enc,  h_r = h ⊙ ‖W_dec‖ (when rescale_acts_by_decoder_norm, else h)
 *   S = the selected entries of h_r (topk: the k largest of each row),  f = relu(h_r) on S, 0 elsewhere
 *   x̂ = (f / ‖W_dec‖) W_decᵀ + b_dec (+ x W_skip)  =  a W_decᵀ + b_dec (+ x W_skip),  a = relu(h) on S
 *   loss = mse + AuxK
 * AuxK (dead latents only): with k_aux = d_out / 2, scale = min(n_dead / k_aux, 1), A = the top
 * min(k_aux, n_dead) dead entries of each row of h_r (kept even when negative, as SAELens does),
 *   aux = aux_loss_coefficient · scale · mean_b ‖(h on A) W_decᵀ + b_dec - (y - x̂)‖²   (y - x̂ held constant)
 * The decoder-norm rescaling only changes which entries are selected: its gradient through ‖W_dec‖ cancels
 * exactly (a = relu(h) on S whatever the norms), so the backward pass treats the selection masks as
 * constants. Selection keeps every entry >= the threshold, so exact ties keep more than k.
 * Saved as SAELens's `topk` (k and rescale_acts_by_decoder_norm in cfg.json, decoder norms folded in).
 */
import type { Ops } from '../../ops/ops.js';
import type { SaeTrainingConfig } from '../config.js';
import {
  actsGrad,
  centeredInput,
  decodeLinear,
  encodeLinear,
  featureNorms,
  linearGrads,
  squaredError,
} from './common.js';
import type { DecoderTerm } from './common.js';
import { param } from './types.js';
import type {
  Architecture,
  ArchitectureOption,
  InferenceEncoder,
  ParamValues,
  SaveContext,
  TrainInputs,
} from './types.js';
import { sparseTopKTrain } from './sparse-topk.js';
import { copy } from '../host-tensor.js';
import type { HostTensor } from '../host-tensor.js';

/** AuxK's k_aux: SAELens's d/2 heuristic, d being the width of the reconstructed activations. */
export function auxKBase(cfg: SaeTrainingConfig): number {
  return Math.max(1, Math.floor((cfg.d_out ?? cfg.d_in) / 2));
}

/** h and the values selection ranks, h_r; `norms` is ‖W_dec‖ when h_r is rescaled. */
export function topKPreActivations<T>(
  o: Ops<T>,
  p: ParamValues<T>,
  x: T,
  cfg: SaeTrainingConfig,
): { xc: T; h: T; hr: T; norms?: T } {
  const xc = centeredInput(o, p, x, cfg);
  const h = encodeLinear(o, p, xc, param(p, 'b_enc'));
  if (!cfg.rescale_acts_by_decoder_norm) return { xc, h, hr: h };
  const norms = featureNorms(o, param(p, 'W_dec'));
  return { xc, h, hr: o.mul(h, norms), norms };
}

export const TOPK_OPTIONS: Record<string, ArchitectureOption> = {
  k: { kind: { type: 'number', exclusiveMin: 0 }, default: 100 },
  aux_loss_coefficient: { kind: { type: 'number', min: 0 }, default: 1.0 },
  rescale_acts_by_decoder_norm: { kind: { type: 'bool' }, default: true },
};

export interface TopKFamilySpec {
  name: string;
  options: Record<string, ArchitectureOption>;
  savedEncoder: Architecture['savedEncoder'];
  /** The value entries of h_r must reach to be selected: a [B, 1] column or a scalar. */
  threshold<T>(o: Ops<T>, hr: T, input: TrainInputs<T>, cfg: SaeTrainingConfig): T;
  batchSelection?: boolean;
  /** Widths of nested prefixes that each reconstruct the target alone (matryoshka), narrowest first. */
  innerWidths?(cfg: SaeTrainingConfig): number[];
  validate?: Architecture['validate'];
  batchThreshold?: Architecture['batchThreshold'];
  encoder?: InferenceEncoder;
  /** Saved tensors beyond b_enc (batchtopk's threshold). */
  savedTensors?(ctx: SaveContext): Record<string, HostTensor>;
  afterFold?: Architecture['afterFold'];
}

/** An architecture of the topk family: selection by threshold on h_r, AuxK, optional nested levels. */
export function topKFamily(spec: TopKFamilySpec): Architecture {
  return {
    name: spec.name,
    options: spec.options,
    auxK: true,
    batchSelection: spec.batchSelection ?? false,
    savedEncoder: spec.savedEncoder,
    rescalesByDecoderNorm: (cfg) => cfg.rescale_acts_by_decoder_norm,
    validate: spec.validate,
    batchThreshold: spec.batchThreshold,
    featureParams: () => ({ b_enc: 0 }),
    ...(spec.encoder === undefined ? {} : { encoder: spec.encoder }),
    savedTensors: (get, ctx) => ({ b_enc: copy(get('b_enc')), ...spec.savedTensors?.(ctx) }),
    afterFold: spec.afterFold,
    // Nested prefix levels (matryoshka) would need a decode per level from the same rows: dense only.
    sparseStep: () => spec.innerWidths === undefined,

    train<T>(o: Ops<T>, p: ParamValues<T>, input: TrainInputs<T>, cfg: SaeTrainingConfig) {
      if (input.sparse) {
        if (spec.innerWidths !== undefined) throw new Error(`${spec.name} has no sparse step`);
        const selection = spec.batchSelection
          ? {
              perRow: (so: Ops<T>, hr: T) => {
                // Every row's entries at or above the batch threshold are among its TopK of the fullest
                // row's count; the rest of each row's TopK is masked by the threshold.
                const threshold = spec.threshold(so, hr, input, cfg);
                const counts = so.sum(so.greaterEqual(hr, threshold), 1);
                return { k: so.intArg(so.maximum(so.max(counts), so.scalar(1))), threshold };
              },
            }
          : { perRow: () => ({ k: cfg.k }) };
        return sparseTopKTrain(o, p, input, cfg, selection, spec.batchSelection ?? false);
      }
      const { xc, h, hr, norms } = topKPreActivations(o, p, input.x, cfg);
      const selected = o.greaterEqual(hr, spec.threshold(o, hr, input, cfg));
      const a = o.mul(o.relu(h), selected);
      const recon = decodeLinear(o, p, a, input.x);
      const mse = squaredError(o, recon, input.target, input.invRows);
      const losses: [string, T][] = [['mse_loss', mse.loss]];
      const terms: DecoderTerm<T>[] = [{ acts: a, grad: mse.grad, skip: true }];
      // a > 0 exactly where f > 0 (the norms are positive).
      const firing = o.greater(a, o.scalar(0));
      let dPre = o.mul(actsGrad(o, p, mse.grad), firing);
      if (input.aux !== undefined) {
        // Live features sink by 1e30 (far below any pre-activation): only dead ones can be selected,
        // and k_aux <= n_dead keeps the threshold a dead feature's own value.
        const masked = o.add(hr, input.aux.deadBias);
        const auxSelected = o.greaterEqual(masked, o.min(o.topKValues(masked, input.aux.kAux), 1, true));
        const auxActs = o.mul(h, auxSelected);
        const residual = o.sub(input.target, recon);
        const aux = squaredError(
          o,
          decodeLinear(o, p, auxActs, input.x, false),
          residual,
          input.invRows,
          input.aux.weight,
        );
        losses.push(['auxiliary_reconstruction_loss', aux.loss]);
        terms.push({ acts: auxActs, grad: aux.grad, skip: false });
        dPre = o.add(dPre, o.mul(actsGrad(o, p, aux.grad), auxSelected));
      } else {
        losses.push(['auxiliary_reconstruction_loss', o.scalar(0)]);
      }
      for (const width of spec.innerWidths?.(cfg) ?? []) {
        // The first `width` features alone: a prefix mask keeps the products full width, and the
        // masked columns get exact zeros in every gradient.
        const prefix = o.constant(
          `prefix_mask_${width}_of_${cfg.d_sae}`,
          [cfg.d_sae],
          prefixMask(width, cfg.d_sae),
        );
        const inner = o.mul(a, prefix);
        const level = squaredError(o, decodeLinear(o, p, inner, input.x, false), input.target, input.invRows);
        losses.push([`inner_mse_loss_${width}`, level.loss]);
        terms.push({ acts: inner, grad: level.grad, skip: false });
        dPre = o.add(dPre, o.mul(actsGrad(o, p, level.grad), o.mul(firing, prefix)));
      }
      const bEnc = o.sum(dPre, 0);
      const grads = linearGrads(o, p, cfg, { x: input.x, xc, terms, dPre, dPreSum: bEnc });
      const stats: [string, T][] = [];
      if (spec.batchSelection) {
        // Smallest positive activation f: zeros are lifted to 1e30 (1e30 means nothing fired).
        const f = norms === undefined ? a : o.mul(a, norms);
        const lifted = o.add(f, o.mul(o.sub(o.scalar(1), firing), o.scalar(1e30)));
        stats.push(['min_positive_act', o.min(lifted)]);
      }
      return { losses, stats, firing, reconstruction: recon, grads: { ...grads, b_enc: bEnc } };
    },
  };
}

function prefixMask(width: number, dSae: number): Float32Array {
  const m = new Float32Array(dSae);
  m.fill(1, 0, width);
  return m;
}

export const topkEncoder: InferenceEncoder = {
  kind: 'topk',
  tensors: ['b_enc'],
  encode(o, w, xc, cfg) {
    let h = o.matMul(xc, w('W_enc'), { bias: w('b_enc') });
    if (cfg.rescale_acts_by_decoder_norm === true) {
      const wDec = w('W_dec');
      h = o.mul(h, o.sqrt(o.sum(o.mul(wDec, wDec), 1)));
    }
    const kth = o.min(o.topKValues(h, cfg.k!), 1, true);
    return o.mul(o.relu(h), o.greaterEqual(h, kth));
  },
};

export const topk: Architecture = topKFamily({
  name: 'topk',
  options: TOPK_OPTIONS,
  savedEncoder: 'topk',
  encoder: topkEncoder,
  threshold: (o, hr, _input, cfg) => o.min(o.topKValues(hr, cfg.k), 1, true),
  validate: (cfg) =>
    Number.isInteger(cfg.k) ? null : { field: 'k', message: `must be an integer for topk, got ${cfg.k}` },
});
