/**
 * Architectures by name. Each file in this folder defines one architecture; this registry is the only
 * list of them.
 */
import type { Ops } from '../../ops/ops.js';
import type { SaeFolderConfig } from '../saelens-folder.js';
import type { EncoderKind } from '../saved-architecture.js';

/** Inference encoder of a saved architecture: features from the centred input x_c. */
export interface InferenceEncoder {
  /** Per-feature tensors it reads beyond W_enc, b_enc, W_dec, b_dec (gated has no b_enc). */
  tensors: readonly string[];
  usesBEnc: boolean;
  encode<T>(o: Ops<T>, w: (name: string) => T, xc: T, cfg: SaeFolderConfig): T;
}

const ENCODERS: Record<EncoderKind, InferenceEncoder> = {
  standard: {
    tensors: [],
    usesBEnc: true,
    encode: (o, w, xc) => o.relu(o.matMul(xc, w('W_enc'), { bias: w('b_enc') })),
  },
  jumprelu: {
    tensors: ['threshold'],
    usesBEnc: true,
    encode(o, w, xc) {
      const h = o.matMul(xc, w('W_enc'), { bias: w('b_enc') });
      return o.mul(o.relu(h), o.greater(h, w('threshold')));
    },
  },
  topk: {
    tensors: [],
    usesBEnc: true,
    encode(o, w, xc, cfg) {
      let h = o.matMul(xc, w('W_enc'), { bias: w('b_enc') });
      if (cfg.rescale_acts_by_decoder_norm === true) {
        const wDec = w('W_dec');
        h = o.mul(h, o.sqrt(o.sum(o.mul(wDec, wDec), 1)));
      }
      const kth = o.min(o.topKValues(h, cfg.k!), 1, true);
      return o.mul(o.relu(h), o.greaterEqual(h, kth));
    },
  },
  gated: {
    tensors: ['b_gate', 'b_mag', 'r_mag'],
    usesBEnc: false,
    encode(o, w, xc) {
      const pre = o.matMul(xc, w('W_enc'));
      const gate = o.greater(o.add(pre, w('b_gate')), o.scalar(0));
      return o.mul(gate, o.relu(o.add(o.mul(pre, o.exp(w('r_mag'))), w('b_mag'))));
    },
  },
};

export function encoderFor(kind: EncoderKind): InferenceEncoder {
  return ENCODERS[kind];
}
