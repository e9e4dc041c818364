/** Shared helpers for the gpt2-*.test.ts files: fixture paths, reference activations, error measures. */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readSafetensors, tensorToFloat32, writeSafetensors } from '../src/io/safetensors.js';
import type { Tensor } from '../src/io/safetensors.js';
import type { Activation, TokenBatch } from '../src/model/index.js';

export const FIXTURE_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'gpt2-tiny');
/** float32, keys with the `transformer.` prefix, as `save_pretrained` writes them. */
export const MODEL_F32 = path.join(FIXTURE_DIR, 'model');
/** The same numbers in float16, keys without the prefix, with the `h.N.attn.bias` mask buffers. */
export const MODEL_F16 = path.join(FIXTURE_DIR, 'model-f16');

export interface Reference {
  tokens: TokenBatch;
  /** Every hook, `logits`, `loss_per_token`. */
  values: Map<string, Activation>;
}

let cached: Reference | undefined;

export async function loadReference(): Promise<Reference> {
  if (cached) return cached;
  const { tensors } = await readSafetensors(path.join(FIXTURE_DIR, 'reference.safetensors'));
  const tok = tensors.get('tokens')!;
  const values = new Map<string, Activation>();
  for (const [name, t] of tensors) {
    if (name !== 'tokens') values.set(name, { shape: t.shape, data: tensorToFloat32(t, name) });
  }
  cached = {
    tokens: { data: tok.data as Int32Array, shape: [tok.shape[0]!, tok.shape[1]!] },
    values,
  };
  return cached;
}

export function ref(r: Reference, name: string): Activation {
  const v = r.values.get(name);
  if (!v) throw new Error(`reference has no ${name}`);
  return v;
}

/** max |a - b| / max |b|: the error relative to the activation's scale. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return scale === 0 ? diff : diff / scale;
}

/** Rows [start, start + count) of the leading axis. */
export function sliceBatch(a: Activation, start: number, count: number): Activation {
  const per = a.shape.slice(1).reduce((x, y) => x * y, 1);
  return { shape: [count, ...a.shape.slice(1)], data: a.data.subarray(start * per, (start + count) * per) };
}

/** Positions [0, len) of a [batch, pos, ...] activation. */
export function slicePositions(a: Activation, len: number): Activation {
  const [batch, seq] = a.shape as [number, number];
  const per = a.shape.slice(2).reduce((x, y) => x * y, 1);
  const out = new Float32Array(batch * len * per);
  for (let b = 0; b < batch; b++)
    out.set(a.data.subarray(b * seq * per, (b * seq + len) * per), b * len * per);
  return { shape: [batch, len, ...a.shape.slice(2)], data: out };
}

export function tokenSlice(t: TokenBatch, start: number, count: number, len = t.shape[1]): TokenBatch {
  const seq = t.shape[1];
  const data = new Int32Array(count * len);
  for (let b = 0; b < count; b++)
    data.set(t.data.subarray((start + b) * seq, (start + b) * seq + len), b * len);
  return { data, shape: [count, len] };
}

/** The float32 fixture's tensors (keys with the `transformer.` prefix) and parsed config.json. */
export async function readFixtureModel(): Promise<{
  tensors: Map<string, Tensor>;
  config: Record<string, unknown>;
}> {
  const { tensors } = await readSafetensors(path.join(MODEL_F32, 'model.safetensors'));
  const config = JSON.parse(await readFile(path.join(MODEL_F32, 'config.json'), 'utf8')) as Record<
    string,
    unknown
  >;
  return { tensors, config };
}

/** Writes a model directory (config.json + model.safetensors) for a variant made in a test. */
export async function writeModelDir(
  dir: string,
  tensors: Map<string, Tensor> | Record<string, Tensor>,
  config: Record<string, unknown>,
): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'config.json'), JSON.stringify(config));
  await writeSafetensors(
    path.join(dir, 'model.safetensors'),
    tensors instanceof Map ? Object.fromEntries(tensors) : tensors,
  );
  return dir;
}
