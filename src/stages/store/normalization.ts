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
 * `expected_average_only_in` is the one mode applied by the store: a constant factor per hook, as in
 * SAELens's `estimate_norm_scaling_factor`: s = sqrt(d) / mean over tokens of ‖x‖, so scaled activations
 * have mean norm sqrt(d) (and E‖x‖² ≈ d, exactly so when all norms are equal). Being a constant, it can be
 * folded into the SAE's weights when saving. (The SAE trainer estimates and folds its own factor with
 * the same estimator; feed it unscaled activations. This mode is for other consumers of the store.) `constant_norm_rescale` and `layer_norm` rescale each token
 * differently; like SAELens we leave those to the SAE at run time, so the store passes them through.
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

export function scaleInPlace(values: Float32Array, factor: number): void {
  if (factor === 1) return;
  for (let i = 0; i < values.length; i++) values[i] = (values[i] as number) * factor;
}
