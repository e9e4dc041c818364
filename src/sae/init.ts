/**
 * Parameter initialisation, as SAELens's TrainingSAE: W_dec rows drawn Kaiming-uniform (PyTorch's
 * default: U(-√(6/fan_in), √(6/fan_in)), fan_in = the row width), rescaled to `decoder_init_norm`, and
 * W_enc = W_decᵀ; biases and per-feature parameters from the architecture module.
 *
 * Differences, for what SAELens does not train: a transcoder whose d_out differs from d_in draws W_enc's
 * columns the same way from their own stream of numbers (W_decᵀ has the wrong shape); with
 * `normalize_sae_decoder` the rows start at norm 1 and W_enc = decoder_init_norm · W_decᵀ.
 */
import { transposeMatrix } from '../util/transpose.js';
import { Mulberry32 } from '../util/random.js';
import { outputWidth } from './config.js';
import type { SaeTrainingConfig } from './config.js';
import { architectureOf } from './architectures/registry.js';
import type { ParamName } from './architectures/types.js';

/** Rows of a [rows, width] matrix, Kaiming-uniform, each rescaled to `norm` when given. */
function randomRows(rng: Mulberry32, rows: number, width: number, norm: number | null): Float32Array {
  const bound = Math.sqrt(6 / width);
  const out = new Float32Array(rows * width);
  const row = new Float64Array(width);
  for (let r = 0; r < rows; r++) {
    let sq = 0;
    for (let c = 0; c < width; c++) {
      row[c] = (rng.next() * 2 - 1) * bound;
      sq += row[c]! * row[c]!;
    }
    const scale = norm === null ? 1 : norm / Math.sqrt(sq);
    for (let c = 0; c < width; c++) out[r * width + c] = row[c]! * scale;
  }
  return out;
}

export interface InitialParams {
  /** Host copies of every parameter, by name, with their shapes. */
  values: Partial<Record<ParamName, { shape: number[]; data: Float32Array }>>;
  /** The generator's state after drawing, saved with the trainer state. */
  rngState: number;
}

export function initialParamValues(cfg: SaeTrainingConfig): InitialParams {
  const rng = new Mulberry32(cfg.seed);
  const dOut = outputWidth(cfg);
  const S = cfg.d_sae;
  const unit = cfg.normalize_sae_decoder;
  const wDec = randomRows(rng, S, dOut, unit ? 1 : cfg.decoder_init_norm);
  let wEnc: Float32Array;
  if (dOut === cfg.d_in) {
    wEnc = transposeMatrix(wDec, S, dOut, unit ? (cfg.decoder_init_norm ?? 1) : 1);
  } else {
    wEnc = transposeMatrix(randomRows(rng, S, cfg.d_in, cfg.decoder_init_norm), S, cfg.d_in);
  }
  const values: InitialParams['values'] = {
    W_enc: { shape: [cfg.d_in, S], data: wEnc },
    W_dec: { shape: [S, dOut], data: wDec },
    b_dec: { shape: [dOut], data: new Float32Array(dOut) },
  };
  if (cfg.skip_connection)
    values.W_skip = { shape: [cfg.d_in, dOut], data: new Float32Array(cfg.d_in * dOut) };
  for (const [name, value] of Object.entries(architectureOf(cfg.architecture).featureParams(cfg))) {
    values[name as ParamName] = { shape: [S], data: new Float32Array(S).fill(value) };
  }
  return { values, rngState: rng.state };
}
