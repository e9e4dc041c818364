import { UserError } from '../../pipeline/errors.js';
import { NormEstimate } from '../../sae/norm-scaling.js';
import type { HookWidths, RowBlock } from './row-block.js';

export const NORMALIZE_MODES = [
  'none',
  'expected_average_only_in',
  'constant_norm_rescale',
  'layer_norm',
] as const;
export type NormalizeMode = (typeof NORMALIZE_MODES)[number];

/**
 * `expected_average_only_in`: a constant factor per hook, as in SAELens's `estimate_norm_scaling_factor`:
 * s = sqrt(d) / mean over tokens of ‖x‖, so scaled activations have mean norm sqrt(d) (E‖x‖² ≈ d, exactly
 * so when all norms are equal). Being a constant, it can be folded into an SAE's weights when saving. (The SAE
 * trainer estimates and folds its own factor with the same estimator: feed it unscaled activations.)
 * `constant_norm_rescale` and `layer_norm` act on each token separately (SAELens applies them inside the
 * SAE at run time): every served row is rescaled to norm sqrt(d), or standardised to mean 0 and variance 1.
 * They cannot be folded into weights, so an SAE trained on them must apply the same transform at inference.
 */
export function storeAppliesScaling(mode: NormalizeMode): boolean {
  return mode === 'expected_average_only_in';
}

/** Scaling factor per hook from a sample of rows. */
export function estimateScalingFactors(sample: RowBlock, widths: HookWidths): Record<string, number> {
  const factors: Record<string, number> = {};
  for (const [hook, d] of Object.entries(widths)) {
    const estimate = new NormEstimate(d);
    estimate.observe(sample.hooks[hook] as Float32Array, sample.rows);
    const mean = Math.sqrt(d) / estimate.scalingFactor();
    if (!Number.isFinite(mean) || mean <= 0) {
      throw new UserError(
        `cannot normalise ${hook}: the mean activation norm of the first ${sample.rows} tokens is ${mean}` +
          (Number.isFinite(mean) ? '' : ' (the activations contain NaN or infinity)'),
      );
    }
    factors[hook] = Math.sqrt(d) / mean;
  }
  return factors;
}

/** Applies a per-token mode to each row of a [rows, d] matrix in place. */
export function normalizeRowsInPlace(values: Float32Array, d: number, mode: NormalizeMode): void {
  if (mode !== 'constant_norm_rescale' && mode !== 'layer_norm') return;
  for (let base = 0; base < values.length; base += d) {
    let mean = 0;
    if (mode === 'layer_norm') {
      for (let j = 0; j < d; j++) mean += values[base + j] as number;
      mean /= d;
    }
    let sq = 0;
    for (let j = 0; j < d; j++) {
      const v = (values[base + j] as number) - mean;
      sq += v * v;
    }
    // layer_norm: divide by the standard deviation (eps as torch's LayerNorm); rescale: by ‖x‖ / sqrt(d).
    const scale = mode === 'layer_norm' ? 1 / Math.sqrt(sq / d + 1e-5) : sq > 0 ? Math.sqrt(d / sq) : 1;
    for (let j = 0; j < d; j++) values[base + j] = ((values[base + j] as number) - mean) * scale;
  }
}

export function scaleInPlace(values: Float32Array, factor: number): void {
  if (factor === 1) return;
  for (let i = 0; i < values.length; i++) values[i] = (values[i] as number) * factor;
}
