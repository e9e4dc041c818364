/**
 * Turns training parameters into the weights an inference SAE is saved with (SAELens's
 * `fold_activation_norm_scaling_factor`, `fold_W_dec_norm` and `process_state_dict_for_saving_inference`),
 * on host copies, so that the saved SAE maps raw activations to raw reconstructions:
 *
 * 1. normalisation: the SAE was trained on x·s_in against y·s_out. W_enc ·= s_in, W_dec /= s_out,
 *    b_dec /= s_out, W_skip ·= s_in/s_out. Pre-activations are unchanged, except topk/batchtopk's
 *    decoder-norm-rescaled ones, which shrink by s_out, so batchtopk's threshold is divided by s_out too.
 * 2. jumprelu: threshold = exp(log_threshold). batchtopk: a JumpReLU whose threshold is topk_threshold.
 * 3. topk/batchtopk with rescale_acts_by_decoder_norm, and every architecture under normalize_sae_decoder:
 *    decoder rows to unit norm, their norms moved into the encoder (W_enc columns, b_enc, b_gate, b_mag,
 *    threshold), which leaves the function unchanged (SAELens `fold_W_dec_norm`).
 * 4. W_skip is written as SAELens lays it out, [d_out, d_in].
 */
import { architectureOf } from './architectures/registry.js';
import type { ParamName } from './architectures/types.js';
import { isTranscoder } from './config.js';
import type { SaeTrainingConfig } from './config.js';
import type { HostTensor } from './host-tensor.js';
import { savedArchitectureName } from './saved-architecture.js';
import { transposed } from '../sae-formats/types.js';

export type { HostTensor } from './host-tensor.js';
export interface InferenceWeights {
  /** The cfg.json architecture name. */
  architecture: string;
  tensors: Record<string, HostTensor>;
}

export interface FoldInputs {
  cfg: SaeTrainingConfig;
  /** Host copies of the training parameters (not modified). */
  params: Record<string, HostTensor>;
  /** batchtopk's running threshold (in normalised, rescaled units). */
  topkThreshold: number;
  scaleIn: number;
  scaleOut: number;
}

function scaled(t: HostTensor, factor: number): HostTensor {
  const data = new Float32Array(t.data.length);
  for (let i = 0; i < data.length; i++) data[i] = t.data[i]! * factor;
  return { shape: [...t.shape], data };
}

function rowNormsOf(w: HostTensor): Float64Array {
  const [rows, cols] = w.shape as [number, number];
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let sq = 0;
    for (let c = 0; c < cols; c++) sq += w.data[r * cols + c]! ** 2;
    out[r] = Math.sqrt(sq);
  }
  return out;
}

/** Moves decoder row norms into the encoder side; `perFeature` names the [d_sae] tensors scaled with them. */
function foldDecoderNorms(t: Record<string, HostTensor>, perFeature: string[]): void {
  const wDec = t.W_dec!;
  const wEnc = t.W_enc!;
  const norms = rowNormsOf(wDec);
  const [S, dOut] = wDec.shape as [number, number];
  const dIn = wEnc.shape[0]!;
  for (let j = 0; j < S; j++) {
    const n = norms[j]!;
    if (n === 0) continue;
    for (let c = 0; c < dOut; c++) wDec.data[j * dOut + c] = wDec.data[j * dOut + c]! / n;
    for (let r = 0; r < dIn; r++) wEnc.data[r * S + j] = wEnc.data[r * S + j]! * n;
    for (const name of perFeature) {
      const v = t[name];
      if (v) v.data[j] = v.data[j]! * n;
    }
  }
}

export function inferenceWeights({
  cfg,
  params,
  topkThreshold,
  scaleIn,
  scaleOut,
}: FoldInputs): InferenceWeights {
  const get = (name: string): HostTensor => {
    const t = params[name];
    if (!t) throw new Error(`parameter ${name} is missing`);
    return t;
  };
  const t: Record<string, HostTensor> = {
    W_enc: scaled(get('W_enc'), scaleIn),
    W_dec: scaled(get('W_dec'), 1 / scaleOut),
    b_dec: scaled(get('b_dec'), 1 / scaleOut),
  };
  if (params.W_skip) t.W_skip = scaled(params.W_skip, scaleIn / scaleOut);
  const arch = architectureOf(cfg.architecture);
  const ctx = { cfg, topkThreshold, scaleOut };
  Object.assign(
    t,
    arch.savedTensors((name: ParamName) => get(name), ctx),
  );
  if (arch.rescalesByDecoderNorm?.(cfg) === true || cfg.normalize_sae_decoder) {
    foldDecoderNorms(t, ['b_enc', 'threshold', 'b_gate', 'b_mag']);
  }
  arch.afterFold?.(t, ctx);
  if (t.W_skip) t.W_skip = transposed(t.W_skip);
  const architecture = savedArchitectureName({
    encoder: arch.savedEncoder,
    transcoder: isTranscoder(cfg),
    skip: cfg.skip_connection,
  });
  return { architecture, tensors: t };
}
