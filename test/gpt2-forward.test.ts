/**
 * The forward against references from Hugging Face transformers (test/fixtures/gpt2-tiny/make_fixture.py):
 * every hook, logits and per-token loss, for every weight encoding and key layout the loader accepts.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bfloat16ToFloat32, float32ToBfloat16 } from '../src/io/float16.js';
import { writeSafetensors } from '../src/io/safetensors.js';
import type { Tensor } from '../src/io/safetensors.js';
import { listHookNames, loadTfjsModel, readModelConfig } from '../src/model/index.js';
import type { TfjsRunner, RunResult } from '../src/model/index.js';
import { selectBackend } from '../src/pipeline/backend.js';
import {
  MODEL_F16,
  MODEL_F32,
  loadReference,
  readFixtureModel,
  ref,
  relErr,
  sliceBatch,
  slicePositions,
  tokenSlice,
  writeModelDir,
} from './gpt2-fixture.js';
import type { Reference } from './gpt2-fixture.js';

const TOL = 1e-4;
let tmp: string;
let reference: Reference;
let hookNames: string[];

beforeAll(async () => {
  await selectBackend('cpu');
  tmp = await mkdtemp(path.join(tmpdir(), 'gpt2-forward-'));
  reference = await loadReference();
  hookNames = listHookNames(await readModelConfig(MODEL_F32));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function runAll(model: TfjsRunner, tokens = reference.tokens): Promise<RunResult> {
  return model.runWithHooks(tokens, { hooks: '*', returnLogits: true, returnLoss: true });
}

/** Every hook, the logits and the loss agree with the reference (optionally a batch/position slice of it). */
function expectMatchesReference(
  out: RunResult,
  pick: (name: string) => { shape: number[]; data: Float32Array } = (n) => ref(reference, n),
): void {
  expect([...out.activations.keys()]).toEqual(hookNames);
  expect(hookNames).toHaveLength(2 + 2 * 13 + 1);
  for (const name of hookNames) {
    const got = out.activations.get(name)!;
    const want = pick(name);
    expect(got.shape, name).toEqual(want.shape);
    expect(relErr(got.data, want.data), name).toBeLessThan(TOL);
  }
  expect(out.logits!.shape).toEqual(pick('logits').shape);
  expect(relErr(out.logits!.data, pick('logits').data)).toBeLessThan(TOL);
  expect(out.lossPerToken!.shape).toEqual(pick('loss_per_token').shape);
  expect(relErr(out.lossPerToken!.data, pick('loss_per_token').data)).toBeLessThan(TOL);
}

describe('GPT-2 forward vs Hugging Face', () => {
  it('float32 weights with the transformer. prefix: every hook, logits and loss', async () => {
    const model = await loadTfjsModel(MODEL_F32);
    try {
      expect(model.config).toMatchObject({
        family: 'gpt2',
        nLayers: 2,
        nHeads: 4,
        dModel: 64,
        dHead: 16,
        dMlp: 256,
        vocabSize: 1000,
      });
      const out = await runAll(model);
      expectMatchesReference(out);
      // The references are not trivially small: a wrong forward could not pass by accident.
      expect(Math.max(...ref(reference, 'loss_per_token').data)).toBeGreaterThan(1);
    } finally {
      model.dispose();
    }
  });

  it('float16 weights without the prefix, with the attn.bias mask buffers', async () => {
    const model = await loadTfjsModel(MODEL_F16);
    try {
      expectMatchesReference(await runAll(model));
    } finally {
      model.dispose();
    }
  });

  it('bfloat16 weights', async () => {
    const { tensors, config } = await readFixtureModel();
    const bf16 = new Map<string, Tensor>();
    for (const [name, t] of tensors) {
      const f32 = t.data as Float32Array;
      const bits = float32ToBfloat16(f32);
      // The fixture's weights are bfloat16 values, so this encoding is exact and the references still apply.
      expect(relErr(bfloat16ToFloat32(bits), f32)).toBe(0);
      bf16.set(name, { dtype: 'BF16', shape: t.shape, data: bits });
    }
    const model = await loadTfjsModel(await writeModelDir(path.join(tmp, 'bf16'), bf16, config));
    try {
      expectMatchesReference(await runAll(model));
    } finally {
      model.dispose();
    }
  });

  it('sharded weights listed in model.safetensors.index.json', async () => {
    const { tensors, config } = await readFixtureModel();
    const dir = path.join(tmp, 'sharded');
    const names = [...tensors.keys()];
    const shards = [names.slice(0, 10), names.slice(10)];
    const weightMap: Record<string, string> = {};
    await writeModelDir(dir, {}, config);
    await rm(path.join(dir, 'model.safetensors'));
    for (const [i, shard] of shards.entries()) {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      await writeSafetensors(
        path.join(dir, file),
        Object.fromEntries(shard.map((n) => [n, tensors.get(n)!])),
      );
      for (const n of shard) weightMap[n] = file;
    }
    await writeFile(
      path.join(dir, 'model.safetensors.index.json'),
      JSON.stringify({ weight_map: weightMap }),
    );
    const model = await loadTfjsModel(dir);
    try {
      expectMatchesReference(await runAll(model));
    } finally {
      model.dispose();
    }
  });

  it('each sequence alone gives its row of the batch result (no mixing across the batch)', async () => {
    const model = await loadTfjsModel(MODEL_F32);
    try {
      for (const b of [0, 2]) {
        const out = await runAll(model, tokenSlice(reference.tokens, b, 1));
        expectMatchesReference(out, (n) => sliceBatch(ref(reference, n), b, 1));
      }
    } finally {
      model.dispose();
    }
  });

  it('a prefix gives the first positions of the full result (causal attention)', async () => {
    const model = await loadTfjsModel(MODEL_F32);
    try {
      const len = 7;
      const out = await runAll(model, tokenSlice(reference.tokens, 0, 3, len));
      expectMatchesReference(out, (n) => {
        const full = ref(reference, n);
        return n === 'loss_per_token' ? slicePositions(full, len - 1) : slicePositions(full, len);
      });
    } finally {
      model.dispose();
    }
  });

  it('logits and loss computed in small chunks (rounded up to one sequence each) are the same', async () => {
    const model = await loadTfjsModel(MODEL_F32, { logitChunkRows: 5 });
    try {
      expectMatchesReference(await runAll(model));
    } finally {
      model.dispose();
    }
  });

  it('lossPerToken equals the reference next-token cross-entropy', async () => {
    const model = await loadTfjsModel(MODEL_F32);
    try {
      const loss = await model.lossPerToken(reference.tokens);
      expect(loss.shape).toEqual([3, 15]);
      expect(relErr(loss.data, ref(reference, 'loss_per_token').data)).toBeLessThan(TOL);
    } finally {
      model.dispose();
    }
  });

  it('the wasm backend gives the same numbers', async () => {
    await selectBackend('wasm');
    try {
      const model = await loadTfjsModel(MODEL_F32);
      try {
        expect(tf.getBackend()).toBe('wasm');
        expectMatchesReference(await runAll(model));
      } finally {
        model.dispose();
      }
    } finally {
      await selectBackend('cpu');
    }
  });
});
