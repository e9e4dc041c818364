/**
 * Weight processing applied after loading, with TransformerLens's meaning.
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
import type { Gpt2Config } from './gpt2-config.js';
import type { Gpt2Weights, LinearWeights } from './gpt2-weights.js';

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

function centerWriter(lin: LinearWeights, dModel: number): LinearWeights {
  // Conv1D weight is [in, d_model]: each row is what one input unit writes, so centre along the row.
  return { weight: centerRows(lin.weight, dModel), bias: centerRows(lin.bias, dModel) };
}

/** Returns processed weights; arrays that change are new, the rest are shared with the input. */
export function processWeights(
  weights: Gpt2Weights,
  config: Gpt2Config,
  processing: WeightProcessing,
): Gpt2Weights {
  switch (processing) {
    case 'none':
      return weights;
    case 'center_writing_weights': {
      const d = config.nEmbd;
      return {
        wte: centerRows(weights.wte, d),
        // W_U is read from the residual stream, not written to it: TransformerLens leaves it alone here.
        unembed: weights.unembed,
        wpe: centerRows(weights.wpe, d),
        blocks: weights.blocks.map((b) => ({
          ...b,
          attnOut: centerWriter(b.attnOut, d),
          mlpOut: centerWriter(b.mlpOut, d),
        })),
        lnFinal: weights.lnFinal,
      };
    }
    default:
      throw new UserError(`unknown weight processing ${JSON.stringify(processing satisfies never)}`);
  }
}
