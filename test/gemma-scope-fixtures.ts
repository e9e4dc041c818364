/**
 * Small random Gemma Scope SAEs for the tiny Gemma 2 fixture (test/fixtures/families/gemma2/model): numpy
 * `.npz` archives (`np.savez` layout: a stored zip of `.npy` members) or `.safetensors` files holding
 * `W_enc` [d_in, d_sae], `W_dec` [d_sae, d_in], `b_enc`, `b_dec` and `threshold`, in folders laid out like
 * google/gemma-scope-* (`layer_N/width_W/average_l0_K/params.npz`).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeSafetensors } from '../src/io/safetensors.js';
import { crc32 } from '../src/sae-formats/zip.js';
import { Mulberry32 } from '../src/util/random.js';

export const GEMMA2_MODEL = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  'fixtures',
  'families',
  'gemma2',
  'model',
);
export const GEMMA2_WIDTH = 64;
export const GEMMA2_VOCAB = 384;
export const GEMMA2_BOS = 2;

/** A version-1 `.npy` file of a little-endian float32 array, header padded to 64 bytes as numpy writes it. */
export function npyF32(shape: readonly number[], data: Float32Array): Uint8Array {
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(', ');
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${dims}), }`;
  const total = Math.ceil((10 + header.length + 1) / 64) * 64;
  header = header.padEnd(total - 11, ' ') + '\n';
  const out = new Uint8Array(total + data.byteLength);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(Buffer.from(header, 'latin1'), 10);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), total);
  return out;
}

/** A stored (uncompressed) zip of the members, with its central directory: what `np.savez` writes. */
export function storedZip(members: ReadonlyArray<{ name: string; data: Uint8Array }>): Uint8Array {
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const m of members) {
    const name = Buffer.from(m.name);
    const crc = crc32(m.data);
    const local = new Uint8Array(30 + name.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, 20, true);
    lv.setUint32(14, crc, true);
    lv.setUint32(18, m.data.length, true);
    lv.setUint32(22, m.data.length, true);
    lv.setUint16(26, name.length, true);
    local.set(name, 30);
    const entry = new Uint8Array(46 + name.length);
    const cv = new DataView(entry.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, 20, true);
    cv.setUint16(6, 20, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, m.data.length, true);
    cv.setUint32(24, m.data.length, true);
    cv.setUint16(28, name.length, true);
    cv.setUint32(42, offset, true);
    entry.set(name, 46);
    parts.push(local, m.data);
    central.push(entry);
    offset += local.length + m.data.length;
  }
  const cdSize = central.reduce((a, c) => a + c.length, 0);
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, members.length, true);
  ev.setUint16(10, members.length, true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, offset, true);
  return Buffer.concat([...parts, ...central, end]);
}

export interface GemmaScopeWeights {
  W_enc: Float32Array;
  W_dec: Float32Array;
  b_enc: Float32Array;
  b_dec: Float32Array;
  threshold: Float32Array;
  dIn: number;
  dSae: number;
}

/**
 * A JumpReLU SAE over d_in with d_sae = 2 d_in: the encoder's columns are a random orthonormal basis q_j and
 * their negatives, the decoder's rows the same (unit norm, times `decoderScale`), biases zero, every threshold
 * `threshold`. Feature j (or d_in + j) fires when the coordinate c_j = <x, q_j> is above the threshold (or
 * below minus it), so the reconstruction is x with its coordinates under the threshold in magnitude dropped:
 * a higher threshold gives a lower L0 and a worse reconstruction, and a decoder scaled away from 1 a worse
 * one at the same L0.
 */
export function randomGemmaScopeSae(options: {
  dIn?: number;
  threshold: number;
  seed: number;
  decoderScale?: number;
}): GemmaScopeWeights {
  const dIn = options.dIn ?? GEMMA2_WIDTH;
  const dSae = 2 * dIn;
  const rng = new Mulberry32(options.seed);
  const normal = () => {
    const u = Math.max(rng.next(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.next());
  };
  // Gram-Schmidt on random normal vectors: an orthonormal basis, one vector per row of q.
  const q: Float64Array[] = [];
  while (q.length < dIn) {
    const v = Float64Array.from({ length: dIn }, normal);
    for (const u of q) {
      let dot = 0;
      for (let d = 0; d < dIn; d++) dot += v[d]! * u[d]!;
      for (let d = 0; d < dIn; d++) v[d]! -= dot * u[d]!;
    }
    const norm = Math.hypot(...v);
    if (norm < 1e-6) continue;
    q.push(v.map((x) => x / norm));
  }
  const scale = options.decoderScale ?? 1;
  const W_enc = new Float32Array(dIn * dSae);
  const W_dec = new Float32Array(dSae * dIn);
  for (let j = 0; j < dIn; j++) {
    for (let d = 0; d < dIn; d++) {
      W_enc[d * dSae + j] = q[j]![d]!;
      W_enc[d * dSae + dIn + j] = -q[j]![d]!;
      W_dec[j * dIn + d] = q[j]![d]! * scale;
      W_dec[(dIn + j) * dIn + d] = -q[j]![d]! * scale;
    }
  }
  return {
    W_enc,
    W_dec,
    b_enc: new Float32Array(dSae),
    b_dec: new Float32Array(dIn),
    threshold: new Float32Array(dSae).fill(options.threshold),
    dIn,
    dSae,
  };
}

/** Norms of the decoder's rows, as float64 from the float32 weights. */
export function decoderRowNorms(w: GemmaScopeWeights): Float64Array {
  const out = new Float64Array(w.dSae);
  for (let f = 0; f < w.dSae; f++) {
    let sq = 0;
    for (let d = 0; d < w.dIn; d++) sq += w.W_dec[f * w.dIn + d]! ** 2;
    out[f] = Math.sqrt(sq);
  }
  return out;
}

/** Writes the SAE as `<dir>/params.npz` (or `params.safetensors`); returns the file. */
export async function writeGemmaScopeSae(
  dir: string,
  w: GemmaScopeWeights,
  format: 'npz' | 'safetensors' = 'npz',
): Promise<string> {
  await mkdir(dir, { recursive: true });
  const shapes: Record<string, number[]> = {
    W_enc: [w.dIn, w.dSae],
    W_dec: [w.dSae, w.dIn],
    b_enc: [w.dSae],
    b_dec: [w.dIn],
    threshold: [w.dSae],
  };
  const names = ['W_enc', 'W_dec', 'b_enc', 'b_dec', 'threshold'] as const;
  if (format === 'npz') {
    const file = path.join(dir, 'params.npz');
    await writeFile(
      file,
      storedZip(names.map((n) => ({ name: `${n}.npy`, data: npyF32(shapes[n]!, w[n]) }))),
    );
    return file;
  }
  const file = path.join(dir, 'params.safetensors');
  await writeSafetensors(
    file,
    Object.fromEntries(names.map((n) => [n, { dtype: 'F32' as const, shape: shapes[n]!, data: w[n] }])),
  );
  return file;
}
