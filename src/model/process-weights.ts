/**
 * Weight processing applied after loading, with TransformerLens's meaning; each family implements the
 * ones it offers (`ModelFamily.processWeights`). For GPT-2:
 *
 * `center_writing_weights` subtracts, from every weight and bias that writes into the residual stream
 * (W_E, W_pos, W_O/b_O = attn.c_proj, W_out/b_out = mlp.c_proj), its mean over d_model. The tied
 * unembedding keeps the original wte, as TransformerLens's separate W_U does. Every residual
 * activation then has zero mean over d_model; since each LayerNorm subtracts that mean anyway, the
 * LayerNorm outputs, everything computed from them and the logits are unchanged. TransformerLens loads
 * GPT-2 this way by default, and the public GPT-2 small residual SAEs were trained on such activations.
 * LayerNorm folding is deliberately not offered: it would change what `ln*.hook_normalized` mean.
 */
import { UserError } from '../pipeline/errors.js';

export const WEIGHT_PROCESSINGS = ['none', 'center_writing_weights'] as const;
export type WeightProcessing = (typeof WEIGHT_PROCESSINGS)[number];

export function parseWeightProcessing(value: unknown): WeightProcessing {
  if (typeof value === 'string' && (WEIGHT_PROCESSINGS as readonly string[]).includes(value)) {
    return value as WeightProcessing;
  }
  throw new UserError(
    `unknown weight processing ${JSON.stringify(value)} (expected one of: ${WEIGHT_PROCESSINGS.join(', ')})`,
  );
}

/** A copy of a row-major [rows, width] matrix with each row's mean (taken in float64) subtracted. */
export function centerRows(matrix: Float32Array, width: number): Float32Array {
  if (width <= 0 || matrix.length % width !== 0) {
    throw new RangeError(`centerRows: ${matrix.length} elements do not form rows of width ${width}`);
  }
  const out = new Float32Array(matrix.length);
  for (let start = 0; start < matrix.length; start += width) {
    let sum = 0;
    for (let j = 0; j < width; j++) sum += matrix[start + j]!;
    const mean = sum / width;
    for (let j = 0; j < width; j++) out[start + j] = matrix[start + j]! - mean;
  }
  return out;
}
