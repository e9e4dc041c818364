/**
 * batchtopk SAE, as SAELens's BatchTopKTrainingSAE: like topk, but the k·B largest entries of h_r are kept
 * over the whole batch (k features per token on average) instead of k per row. Same AuxK loss.
 *
 * The trainer keeps `topk_threshold`, an exponential moving average (rate `topk_threshold_lr`, float64) of
 * the smallest positive activation of each batch, reported here as `min_positive_act`; the saved SAE is a
 * JumpReLU whose threshold is that value for every feature.
 *
 * A batch processed in row chunks is ranked as a whole: `batchThreshold` keeps each chunk's top
 * min(k·B, chunk size) values of h_r (the batch's top k·B are among them) and takes the k·B-th largest of
 * those; each chunk's forward then selects against that value.
 */
import type { SaeTrainingConfig } from '../config.js';
import { TOPK_OPTIONS, topKFamily, topKPreActivations } from './topk.js';
import type { TopKFamilySpec } from './topk.js';
import type { Architecture } from './types.js';
import type { HostTensor } from '../host-tensor.js';

/** Number of entries a batch of `rows` tokens keeps (SAELens truncates k·B), at most every entry. */
export function batchTopKCount(cfg: SaeTrainingConfig, rows: number): number {
  return Math.min(Math.max(1, Math.floor(cfg.k * rows)), rows * cfg.d_sae);
}

export const BATCHTOPK_OPTIONS = {
  ...TOPK_OPTIONS,
  topk_threshold_lr: { kind: { type: 'number' as const, min: 0, max: 1 }, default: 0.01 },
};

/** The selection of the batchtopk family, for its relatives to reuse. */
export const batchSelection: Pick<
  TopKFamilySpec,
  'threshold' | 'batchSelection' | 'batchThreshold' | 'validate' | 'savedTensors' | 'afterFold'
> = {
  batchSelection: true,
  threshold(o, hr, input) {
    if (input.batchThreshold !== undefined) return input.batchThreshold;
    if (input.keep === undefined) throw new Error('batchtopk: a step needs its keep count');
    return o.min(o.topKValues(o.reshape(hr, [1, -1]), input.keep));
  },
  batchThreshold(o, p, chunks, keep, cfg) {
    const candidates = chunks.map(({ x, rows }) => {
      const { hr } = topKPreActivations(o, p, x, cfg);
      return o.topKValues(o.reshape(hr, [1, -1]), Math.min(keep, rows * cfg.d_sae));
    });
    return o.min(o.topKValues(o.concat(candidates, 1), keep));
  },
  // Saved as a JumpReLU. Without rescaling the threshold is in pre-activation units and folds with any
  // decoder norms like JumpReLU's; rescaled pre-activations are already in unit-decoder units, so only the
  // output scaling applies, after the fold.
  savedTensors: ({ cfg, topkThreshold }): Record<string, HostTensor> =>
    cfg.rescale_acts_by_decoder_norm ? {} : { threshold: filled(cfg.d_sae, topkThreshold) },
  afterFold(t, { cfg, topkThreshold, scaleOut }) {
    if (cfg.rescale_acts_by_decoder_norm) t.threshold = filled(cfg.d_sae, topkThreshold / scaleOut);
  },
  validate: (cfg) =>
    Math.floor(cfg.k * cfg.train_batch_size_tokens) < 1
      ? {
          field: 'k',
          message: `k * train_batch_size_tokens must be at least 1, got ${cfg.k * cfg.train_batch_size_tokens}`,
        }
      : null,
};

function filled(n: number, value: number): HostTensor {
  return { shape: [n], data: new Float32Array(n).fill(value) };
}

export const batchtopk: Architecture = topKFamily({
  name: 'batchtopk',
  options: BATCHTOPK_OPTIONS,
  savedEncoder: 'jumprelu',
  ...batchSelection,
});
