/**
 * Random SAEs of every saved architecture for the onnx-vs-tfjs tests (onnx-gpt2-interventions.test.ts,
 * eval-engines.test.ts): host weights in the SAELens layout, as an SAE folder's tensors.
 */
import type { ReplacementSae } from '../src/model/index.js';
import type { HostTensor } from '../src/sae/fold.js';
import { SAELENS_LAYOUT_VERSION } from '../src/sae/saelens-folder.js';
import type { SaeFolderConfig } from '../src/sae/saelens-folder.js';
import { parseSavedArchitecture } from '../src/sae/saved-architecture.js';
import { Mulberry32 } from '../src/util/random.js';

export interface RandomSaeOptions {
  /** A saved architecture name: standard, topk, jumprelu, gated, transcoder, skip_transcoder, topk_transcoder... */
  architecture: string;
  hook: string;
  /** Transcoders: the hook they replace. */
  hookOut?: string;
  dIn?: number;
  dOut?: number;
  dSae?: number;
  k?: number;
  rescaleActsByDecoderNorm?: boolean;
  applyBDecToInput?: boolean;
  normalize?: SaeFolderConfig['normalize_activations'];
  seed?: number;
}

function gaussian(rng: Mulberry32, n: number, scale: number, shift = 0): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(rng.next(), 1e-12);
    out[i] = shift + scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.next());
  }
  return out;
}

/** A random SAE (config, kind, tensors) whose features fire on some but not all tokens. */
export function randomSae(o: RandomSaeOptions): ReplacementSae {
  const kind = parseSavedArchitecture(o.architecture);
  if (!kind) throw new Error(`unknown architecture ${o.architecture}`);
  const dIn = o.dIn ?? 64;
  const dOut = o.dOut ?? dIn;
  const S = o.dSae ?? 96;
  const rng = new Mulberry32(o.seed ?? 1);
  const t = (shape: number[], data: Float32Array): HostTensor => ({ shape, data });
  const tensors: Record<string, HostTensor> = {
    W_enc: t([dIn, S], gaussian(rng, dIn * S, 0.2)),
    W_dec: t([S, dOut], gaussian(rng, S * dOut, 0.15)),
    b_dec: t([dOut], gaussian(rng, dOut, 0.05)),
  };
  if (kind.encoder !== 'gated') tensors.b_enc = t([S], gaussian(rng, S, 0.1, -0.1));
  if (kind.encoder === 'jumprelu') tensors.threshold = t([S], gaussian(rng, S, 0.05, 0.2).map(Math.abs));
  if (kind.encoder === 'gated') {
    tensors.b_gate = t([S], gaussian(rng, S, 0.1, -0.1));
    tensors.b_mag = t([S], gaussian(rng, S, 0.1));
    tensors.r_mag = t([S], gaussian(rng, S, 0.2));
  }
  if (kind.skip) tensors.W_skip = t([dOut, dIn], gaussian(rng, dOut * dIn, 0.05));
  const config: SaeFolderConfig = {
    architecture: o.architecture,
    d_in: dIn,
    d_sae: S,
    ...(kind.transcoder ? { d_out: dOut } : {}),
    dtype: 'float32',
    device: 'cpu',
    apply_b_dec_to_input: o.applyBDecToInput ?? !kind.transcoder,
    normalize_activations: o.normalize ?? 'none',
    reshape_activations: o.hook.endsWith('hook_z') ? 'hook_z' : 'none',
    metadata: {
      // The current layout: without a version SAELens folders are read as the legacy flat one.
      sae_lens_version: SAELENS_LAYOUT_VERSION,
      hook_name: o.hook,
      ...(o.hookOut ? { hook_name_out: o.hookOut } : {}),
    },
    ...(kind.encoder === 'topk'
      ? { k: o.k ?? 8, rescale_acts_by_decoder_norm: o.rescaleActsByDecoderNorm ?? false }
      : {}),
  };
  return { name: `${o.architecture}@${o.hook}`, config, kind, tensors };
}
