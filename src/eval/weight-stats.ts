/**
 * Statistics of an SAE's weights alone (no data): decoder row norms, encoder column norms and the cosine
 * similarity between each feature's encoder column and decoder row (SAELens's
 * `get_featurewise_weight_based_metrics`: `encoder_norm`, `encoder_decoder_cosine_sim`), summarised.
 * Used by the evaluator and by `inspect-sae`.
 */
import { UserError } from '../pipeline/errors.js';
import type { HostTensor } from '../sae/fold.js';
import { readSaeFolder } from '../sae/saelens-folder.js';

/** min / max / mean / standard deviation / median of a per-feature quantity. */
export interface Summary {
  min: number;
  max: number;
  mean: number;
  std: number;
  median: number;
}

export interface WeightStatistics {
  d_in: number;
  d_sae: number;
  /** Width of the decoder's output (d_in for an SAE, d_out for a transcoder). */
  d_out: number;
  /** ‖W_dec[f, :]‖ over features. */
  decoder_norm: Summary & { max_deviation_from_1: number };
  /** ‖W_enc[:, f]‖ over features. */
  encoder_norm: Summary;
  /** cos(W_enc[:, f], W_dec[f, :]); null when d_in ≠ d_out (a transcoder's sides live in different spaces). */
  encoder_decoder_cosine: Summary | null;
  /** ‖b_dec‖, and mean of b_enc when the architecture has one. */
  b_dec_norm: number;
  b_enc_mean: number | null;
  /** The per-feature values the summaries are taken over. */
  per_feature: {
    decoder_norm: Float64Array;
    encoder_norm: Float64Array;
    encoder_decoder_cosine: Float64Array | null;
  };
}

/** An SAE's weights on the host: SAELens names and layouts (W_enc [d_in, d_sae], W_dec [d_sae, d_out]). */
export type SaeHostWeights = Readonly<Record<string, HostTensor>>;

export function summarize(values: ArrayLike<number>): Summary {
  const n = values.length;
  if (n === 0) return { min: 0, max: 0, mean: 0, std: 0, median: 0 };
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const v = values[i]!;
    if (v < min) min = v;
    if (v > max) max = v;
    sum += v;
  }
  const mean = sum / n;
  let sq = 0;
  for (let i = 0; i < n; i++) sq += (values[i]! - mean) ** 2;
  const sorted = Float64Array.from(values as ArrayLike<number>).sort();
  const median = n % 2 === 1 ? sorted[(n - 1) / 2]! : (sorted[n / 2 - 1]! + sorted[n / 2]!) / 2;
  return { min, max, mean, std: Math.sqrt(sq / n), median };
}

function matrix(weights: SaeHostWeights, name: string): { data: Float32Array; rows: number; cols: number } {
  const t = weights[name];
  if (!t) throw new UserError(`SAE weights: tensor '${name}' is missing`);
  if (t.shape.length !== 2) {
    throw new UserError(`SAE weights: '${name}' must be 2-D, got shape [${t.shape.join(', ')}]`);
  }
  const [rows, cols] = t.shape as [number, number];
  if (t.data.length !== rows * cols) {
    throw new UserError(
      `SAE weights: '${name}' has ${t.data.length} values for shape [${t.shape.join(', ')}]`,
    );
  }
  return { data: t.data, rows, cols };
}

function statisticsOf(weights: SaeHostWeights): WeightStatistics {
  const enc = matrix(weights, 'W_enc');
  const dec = matrix(weights, 'W_dec');
  const dIn = enc.rows;
  const dSae = enc.cols;
  const dOut = dec.cols;
  if (dec.rows !== dSae) {
    throw new UserError(
      `SAE weights: W_dec has ${dec.rows} rows but W_enc has ${dSae} columns (both should be d_sae)`,
    );
  }
  const decNorm = new Float64Array(dSae);
  const encNorm = new Float64Array(dSae);
  const cosine = dIn === dOut ? new Float64Array(dSae) : null;
  // One pass over W_enc row by row (its natural layout) accumulates every column's squared norm and its dot
  // with the decoder row at once.
  const encSq = new Float64Array(dSae);
  const dots = new Float64Array(dSae);
  for (let i = 0; i < dIn; i++) {
    const base = i * dSae;
    for (let f = 0; f < dSae; f++) {
      const e = enc.data[base + f]!;
      encSq[f] = encSq[f]! + e * e;
      if (cosine) dots[f] = dots[f]! + e * dec.data[f * dOut + i]!;
    }
  }
  for (let f = 0; f < dSae; f++) {
    let sq = 0;
    for (let c = 0; c < dOut; c++) sq += dec.data[f * dOut + c]! ** 2;
    decNorm[f] = Math.sqrt(sq);
    encNorm[f] = Math.sqrt(encSq[f]!);
    if (cosine) {
      const denom = decNorm[f]! * encNorm[f]!;
      // A zero column or row has no direction; count it as orthogonal rather than poisoning the mean.
      cosine[f] = denom > 0 ? dots[f]! / denom : 0;
    }
  }
  let maxDeviation = 0;
  for (const n of decNorm) maxDeviation = Math.max(maxDeviation, Math.abs(n - 1));

  const bDec = weights.b_dec;
  let bDecNorm = 0;
  if (bDec) for (const v of bDec.data) bDecNorm += v * v;
  const bEnc = weights.b_enc;
  let bEncMean: number | null = null;
  if (bEnc && bEnc.data.length > 0) {
    let s = 0;
    for (const v of bEnc.data) s += v;
    bEncMean = s / bEnc.data.length;
  }
  return {
    d_in: dIn,
    d_sae: dSae,
    d_out: dOut,
    decoder_norm: { ...summarize(decNorm), max_deviation_from_1: maxDeviation },
    encoder_norm: summarize(encNorm),
    encoder_decoder_cosine: cosine ? summarize(cosine) : null,
    b_dec_norm: Math.sqrt(bDecNorm),
    b_enc_mean: bEncMean,
    per_feature: { decoder_norm: decNorm, encoder_norm: encNorm, encoder_decoder_cosine: cosine },
  };
}

/**
 * Weight statistics of an SAE given its host tensors (synchronous), or of an SAELens folder (read first,
 * so asynchronous; a missing or malformed folder is a UserError naming the file).
 */
export function weightStatistics(weights: SaeHostWeights | { tensors: SaeHostWeights }): WeightStatistics;
export function weightStatistics(folder: string): Promise<WeightStatistics>;
export function weightStatistics(
  input: string | SaeHostWeights | { tensors: SaeHostWeights },
): WeightStatistics | Promise<WeightStatistics> {
  if (typeof input === 'string') return readSaeFolder(input).then((folder) => statisticsOf(folder.tensors));
  const tensors =
    'tensors' in input && typeof input.tensors === 'object' && !('shape' in input.tensors)
      ? (input.tensors as SaeHostWeights)
      : (input as SaeHostWeights);
  return statisticsOf(tensors);
}

/** The scalar figures as one flat object of numbers (report-data `weight_stats`). */
export function flatWeightStatistics(s: WeightStatistics): Record<string, number> {
  const out: Record<string, number> = {};
  const put = (prefix: string, summary: Summary) => {
    out[`${prefix}_min`] = summary.min;
    out[`${prefix}_max`] = summary.max;
    out[`${prefix}_mean`] = summary.mean;
    out[`${prefix}_std`] = summary.std;
  };
  put('decoder_norm', s.decoder_norm);
  out.decoder_norm_max_deviation_from_1 = s.decoder_norm.max_deviation_from_1;
  put('encoder_norm', s.encoder_norm);
  if (s.encoder_decoder_cosine) {
    put('encoder_decoder_cosine', s.encoder_decoder_cosine);
    out.encoder_decoder_cosine_median = s.encoder_decoder_cosine.median;
  }
  out.b_dec_norm = s.b_dec_norm;
  if (s.b_enc_mean !== null) out.b_enc_mean = s.b_enc_mean;
  return out;
}

/** JSON form of the statistics (per-feature arrays as plain lists, optional). */
export function weightStatisticsJson(s: WeightStatistics, perFeature = false): Record<string, unknown> {
  const { per_feature, ...rest } = s;
  if (!perFeature) return rest;
  return {
    ...rest,
    per_feature: {
      decoder_norm: Array.from(per_feature.decoder_norm),
      encoder_norm: Array.from(per_feature.encoder_norm),
      encoder_decoder_cosine: per_feature.encoder_decoder_cosine
        ? Array.from(per_feature.encoder_decoder_cosine)
        : null,
    },
  };
}
