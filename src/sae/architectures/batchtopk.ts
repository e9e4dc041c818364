/**
 * batchtopk SAE, as SAELens's BatchTopKTrainingSAE: like topk, but the k·B largest entries of h_r are kept
 * over the whole batch (k features per token on average) instead of k per row. Same AuxK loss.
 *
 * The trainer keeps `topk_threshold`, an exponential moving average (rate `topk_threshold_lr`, float64) of
 * the smallest positive activation of each batch, reported here as `min_positive_act`; the saved SAE is a
 * JumpReLU whose threshold is that value for every feature.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { SaeTrainingConfig } from '../config.js';
import { atLeast } from './common.js';
import { makeTopKModule } from './topk.js';
import type { ArchitectureModule, ForwardResult, Params, StepInput } from './types.js';

/** Number of entries a batch of `rows` tokens keeps (SAELens truncates k·B). */
export function batchTopKCount(cfg: SaeTrainingConfig, rows: number): number {
  return Math.max(1, Math.floor(cfg.k * rows));
}

function selectBatchTopK(hr: tf.Tensor2D, cfg: SaeTrainingConfig): tf.Tensor2D {
  const keep = Math.min(batchTopKCount(cfg, hr.shape[0]), hr.size);
  const top = tf.topk(tf.reshape(hr, [-1]), keep, true).values;
  const kth = tf.slice(top, [keep - 1], [1]);
  return atLeast(hr, kth) as tf.Tensor2D;
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
};
