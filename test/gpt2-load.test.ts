/** Loading GPT-2 from a Hugging Face directory: config validation and every way the weights can be wrong. */
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tensor } from '../src/io/safetensors.js';
import { GPT2_HOOKS, loadTfjsModel, parseModelConfig } from '../src/model/index.js';
import type { WeightProcessing } from '../src/model/index.js';
import { UserError } from '../src/pipeline/errors.js';
import { selectBackend } from '../src/pipeline/backend.js';
import { MODEL_F32, loadReference, readFixtureModel, ref, relErr, writeModelDir } from './gpt2-fixture.js';

let tmp: string;
let fixture: { tensors: Map<string, Tensor>; config: Record<string, unknown> };
let counter = 0;

beforeAll(async () => {
  await selectBackend('cpu');
  tmp = await mkdtemp(path.join(tmpdir(), 'gpt2-load-'));
  fixture = await readFixtureModel();
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A model directory from the fixture with edits to its tensors and/or config. */
async function variant(
  edit: { tensors?: (t: Map<string, Tensor>) => void; config?: (c: Record<string, unknown>) => void } = {},
): Promise<string> {
  const tensors = new Map(fixture.tensors);
  const config = structuredClone(fixture.config);
  edit.tensors?.(tensors);
  edit.config?.(config);
  return writeModelDir(path.join(tmp, `v${counter++}`), tensors, config);
}

async function loadError(dir: string, processing?: WeightProcessing): Promise<Error> {
  try {
    const m = await loadTfjsModel(dir, processing ? { processing } : {});
    m.dispose();
  } catch (e) {
    expect(e).toBeInstanceOf(UserError);
    return e as Error;
  }
  throw new Error(`loading ${dir} did not fail`);
}

describe('config.json', () => {
  const base = (): Record<string, unknown> => structuredClone(fixture.config);

  it('reads the sizes and derived head/MLP widths', () => {
    expect(parseModelConfig(base(), 'config.json')).toEqual({
      family: 'gpt2',
      nLayers: 2,
      nHeads: 4,
      nKvHeads: 4,
      dModel: 64,
      nCtx: 64,
      vocabSize: 1000,
      eps: 1e-5,
      act: 'gelu_new',
      dHead: 16,
      dMlp: 256,
      hooks: GPT2_HOOKS,
      extra: {},
    });
    expect(parseModelConfig({ ...base(), n_inner: 96 }, 'c').dMlp).toBe(96);
    expect(parseModelConfig({ ...base(), activation_function: 'gelu_pytorch_tanh' }, 'c').act).toBe(
      'gelu_new',
    );
  });

  it.each([
    [
      { model_type: 'falcon', architectures: ['FalconForCausalLM'] },
      /cfg\.json: unknown architecture.*"falcon"/,
    ],
    // A known model_type with another head: other math, refused rather than run.
    [{ architectures: ['GPT2ForSequenceClassification'] }, /unknown architecture/],
    [{ architectures: ['GPTNeoForCausalLM'] }, /unknown architecture/],
    [{ activation_function: 'swish' }, /cfg\.json: field "activation_function" "swish" is not supported/],
    [{ n_layer: 0 }, /field "n_layer" must be a positive integer, got 0/],
    [{ n_head: undefined }, /field "n_head" must be a positive integer/],
    [{ n_head: 5 }, /n_embd \(64\) is not a multiple of n_head \(5\)/],
    [{ layer_norm_epsilon: -1 }, /field "layer_norm_epsilon"/],
    [
      { scale_attn_by_inverse_layer_idx: true },
      /field "scale_attn_by_inverse_layer_idx" = true is not supported/,
    ],
  ])('rejects %j', (patch, message) => {
    expect(() => parseModelConfig({ ...base(), ...patch }, 'cfg.json')).toThrow(message);
  });

  it('missing directory, missing or invalid config.json', async () => {
    const missing = path.join(tmp, 'does-not-exist');
    expect((await loadError(missing)).message).toMatch(
      /cannot read model config .*does-not-exist\/config\.json/,
    );
    const dir = path.join(tmp, 'bad-json');
    await mkdir(dir);
    await writeFile(path.join(dir, 'config.json'), '{"model_type": "gpt2",');
    expect((await loadError(dir)).message).toMatch(/bad-json\/config\.json: invalid JSON/);
  });
});

describe('model.safetensors', () => {
  it('no weights file (pickles are never loaded)', async () => {
    const dir = path.join(tmp, 'no-weights');
    await mkdir(dir);
    await copyFile(path.join(MODEL_F32, 'config.json'), path.join(dir, 'config.json'));
    await writeFile(path.join(dir, 'pytorch_model.bin'), 'not read');
    expect((await loadError(dir)).message).toMatch(
      /no model\.safetensors .* in .*no-weights; PyTorch pickles/,
    );
  });

  it('truncated file', async () => {
    const dir = await variant();
    const file = path.join(dir, 'model.safetensors');
    const bytes = await readFile(file);
    await writeFile(file, bytes.subarray(0, bytes.length - 1000));
    expect((await loadError(dir)).message).toContain(file);
  });

  it('corrupt header', async () => {
    const dir = await variant();
    const file = path.join(dir, 'model.safetensors');
    const bytes = await readFile(file);
    bytes.fill(0x7b, 8, 40);
    await writeFile(file, bytes);
    expect((await loadError(dir)).message).toContain(file);
  });

  it('missing tensor, named with its expected shape', async () => {
    const dir = await variant({ tensors: (t) => t.delete('transformer.h.1.ln_2.bias') });
    expect((await loadError(dir)).message).toMatch(
      /v\d+\/model\.safetensors: missing tensor 'transformer\.h\.1\.ln_2\.bias' \(expected shape \[64\]\)/,
    );
  });

  it('config asking for more layers than the file has', async () => {
    const dir = await variant({ config: (c) => (c.n_layer = 3) });
    expect((await loadError(dir)).message).toMatch(/missing tensor 'transformer\.h\.2\.ln_1\.weight'/);
  });

  it('wrong shape: names the file, the tensor, actual and expected shapes', async () => {
    const dir = await variant({
      tensors: (t) => {
        const w = t.get('transformer.h.0.mlp.c_fc.weight')!;
        t.set('transformer.h.0.mlp.c_fc.weight', { ...w, shape: [256, 64] });
      },
    });
    expect((await loadError(dir)).message).toMatch(
      /model\.safetensors: tensor 'transformer\.h\.0\.mlp\.c_fc\.weight' has shape \[256, 64\], expected \[64, 256\]/,
    );
  });

  it('accepts an explicit lm_head equal to wte (a tied head saved twice)', async () => {
    const dir = await variant({
      tensors: (t) => {
        const wte = t.get('transformer.wte.weight')!;
        t.set('lm_head.weight', {
          dtype: 'F32',
          shape: wte.shape,
          data: new Float32Array(wte.data as Float32Array),
        });
      },
    });
    const reference = await loadReference();
    const model = await loadTfjsModel(dir);
    try {
      const out = await model.runWithHooks(reference.tokens, { returnLogits: true });
      expect(relErr(out.logits!.data, ref(reference, 'logits').data)).toBeLessThan(1e-4);
    } finally {
      model.dispose();
    }
  });

  it('a weight stored as integers', async () => {
    const dir = await variant({
      tensors: (t) => t.set('transformer.ln_f.bias', { dtype: 'I32', shape: [64], data: new Int32Array(64) }),
    });
    expect((await loadError(dir)).message).toMatch(
      /tensor 'transformer\.ln_f\.bias' has dtype I32; weights must be F32/,
    );
  });

  it('an lm_head that is not tied to wte', async () => {
    const dir = await variant({
      tensors: (t) => {
        const wte = t.get('transformer.wte.weight')!;
        const data = new Float32Array(wte.data as Float32Array);
        data[1234] = data[1234]! + 1;
        t.set('lm_head.weight', { dtype: 'F32', shape: wte.shape, data });
      },
    });
    expect((await loadError(dir)).message).toMatch(
      /'lm_head\.weight' differs from 'transformer\.wte\.weight' \(first at element 1234\)/,
    );
  });

  it('an lm_head of the wrong shape', async () => {
    const dir = await variant({
      tensors: (t) => t.set('lm_head.weight', { dtype: 'F32', shape: [10, 64], data: new Float32Array(640) }),
    });
    expect((await loadError(dir)).message).toMatch(
      /'lm_head\.weight' has shape \[10, 64\], expected \[1000, 64\]/,
    );
  });

  it('an unknown weight processing', async () => {
    expect((await loadError(MODEL_F32, 'fold_ln' as WeightProcessing)).message).toMatch(
      /unknown weight processing "fold_ln" \(expected one of: none, center_writing_weights\)/,
    );
  });
});
