/**
 * batchtopk SAE, as SAELens's BatchTopKTrainingSAE: like topk, but the k·B largest entries of h_r are kept
 * over the whole batch (k features per token on average) instead of k per row. Same AuxK loss.
 *
 * The trainer keeps `topk_threshold`, an exponential moving average (rate `topk_threshold_lr`, float64) of
 * the smallest positive activation of each batch, reported here as `min_positive_act`; the saved SAE is a
 * JumpReLU whose threshold is that value for every feature.
 *
 * A batch processed in row chunks is ranked as a whole: `batchThreshold` runs the encoder over every chunk
 * first, keeps each chunk's top min(k·B, chunk size) values (the batch's top k·B are among them) and takes
 * the k·B-th largest of those; each chunk's forward then selects against that value.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { SaeTrainingConfig } from '../config.js';
import { atLeast } from './common.js';
import { makeTopKModule, topKPreActivations } from './topk.js';
import type { ArchitectureModule, ForwardResult, Params, StepInput } from './types.js';

/** Number of entries a batch of `rows` tokens keeps (SAELens truncates k·B). */
export function batchTopKCount(cfg: SaeTrainingConfig, rows: number): number {
  return Math.max(1, Math.floor(cfg.k * rows));
}

/** The `keep`-th largest entry of the (flattened) values, as a [1] tensor. */
function kthLargest(values: tf.Tensor, keep: number): tf.Tensor {
  const top = tf.topk(tf.reshape(values, [-1]), keep, true).values;
  return tf.slice(top, [keep - 1], [1]);
}

function selectBatchTopK(hr: tf.Tensor2D, cfg: SaeTrainingConfig, input: StepInput): tf.Tensor2D {
  if (input.batchThreshold !== undefined) return atLeast(hr, input.batchThreshold) as tf.Tensor2D;
  return atLeast(hr, kthLargest(hr, Math.min(batchTopKCount(cfg, hr.shape[0]), hr.size))) as tf.Tensor2D;
}

function batchThreshold(p: Params, xChunks: tf.Tensor2D[], cfg: SaeTrainingConfig): tf.Tensor {
  const rows = xChunks.reduce((n, x) => n + x.shape[0], 0);
  const keep = Math.min(batchTopKCount(cfg, rows), rows * cfg.d_sae);
  const candidates = xChunks.map((x) =>
    tf.tidy(() => {
      const { hr } = topKPreActivations(p, x, cfg);
      return tf.topk(tf.reshape(hr, [-1]), Math.min(keep, hr.size), true).values;
    }),
  );
  try {
    return tf.tidy(() => kthLargest(tf.concat(candidates), keep));
  } finally {
    for (const t of candidates) t.dispose();
  }
}

const base = makeTopKModule(selectBatchTopK);

export const batchtopk: ArchitectureModule = {
  ...base,
  forward(p: Params, input: StepInput, cfg: SaeTrainingConfig): ForwardResult {
    const out = base.forward(p, input, cfg);
    const f = out.featureActs;
    // Zeros are lifted to 1e30 so the minimum is over positive entries (1e30 means none fired).
    const lifted = tf.add(f, tf.mul(tf.sub(1, tf.step(f)), 1e30));
    return { ...out, stats: { min_positive_act: tf.min(lifted) as tf.Scalar } };
  },
  batchThreshold,
};
