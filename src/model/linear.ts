/**
 * Linear layers of the model families whose checkpoints store torch's `nn.Linear` weights ([out, in]):
 * transposed once at load to [in, out] (and side by side where several projections read the same input,
 * such as q | k | v), so that every product in a forward is a plain MatMul on both engines.
 */
import type { Weight } from '../io/weight-file.js';
import type { Ops } from '../ops/ops.js';

export interface Linear {
  /** [in, out] row-major; in memory, or in a weight file for models too large to hold twice. */
  weight: Weight;
  inDim: number;
  outDim: number;
  bias?: Float32Array;
}

/** x [..., in] times the layer: [..., out]. */
export function linear<T>(o: Ops<T>, key: string, w: Linear, x: T): T {
  return o.linear(x, o.constant(`${key}.W`, [w.inDim, w.outDim], w.weight), {
    bias: w.bias && o.constant(`${key}.b`, [w.outDim], w.bias),
  });
}

/** Copies torch [out, in] matrices side by side into one [in, Σ out] row-major matrix. */
export function transposeConcat(
  parts: readonly Float32Array[],
  outs: readonly number[],
  inDim: number,
): Float32Array {
  const width = outs.reduce((a, b) => a + b, 0);
  const dst = new Float32Array(inDim * width);
  let col = 0;
  parts.forEach((src, p) => {
    const out = outs[p]!;
    for (let o = 0; o < out; o++) {
      const row = o * inDim;
      for (let i = 0; i < inDim; i++) dst[i * width + col + o] = src[row + i]!;
    }
    col += out;
  });
  return dst;
}

export function concatArrays(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
