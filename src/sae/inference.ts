/**
 * An SAE's (or transcoder's) inference forward, written once on the op layer: SAELens's run-time input
 * normalisation (constant_norm_rescale, layer_norm), the architecture's encoder, the decoder (with
 * topk's rescale_acts_by_decoder_norm undone and the skip connection on the raw input), and the inverse
 * normalisation for SAEs (not for transcoders, whose output has another width). The same function builds
 * the SAE into an ONNX graph (hook replacement in the evaluator) and runs it eagerly on tfjs (`Sae`).
 *
 * Weights enter as constants keyed `<key>.<tensor>`, so one SAE's weights are stored once per graph.
 */
import type { Ops } from '../ops/ops.js';
import { encoderFor } from './architectures/registry.js';
import type { HostTensor } from './fold.js';
import type { SaeFolderConfig } from './saelens-folder.js';
import type { SavedArchitecture } from './saved-architecture.js';

/** An SAE as saved: cfg.json, its architecture, and its weights (normalisation folded in). */
export interface InferenceSae {
  config: SaeFolderConfig;
  kind: SavedArchitecture;
  /** W_enc [d_in, d_sae], b_enc, W_dec [d_sae, d_out], b_dec; threshold, b_gate/b_mag/r_mag, W_skip [d_out, d_in]. */
  tensors: Readonly<Record<string, HostTensor>>;
}

/** The saved weights as op-layer values, by tensor name. */
export type SaeWeights<T> = (name: string) => T;

export function saeWeights<T>(o: Ops<T>, sae: InferenceSae, key: string): SaeWeights<T> {
  return (name) => {
    const t = sae.tensors[name];
    if (t === undefined) throw new Error(`SAE ${key}: no tensor ${name}`);
    return o.constant(`${key}.${name}`, t.shape, t.data);
  };
}

/** ‖W_dec[j]‖ for every feature (a [d_sae] vector). */
export function decoderRowNorms<T>(o: Ops<T>, w: SaeWeights<T>): T {
  const wDec = w('W_dec');
  return o.sqrt(o.sum(o.mul(wDec, wDec), 1));
}

function rescales(sae: InferenceSae): boolean {
  return sae.kind.encoder === 'topk' && sae.config.rescale_acts_by_decoder_norm === true;
}

/** Per-token normalisation of rows [n, d_in] and its inverse. */
function normalise<T>(o: Ops<T>, sae: InferenceSae, rows: T): { xn: T; undo: (y: T) => T } {
  const dIn = sae.config.d_in;
  switch (sae.config.normalize_activations) {
    case 'constant_norm_rescale': {
      const coeff = o.div(o.scalar(Math.sqrt(dIn)), o.sqrt(o.sum(o.mul(rows, rows), 1, true)));
      return { xn: o.mul(rows, coeff), undo: (y) => o.div(y, coeff) };
    }
    case 'layer_norm': {
      const mu = o.mean(rows, 1, true);
      const centred = o.sub(rows, mu);
      // torch.std is the unbiased estimate.
      const std = o.sqrt(o.div(o.sum(o.mul(centred, centred), 1, true), o.scalar(Math.max(1, dIn - 1))));
      return {
        xn: o.div(centred, o.add(std, o.scalar(1e-5))),
        undo: (y) => o.add(o.mul(y, std), mu),
      };
    }
    default:
      return { xn: rows, undo: (y) => y };
  }
}

/** Feature activations [n, d_sae] of already-normalised rows. */
function encodeNormalised<T>(o: Ops<T>, sae: InferenceSae, w: SaeWeights<T>, xn: T): T {
  const xc = sae.config.apply_b_dec_to_input ? o.sub(xn, w('b_dec')) : xn;
  return encoderFor(sae.kind.encoder).encode(o, w, xc, sae.config);
}

/** f W_dec + b_dec (+ x W_skip on the raw rows): the reconstruction before any inverse normalisation. */
function decodeNormalised<T>(o: Ops<T>, sae: InferenceSae, w: SaeWeights<T>, f: T, raw: T | undefined): T {
  const acts = rescales(sae) ? o.div(f, decoderRowNorms(o, w)) : f;
  const out = o.matMul(acts, w('W_dec'), { bias: w('b_dec') });
  if (!sae.kind.skip) return out;
  if (raw === undefined) throw new Error('a skip transcoder needs its input x to decode');
  return o.add(out, o.matMul(raw, w('W_skip'), { transB: true }));
}

/** Feature activations [n, d_sae] of raw rows [n, d_in]. */
export function saeEncode<T>(o: Ops<T>, sae: InferenceSae, key: string, rows: T): T {
  const w = saeWeights(o, sae, key);
  return o.scope(key, () => encodeNormalised(o, sae, w, normalise(o, sae, rows).xn));
}

/** Reconstruction from features (skip transcoders also need the raw rows). */
export function saeDecode<T>(o: Ops<T>, sae: InferenceSae, key: string, features: T, rows?: T): T {
  const w = saeWeights(o, sae, key);
  return o.scope(key, () => decodeNormalised(o, sae, w, features, rows));
}

/**
 * The SAE on rows [n, d_in]: features [n, d_sae] and reconstruction [n, d_out], the per-token
 * normalisation undone for SAEs (not transcoders), as SAELens's forward.
 */
export function saeForward<T>(
  o: Ops<T>,
  sae: InferenceSae,
  key: string,
  rows: T,
): { features: T; reconstruction: T } {
  const w = saeWeights(o, sae, key);
  return o.scope(key, () => {
    const { xn, undo } = normalise(o, sae, rows);
    const features = encodeNormalised(o, sae, w, xn);
    const out = decodeNormalised(o, sae, w, features, rows);
    return { features, reconstruction: sae.kind.transcoder ? out : undo(out) };
  });
}
