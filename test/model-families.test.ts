/**
 * Every model family beyond GPT-2 against Hugging Face transformers (test/fixtures/families/, written by
 * tools/model-fixtures/make_family_fixtures.py): each TransformerLens hook the family has and the logits,
 * within 1e-4 of the scale of the reference, on both engines; plus the same weights stored sharded in
 * bfloat16 under transformers 5's config spelling.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { createRunner } from '../src/engine/engines.js';
import { readSafetensors, tensorToFloat32 } from '../src/io/safetensors.js';
import { listHookNames, loadModel } from '../src/model/index.js';
import type { Activation, TokenBatch } from '../src/model/index.js';
import { selectBackend } from '../src/pipeline/backend.js';
import { relErr } from './gpt2-fixture.js';

const FAMILIES_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'families');
const FAMILIES = ['llama', 'mistral', 'qwen2', 'gemma', 'gemma2'] as const;
const TOLERANCE = 1e-4;

interface FamilyReference {
  tokens: TokenBatch;
  values: Map<string, Activation>;
}

async function reference(family: string): Promise<FamilyReference> {
  const { tensors } = await readSafetensors(path.join(FAMILIES_DIR, family, 'reference.safetensors'));
  const tok = tensors.get('tokens')!;
  const values = new Map<string, Activation>();
  for (const [name, t] of tensors)
    if (name !== 'tokens') values.set(name, { shape: t.shape, data: tensorToFloat32(t, name) });
  return {
    tokens: { data: Int32Array.from(tok.data as Int32Array), shape: [tok.shape[0]!, tok.shape[1]!] },
    values,
  };
}

beforeAll(async () => {
  await selectBackend('wasm');
});

async function checkFolder(family: string, folder: string): Promise<void> {
  const ref = await reference(family);
  const model = await loadModel(path.join(FAMILIES_DIR, family, folder));
  expect(model.config.family).toBe(family);
  const hooks = listHookNames(model.config);
  const compared = hooks.filter((h) => ref.values.has(h));
  // Every hook the fixture recorded at one of our names is compared; the reference lacks none of ours.
  expect(hooks.filter((h) => !ref.values.has(h))).toEqual([]);
  for (const engine of ['onnx', 'tfjs'] as const) {
    const runner = await createRunner(model, engine, { threads: 1 });
    try {
      const out = await runner.runWithHooks(ref.tokens, { hooks: compared, returnLogits: true });
      const errors: Record<string, number> = {};
      for (const name of [...compared, 'logits']) {
        const got = name === 'logits' ? out.logits! : out.activations.get(name)!;
        const want = ref.values.get(name)!;
        expect(got.shape, `${engine} ${name}`).toEqual(want.shape);
        errors[name] = relErr(got.data, want.data);
      }
      const worst = Object.entries(errors).filter(([, e]) => !(e <= TOLERANCE));
      expect(worst, `${family}/${folder} on ${engine}`).toEqual([]);
    } finally {
      await runner.dispose();
    }
  }
}

describe('model families match transformers on every hook, both engines', () => {
  for (const family of FAMILIES) {
    it(
      family,
      async () => {
        await checkFolder(family, 'model');
      },
      120_000,
    );
  }

  it('llama from bfloat16 shards with transformers 5 rope_parameters', async () => {
    const index = JSON.parse(
      await readFile(
        path.join(FAMILIES_DIR, 'llama', 'model-sharded', 'model.safetensors.index.json'),
        'utf8',
      ),
    );
    expect(new Set(Object.values(index.weight_map)).size).toBe(2);
    await checkFolder('llama', 'model-sharded');
  }, 120_000);
});
