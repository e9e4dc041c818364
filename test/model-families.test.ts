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
import { listHookNames, loadModel, parseModelConfig } from '../src/model/index.js';
import type { Activation, TokenBatch } from '../src/model/index.js';
import { selectBackend } from '../src/pipeline/backend.js';
import { relErr } from './gpt2-fixture.js';
import { randomSae } from './replacement-helpers.js';

const FAMILIES_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'families');
const FAMILIES = ['llama', 'mistral', 'qwen2', 'gemma', 'gemma2', 'gpt_neox'] as const;
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

describe('interventions and SAE replacements run on every family, the same on both engines', () => {
  for (const family of [...FAMILIES]) {
    it(
      family,
      async () => {
        const ref = await reference(family);
        const model = await loadModel(path.join(FAMILIES_DIR, family, 'model'));
        const d = model.config.dModel;
        const sae = randomSae({
          architecture: 'jumprelu',
          hook: 'blocks.0.hook_resid_post',
          dIn: d,
          dSae: 48,
          seed: 3,
        });
        const transcoder = randomSae({
          architecture: 'transcoder',
          hook: 'blocks.1.ln2.hook_normalized',
          hookOut: 'blocks.1.hook_mlp_out',
          dIn: d,
          dOut: d,
          dSae: 40,
          seed: 4,
        });
        const losses: Record<string, Float32Array[]> = {};
        for (const engine of ['onnx', 'tfjs'] as const) {
          const runner = await createRunner(model, engine, { threads: 1 });
          try {
            const { clean, variants } = await runner.runVariants(ref.tokens, {
              variants: [
                { 'blocks.0.hook_attn_out': { kind: 'zero' } },
                { 'blocks.0.hook_resid_post': { kind: 'sae', sae } },
                {
                  'blocks.1.hook_mlp_out': {
                    kind: 'sae',
                    sae: transcoder,
                    input: 'blocks.1.ln2.hook_normalized',
                  },
                },
              ],
              kl: true,
            });
            expect(clean.lossPerToken).toBeDefined();
            losses[engine] = [clean.lossPerToken!.data, ...variants.map((v) => v.lossPerToken.data)];
            for (const v of variants) expect(Math.max(...v.kl!.data)).toBeGreaterThan(1e-4);
          } finally {
            await runner.dispose();
          }
        }
        for (let i = 0; i < 4; i++) expect(relErr(losses.tfjs![i]!, losses.onnx![i]!)).toBeLessThan(1e-4);
      },
      120_000,
    );
  }
});

describe('config.json errors name the file and the field', () => {
  it('an unsupported rope type, a bad sliding window, a head count that does not divide', async () => {
    const base = JSON.parse(await readFile(path.join(FAMILIES_DIR, 'llama', 'model', 'config.json'), 'utf8'));
    const file = '/m/config.json';
    expect(() => parseModelConfig({ ...base, rope_scaling: { rope_type: 'yarn', factor: 4 } }, file)).toThrow(
      /\/m\/config.json rope_scaling: rope_type "yarn" is not supported/,
    );
    expect(() => parseModelConfig({ ...base, num_key_value_heads: 3 }, file)).toThrow(
      /config.json: num_attention_heads \(4\) is not a multiple of num_key_value_heads \(3\)/,
    );
    const mistral = JSON.parse(
      await readFile(path.join(FAMILIES_DIR, 'mistral', 'model', 'config.json'), 'utf8'),
    );
    expect(() => parseModelConfig({ ...mistral, sliding_window: -2 }, file)).toThrow(
      /field "sliding_window"/,
    );
    const qwen = JSON.parse(await readFile(path.join(FAMILIES_DIR, 'qwen2', 'model', 'config.json'), 'utf8'));
    expect(() => parseModelConfig({ ...qwen, layer_types: ['full_attention'] }, file)).toThrow(/layer_types/);
    expect(() =>
      parseModelConfig({ ...base, model_type: 'falcon', architectures: ['FalconForCausalLM'] }, file),
    ).toThrow(/unknown architecture .*supported: gpt2.*llama.*gemma2.*gpt_neox/);
  });

  it('both rope spellings give the same frequencies', async () => {
    const legacy = parseModelConfig(
      JSON.parse(await readFile(path.join(FAMILIES_DIR, 'llama', 'model', 'config.json'), 'utf8')),
      'a',
    );
    const v5 = parseModelConfig(
      JSON.parse(await readFile(path.join(FAMILIES_DIR, 'llama', 'model-sharded', 'config.json'), 'utf8')),
      'b',
    );
    expect(v5.extra).toEqual(legacy.extra);
    expect(legacy.extra.rotary_base).toBe(500000);
  });
});

describe('weight processing', () => {
  it('gpt_neox center_writing_weights: every residual activation has zero mean, the logits do not change', async () => {
    const ref = await reference('gpt_neox');
    const model = await loadModel(path.join(FAMILIES_DIR, 'gpt_neox', 'model'), {
      processing: 'center_writing_weights',
    });
    const runner = await createRunner(model, 'onnx', { threads: 1 });
    try {
      const out = await runner.runWithHooks(ref.tokens, {
        hooks: 'blocks.1.hook_resid_post',
        returnLogits: true,
      });
      expect(relErr(out.logits!.data, ref.values.get('logits')!.data)).toBeLessThan(1e-4);
      const resid = out.activations.get('blocks.1.hook_resid_post')!;
      const d = model.config.dModel;
      let worst = 0;
      for (let r = 0; r < resid.data.length / d; r++) {
        let s = 0;
        for (let j = 0; j < d; j++) s += resid.data[r * d + j]!;
        worst = Math.max(worst, Math.abs(s / d));
      }
      expect(worst).toBeLessThan(1e-5);
      // Centring changed the activations themselves (the test would pass vacuously otherwise).
      expect(relErr(resid.data, ref.values.get('blocks.1.hook_resid_post')!.data)).toBeGreaterThan(1e-3);
    } finally {
      await runner.dispose();
    }
  });

  it('the RMSNorm families offer none but none (centring does not preserve their outputs)', async () => {
    await expect(
      loadModel(path.join(FAMILIES_DIR, 'gemma2', 'model'), { processing: 'center_writing_weights' }),
    ).rejects.toThrow(/not offered for gemma2 models \(offered: none\)/);
  });
});
