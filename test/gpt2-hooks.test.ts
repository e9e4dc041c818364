/** Hook names and patterns, early stopping, interventions and tensor hygiene of the GPT-2 forward. */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  TfjsRunner,
  describeHookNames,
  listHookNames,
  loadTfjsModel,
  loadGpt2Weights,
  parseHookName,
  readModelConfig,
  resolveHookPatterns,
} from '../src/model/index.js';
import { Model, gpt2Family } from '../src/model/index.js';
import type { ModelConfig } from '../src/model/index.js';
import { UserError } from '../src/pipeline/errors.js';
import { selectBackend } from '../src/pipeline/backend.js';
import { MODEL_F32, loadReference, ref, relErr } from './gpt2-fixture.js';
import type { Reference } from './gpt2-fixture.js';

let model: TfjsRunner;
let config: ModelConfig;
let reference: Reference;

beforeAll(async () => {
  await selectBackend('cpu');
  model = await loadTfjsModel(MODEL_F32);
  config = model.config;
  reference = await loadReference();
});
afterAll(() => model.dispose());

function expectUserError(fn: () => unknown, pattern: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(UserError);
  expect((caught as Error).message).toMatch(pattern);
}

describe('hook names', () => {
  it('lists every TransformerLens hook in execution order', () => {
    const names = listHookNames(config);
    expect(names).toHaveLength(2 + 13 * 2 + 1);
    expect(names.slice(0, 4)).toEqual([
      'hook_embed',
      'hook_pos_embed',
      'blocks.0.hook_resid_pre',
      'blocks.0.ln1.hook_normalized',
    ]);
    expect(names.slice(-3)).toEqual([
      'blocks.1.hook_mlp_out',
      'blocks.1.hook_resid_post',
      'ln_final.hook_normalized',
    ]);
    const orders = names.map((n) => parseHookName(config, n).order);
    expect(orders).toEqual(names.map((_, i) => i));
  });

  it('expands glob patterns, dedupes, and sorts into execution order', () => {
    expect(resolveHookPatterns(config, 'blocks.*.hook_resid_post')).toEqual([
      'blocks.0.hook_resid_post',
      'blocks.1.hook_resid_post',
    ]);
    expect(
      resolveHookPatterns(config, [
        'ln_final.hook_normalized',
        'blocks.1.mlp.*',
        'hook_embed',
        'blocks.1.mlp.hook_pre',
      ]),
    ).toEqual(['hook_embed', 'blocks.1.mlp.hook_pre', 'blocks.1.mlp.hook_post', 'ln_final.hook_normalized']);
    expect(resolveHookPatterns(config, '*hook_z')).toEqual(['blocks.0.attn.hook_z', 'blocks.1.attn.hook_z']);
    expect(resolveHookPatterns(config, 'blocks.?.hook_resid_pre')).toHaveLength(2);
  });

  it('rejects unknown hooks, layers out of range and empty patterns, listing the valid names', () => {
    expect(describeHookNames(config)).toContain('with L in 0..1');
    expectUserError(
      () => resolveHookPatterns(config, 'blocks.0.hook_resid'),
      /unknown hook "blocks\.0\.hook_resid".*blocks\.L\.\{hook_resid_pre, ln1\.hook_normalized.*L in 0\.\.1/,
    );
    expectUserError(
      () => resolveHookPatterns(config, 'blocks.2.hook_resid_pre'),
      /layer 2 is out of range.*0\.\.1/,
    );
    expectUserError(() => resolveHookPatterns(config, 'blocks.01.hook_resid_pre'), /unknown hook/);
    expectUserError(() => resolveHookPatterns(config, 'resid_pre'), /unknown hook "resid_pre"/);
    expectUserError(
      () => resolveHookPatterns(config, 'blocks.*.hook_nothing'),
      /pattern "blocks\.\*\.hook_nothing" matches no hook/,
    );
  });

  it('runWithHooks rejects unknown hooks and intervention names as UserError', async () => {
    await expect(
      model.runWithHooks(reference.tokens, { hooks: ['blocks.5.hook_resid_pre'] }),
    ).rejects.toThrow(UserError);
    await expect(
      model.runWithHooks(reference.tokens, { interventions: { 'blocks.0.hook_nope': (x) => x } }),
    ).rejects.toThrow(/unknown hook "blocks\.0\.hook_nope"/);
  });

  it('rejects bad token batches', async () => {
    const data = new Int32Array(8).fill(1);
    await expect(model.runWithHooks({ data, shape: [2, 3] }, { hooks: 'hook_embed' })).rejects.toThrow(
      /8 ids but shape \[2, 3\]/,
    );
    data[5] = 1000;
    await expect(model.runWithHooks({ data, shape: [2, 4] }, { hooks: 'hook_embed' })).rejects.toThrow(
      /token id 1000 at \[1, 1\] is outside the vocabulary 0\.\.999/,
    );
    await expect(
      model.runWithHooks({ data: new Int32Array(65), shape: [1, 65] }, { hooks: 'hook_embed' }),
    ).rejects.toThrow(/exceeds the model's n_positions 64/);
  });
});

describe('early stopping', () => {
  async function kernelsFor(options: Parameters<TfjsRunner['runWithHooks']>[1]): Promise<string[]> {
    const info = await tf.profile(async () => {
      await model.runWithHooks(reference.tokens, options);
    });
    // Reshape/Identity come from handing activations out, not from computing them.
    return info.kernels.map((k) => k.name).filter((k) => k !== 'Reshape' && k !== 'Identity');
  }

  it('runs only as far as the deepest requested hook', async () => {
    const embed = await kernelsFor({ hooks: 'hook_embed' });
    const ln1 = await kernelsFor({ hooks: 'blocks.0.ln1.hook_normalized' });
    const layer0 = await kernelsFor({ hooks: ['hook_embed', 'blocks.0.hook_resid_post'] });
    const layer1 = await kernelsFor({ hooks: 'blocks.1.hook_resid_post' });
    const logits = await kernelsFor({ hooks: 'hook_embed', returnLogits: true });
    const full = await kernelsFor({ hooks: 'hook_embed', stopAtDeepestHook: false });
    const finalOnly = await kernelsFor({ hooks: 'ln_final.hook_normalized' });
    expect(embed.length).toBeLessThan(ln1.length);
    expect(ln1.length).toBeLessThan(layer0.length);
    expect(layer0.length).toBeLessThan(layer1.length);
    expect(layer1.length).toBeLessThan(logits.length);
    expect(full).toEqual(finalOnly);
    // Nothing of the attention or the MLPs runs before layer 0's LayerNorm output is taken.
    expect(ln1.filter((k) => /MatMul/.test(k))).toEqual([]);
    const matmuls = (ks: string[]): number => ks.filter((k) => /MatMul/.test(k)).length;
    expect(matmuls(layer0)).toBeGreaterThan(0);
    expect(matmuls(layer1)).toBe(2 * matmuls(layer0));
  });

  it('runs nothing when nothing is asked for', async () => {
    expect(await kernelsFor({})).toEqual([]);
    expect((await model.runWithHooks(reference.tokens, {})).activations.size).toBe(0);
  });

  it('an intervention counts as a hook for how deep to run', async () => {
    const withIntervention = await kernelsFor({
      hooks: 'hook_embed',
      interventions: { 'blocks.0.hook_mlp_out': (x) => x },
    });
    const layer0 = await kernelsFor({ hooks: 'blocks.0.hook_mlp_out' });
    expect(withIntervention).toEqual(layer0);
  });

  it('values do not depend on where the run stopped', async () => {
    const out = await model.runWithHooks(reference.tokens, { hooks: ['blocks.0.attn.hook_z'] });
    expect([...out.activations.keys()]).toEqual(['blocks.0.attn.hook_z']);
    expect(out.logits).toBeUndefined();
    expect(
      relErr(out.activations.get('blocks.0.attn.hook_z')!.data, ref(reference, 'blocks.0.attn.hook_z').data),
    ).toBeLessThan(1e-4);
  });
});

describe('interventions', () => {
  it('zero ablation replaces the value, is what gets captured, and changes only what comes after', async () => {
    let seen: Float32Array | undefined;
    const out = await model.runWithHooks(reference.tokens, {
      hooks: [
        'blocks.0.hook_resid_mid',
        'blocks.0.hook_mlp_out',
        'blocks.0.hook_resid_post',
        'blocks.1.hook_resid_pre',
      ],
      interventions: {
        'blocks.0.hook_mlp_out': (x) => {
          seen = x.dataSync() as Float32Array;
          return tf.zerosLike(x);
        },
      },
      returnLogits: true,
    });
    // The function received the original activation.
    expect(relErr(seen!, ref(reference, 'blocks.0.hook_mlp_out').data)).toBeLessThan(1e-4);
    const a = (n: string): Float32Array => out.activations.get(n)!.data;
    expect(a('blocks.0.hook_mlp_out').every((v) => v === 0)).toBe(true);
    expect(relErr(a('blocks.0.hook_resid_mid'), ref(reference, 'blocks.0.hook_resid_mid').data)).toBeLessThan(
      1e-4,
    );
    expect(a('blocks.0.hook_resid_post')).toEqual(a('blocks.0.hook_resid_mid'));
    expect(a('blocks.1.hook_resid_pre')).toEqual(a('blocks.0.hook_resid_mid'));
    expect(relErr(out.logits!.data, ref(reference, 'logits').data)).toBeGreaterThan(1e-2);
  });

  it('patching in the reference value reproduces the reference downstream, and leaves the caller tensor alive', async () => {
    const z = ref(reference, 'blocks.1.attn.hook_z');
    const patch = tf.tensor(z.data, z.shape);
    try {
      // Zero q everywhere in layer 1, then restore its output by patching z: logits must be the clean ones.
      const out = await model.runWithHooks(reference.tokens, {
        interventions: {
          'blocks.1.attn.hook_q': (x) => tf.zerosLike(x),
          'blocks.1.attn.hook_z': () => patch,
        },
        hooks: 'blocks.1.attn.hook_z',
        returnLogits: true,
      });
      expect(out.activations.get('blocks.1.attn.hook_z')!.data).toEqual(z.data);
      expect(relErr(out.logits!.data, ref(reference, 'logits').data)).toBeLessThan(1e-4);
      expect(patch.isDisposed).toBe(false);
    } finally {
      patch.dispose();
    }
  });

  it('zero queries make each position attend uniformly to itself and everything before it', async () => {
    const out = await model.runWithHooks(reference.tokens, {
      hooks: ['blocks.0.attn.hook_v', 'blocks.0.attn.hook_z'],
      interventions: { 'blocks.0.attn.hook_q': (x) => tf.zerosLike(x) },
    });
    const v = out.activations.get('blocks.0.attn.hook_v')!;
    const z = out.activations.get('blocks.0.attn.hook_z')!;
    expect(v.shape).toEqual([3, 16, 4, 16]);
    const [batch, seq, heads, dHead] = v.shape as [number, number, number, number];
    const at = (b: number, p: number, h: number, i: number): number =>
      ((b * seq + p) * heads + h) * dHead + i;
    const expected = new Float32Array(z.data.length);
    for (let b = 0; b < batch; b++) {
      for (let h = 0; h < heads; h++) {
        for (let i = 0; i < dHead; i++) {
          let sum = 0;
          for (let p = 0; p < seq; p++) {
            sum += v.data[at(b, p, h, i)]!;
            expected[at(b, p, h, i)] = sum / (p + 1);
          }
        }
      }
    }
    expect(relErr(z.data, expected)).toBeLessThan(1e-5);
  });

  it('replacing the position embedding feeds the replacement into the residual stream', async () => {
    const out = await model.runWithHooks(reference.tokens, {
      hooks: ['hook_pos_embed', 'blocks.0.hook_resid_pre'],
      interventions: { hook_pos_embed: (x) => tf.zerosLike(x) },
    });
    expect(out.activations.get('hook_pos_embed')!.shape).toEqual([3, 16, 64]);
    expect(out.activations.get('blocks.0.hook_resid_pre')!.data).toEqual(ref(reference, 'hook_embed').data);
  });

  it('an intervention returning the wrong shape or dtype is a UserError', async () => {
    await expect(
      model.runWithHooks(reference.tokens, {
        interventions: { 'blocks.0.hook_resid_pre': (x) => tf.slice(x, [0, 0, 0], [3, 16, 32]) },
      }),
    ).rejects.toThrow(
      /intervention at blocks\.0\.hook_resid_pre returned shape \[3, 16, 32\], expected \[3, 16, 64\]/,
    );
    await expect(
      model.runWithHooks(reference.tokens, { interventions: { hook_embed: (x) => tf.cast(x, 'int32') } }),
    ).rejects.toThrow(/returned dtype int32, expected float32/);
  });

  it('lossPerToken applies interventions', async () => {
    const clean = await model.lossPerToken(reference.tokens);
    const ablated = await model.lossPerToken(reference.tokens, {
      interventions: { 'blocks.1.hook_mlp_out': (x) => tf.zerosLike(x) },
    });
    expect(ablated.shape).toEqual([3, 15]);
    expect(relErr(ablated.data, clean.data)).toBeGreaterThan(1e-3);
  });
});

describe('tensor hygiene', () => {
  it('leaves no tensors behind, also when an intervention throws', async () => {
    await model.runWithHooks(reference.tokens, { hooks: '*', returnLogits: true, returnLoss: true });
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      await model.runWithHooks(reference.tokens, {
        hooks: '*',
        interventions: { 'blocks.0.hook_resid_mid': (x) => tf.mul(x, 0.5) },
        returnLogits: true,
        returnLoss: true,
      });
    }
    await expect(
      model.runWithHooks(reference.tokens, {
        hooks: '*',
        interventions: {
          'blocks.1.mlp.hook_pre': () => {
            throw new Error('boom');
          },
        },
      }),
    ).rejects.toThrow('boom');
    expect(tf.memory().numTensors).toBe(before);
  });

  it('dispose frees the weights and the model refuses to run afterwards', async () => {
    const before = tf.memory().numTensors;
    const m = await loadTfjsModel(MODEL_F32);
    await m.runWithHooks(reference.tokens, { returnLogits: true });
    m.dispose();
    expect(tf.memory().numTensors).toBe(before);
    await expect(m.runWithHooks(reference.tokens, { hooks: 'hook_embed' })).rejects.toThrow(/after dispose/);
  });
});

/** erf to ~1e-7 (Abramowitz & Stegun 7.1.26), enough to check the exact GELU wiring. */
function erf(x: number): number {
  const t = 1 / (1 + 0.3275911 * Math.abs(x));
  const y =
    1 -
    ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) *
      t *
      Math.exp(-x * x);
  return x >= 0 ? y : -y;
}

describe('activation functions', () => {
  it.each([
    ['relu', (x: number) => Math.max(x, 0)],
    ['gelu', (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2))],
    ['gelu_new', (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)))],
  ] as const)('%s is applied between mlp.hook_pre and mlp.hook_post', async (act, f) => {
    const cfg = await readModelConfig(MODEL_F32);
    const m = TfjsRunner.create(
      Model.bind(gpt2Family, { ...cfg, act }, await loadGpt2Weights(MODEL_F32, cfg)),
    );
    try {
      const out = await m.runWithHooks(reference.tokens, {
        hooks: ['blocks.0.mlp.hook_pre', 'blocks.0.mlp.hook_post'],
      });
      const pre = out.activations.get('blocks.0.mlp.hook_pre')!.data;
      expect(relErr(out.activations.get('blocks.0.mlp.hook_post')!.data, pre.map(f))).toBeLessThan(1e-5);
    } finally {
      m.dispose();
    }
  });
});
