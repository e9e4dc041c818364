/** Shared helpers for test/sae-formats-*.test.ts: fixture paths, the numpy reference, running an SAE. */
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { repoFolderName } from '../src/hub/index.js';
import { readSafetensors, tensorToFloat32 } from '../src/io/safetensors.js';
import type { Sae } from '../src/sae/index.js';
import { gitBlobSha1, sha256Hex } from './hub-fake-server.js';

export const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'sae-formats');
export const fixture = (...parts: string[]) => path.join(FIXTURES, ...parts);

/** Each reference SAE of make_fixtures.py and where it lives, as `--sae` would name it. */
export const CASES = {
  'saelens-v6': fixture('saelens-v6'),
  'saelens-legacy': fixture('saelens-legacy', 'blocks.1.hook_resid_pre'),
  'saelens-legacy-topk': fixture('saelens-legacy-topk'),
  'gemma-res': fixture('gemma-scope-2b-pt-res', 'layer_3', 'width_16k', 'average_l0_5'),
  'gemma-mlp': fixture('gemma-scope-2b-pt-mlp', 'layer_0', 'width_16k', 'average_l0_7', 'params.npz'),
  'gemma-att': fixture('gemma-scope-2b-pt-att', 'layer_1', 'width_16k', 'average_l0_4'),
  'gemma-transcoder': fixture('gemma-scope-2b-pt-transcoders', 'layer_2', 'width_16k', 'average_l0_9'),
  sparsify: fixture('sparsify', 'layers.6'),
  'sparsify-transcoder': fixture('sparsify-transcoder', 'h.1.mlp'),
} as const;
export type CaseName = keyof typeof CASES;

export interface ReferenceCase {
  x: { shape: number[]; data: Float32Array };
  features: Float32Array;
  reconstruction: Float32Array;
}

let reference: Map<string, ReferenceCase> | undefined;

export async function loadReference(name: string): Promise<ReferenceCase> {
  if (!reference) {
    const { tensors } = await readSafetensors(fixture('reference.safetensors'));
    reference = new Map();
    for (const n of Object.keys(CASES)) {
      const x = tensors.get(`${n}.x`)!;
      reference.set(n, {
        x: { shape: x.shape, data: tensorToFloat32(x) },
        features: tensorToFloat32(tensors.get(`${n}.features`)!),
        reconstruction: tensorToFloat32(tensors.get(`${n}.reconstruction`)!),
      });
    }
  }
  return reference.get(name)!;
}

/** Features and reconstruction of `x` [rows, d_in] through `sae`, as host arrays. */
export function run(
  sae: Sae,
  x: { shape: number[]; data: Float32Array },
): { f: Float32Array; recon: Float32Array } {
  const input = tf.tensor2d(x.data, x.shape as [number, number]);
  const f = sae.encode(input);
  const recon = sae.forward(input);
  const out = { f: f.dataSync() as Float32Array, recon: recon.dataSync() as Float32Array };
  tf.dispose([input, f, recon]);
  return { f: Float32Array.from(out.f), recon: Float32Array.from(out.recon) };
}

export { relErr } from './gpt2-fixture.js';

/** Writes a repository snapshot into a hub cache exactly as huggingface_hub lays it out (blobs + links). */
export async function populateCache(
  cache: string,
  repoId: string,
  commit: string,
  files: Record<string, string>,
): Promise<string> {
  const repoDir = path.join(cache, repoFolderName(repoId, 'model'));
  await mkdir(path.join(repoDir, 'blobs'), { recursive: true });
  for (const [repoPath, source] of Object.entries(files)) {
    const content = await readFile(source);
    const lfs = repoPath.endsWith('.safetensors') || repoPath.endsWith('.npz');
    const blob = path.join(repoDir, 'blobs', lfs ? sha256Hex(content) : gitBlobSha1(content));
    await writeFile(blob, content);
    const pointer = path.join(repoDir, 'snapshots', commit, ...repoPath.split('/'));
    await mkdir(path.dirname(pointer), { recursive: true });
    await symlink(path.relative(path.dirname(pointer), blob), pointer);
  }
  await mkdir(path.join(repoDir, 'refs'), { recursive: true });
  await writeFile(path.join(repoDir, 'refs', 'main'), commit);
  return path.join(repoDir, 'snapshots', commit);
}
