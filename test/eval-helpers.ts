/** Shared helpers for the eval-*.test.ts files: hand-made SAE folders and token data for the tiny fixture model. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { HostTensor } from '../src/sae/fold.js';
import { writeSaeFolder } from '../src/sae/saelens-folder.js';
import type { SaeFolderConfig } from '../src/sae/saelens-folder.js';
import type { TokenBatch } from '../src/stages/text/types.js';
import { Mulberry32 } from '../src/util/random.js';

export const FIXTURE_VOCAB = 1000;
export const FIXTURE_WIDTH = 64;

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(tmpdir(), `saeflow-${prefix}-`));
}

/** `windows` rows of `seq` random token ids below the fixture's vocabulary, as one token batch. */
export function randomWindows(windows: number, seq: number, seed: number): TokenBatch {
  const rng = new Mulberry32(seed);
  const tokens = new Int32Array(windows * seq);
  for (let i = 0; i < tokens.length; i++) tokens[i] = Math.floor(rng.next() * FIXTURE_VOCAB);
  return {
    tokens,
    batchSize: windows,
    contextSize: seq,
    seqIds: Int32Array.from({ length: windows }, (_, i) => i),
  };
}

/** Rows [start, start + count) of a token batch. */
export function sliceWindows(batch: TokenBatch, start: number, count: number): TokenBatch {
  const seq = batch.contextSize;
  return {
    tokens: batch.tokens.slice(start * seq, (start + count) * seq),
    batchSize: count,
    contextSize: seq,
    seqIds: batch.seqIds.slice(start, start + count),
  };
}

/** A pre-tokenized JSONL dataset (one document per window), so ids stay inside the fixture's vocabulary. */
export function tokenJsonl(batch: TokenBatch, dir = tempDir('eval-tokens')): string {
  const lines: string[] = [];
  for (let b = 0; b < batch.batchSize; b++) {
    const ids = batch.tokens.subarray(b * batch.contextSize, (b + 1) * batch.contextSize);
    lines.push(JSON.stringify({ tokens: Array.from(ids) }));
  }
  const file = path.join(dir, 'tokens.jsonl');
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

function cfg(
  over: Partial<SaeFolderConfig> & { d_in: number; d_sae: number; hook: string },
): SaeFolderConfig {
  const { hook, ...rest } = over;
  return {
    architecture: 'standard',
    dtype: 'float32',
    device: 'cpu',
    apply_b_dec_to_input: true,
    normalize_activations: 'none',
    reshape_activations: hook.endsWith('hook_z') ? 'hook_z' : 'none',
    metadata: { hook_name: hook, ...(rest.metadata ?? {}) },
    ...rest,
  } as SaeFolderConfig;
}

const t = (shape: number[], data: Float32Array): HostTensor => ({ shape, data });

/**
 * A standard (ReLU) SAE whose reconstruction is exactly its input: d_sae = 2 d, W_enc = [I, -I],
 * W_dec = [I; -I], zero biases, so x̂ = relu(x) - relu(-x) = x.
 */
export async function writeIdentitySae(dir: string, hook: string, d = FIXTURE_WIDTH): Promise<string> {
  const S = 2 * d;
  const wEnc = new Float32Array(d * S);
  const wDec = new Float32Array(S * d);
  for (let i = 0; i < d; i++) {
    wEnc[i * S + i] = 1;
    wEnc[i * S + d + i] = -1;
    wDec[i * d + i] = 1;
    wDec[(d + i) * d + i] = -1;
  }
  await writeSaeFolder(dir, cfg({ d_in: d, d_sae: S, hook }), {
    architecture: 'standard',
    tensors: {
      W_enc: t([d, S], wEnc),
      b_enc: t([S], new Float32Array(S)),
      W_dec: t([S, d], wDec),
      b_dec: t([d], new Float32Array(d)),
    },
  });
  return dir;
}

/** The identity SAE's encoder with a zero decoder and zero b_dec: x̂ = 0, like zero ablation. */
export async function writeZeroSae(dir: string, hook: string, d = FIXTURE_WIDTH): Promise<string> {
  const S = 2 * d;
  const wEnc = new Float32Array(d * S);
  for (let i = 0; i < d; i++) {
    wEnc[i * S + i] = 1;
    wEnc[i * S + d + i] = -1;
  }
  await writeSaeFolder(dir, cfg({ d_in: d, d_sae: S, hook }), {
    architecture: 'standard',
    tensors: {
      W_enc: t([d, S], wEnc),
      b_enc: t([S], new Float32Array(S)),
      W_dec: t([S, d], new Float32Array(S * d)),
      b_dec: t([d], new Float32Array(d)),
    },
  });
  return dir;
}

function gaussian(rng: Mulberry32, n: number, scale: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(rng.next(), 1e-12);
    out[i] = scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.next());
  }
  return out;
}

/** A random transcoder from `hookIn` to `hookOut` (standard encoder); `zero` makes its output exactly 0. */
export async function writeTranscoder(
  dir: string,
  hookIn: string,
  hookOut: string,
  options: { dIn?: number; dOut?: number; dSae?: number; seed?: number; zero?: boolean; skip?: boolean } = {},
): Promise<string> {
  const dIn = options.dIn ?? FIXTURE_WIDTH;
  const dOut = options.dOut ?? FIXTURE_WIDTH;
  const S = options.dSae ?? 96;
  const rng = new Mulberry32(options.seed ?? 7);
  const tensors: Record<string, HostTensor> = {
    W_enc: t([dIn, S], gaussian(rng, dIn * S, 0.3)),
    b_enc: t([S], gaussian(rng, S, 0.1)),
    W_dec: t([S, dOut], options.zero ? new Float32Array(S * dOut) : gaussian(rng, S * dOut, 0.1)),
    b_dec: t([dOut], options.zero ? new Float32Array(dOut) : gaussian(rng, dOut, 0.05)),
  };
  if (options.skip) tensors.W_skip = t([dOut, dIn], gaussian(rng, dOut * dIn, 0.05));
  const architecture = options.skip ? 'skip_transcoder' : 'transcoder';
  await writeSaeFolder(
    dir,
    cfg({
      architecture,
      d_in: dIn,
      d_sae: S,
      d_out: dOut,
      hook: hookIn,
      apply_b_dec_to_input: false,
      metadata: { hook_name: hookIn, hook_name_out: hookOut },
    }),
    { architecture, tensors },
  );
  return dir;
}
