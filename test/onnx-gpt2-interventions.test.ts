/**
 * The onnxruntime GPT-2's in-graph extras against the TensorFlow.js model on the embedded tiny-gpt2: the
 * next-token loss, zero ablation and SAE / transcoder replacements of every saved architecture (with the
 * evaluator's keep mask), KL against a clean forward run in the same graph, the sharing of the clean prefix,
 * and bad replacements.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReferenceDistribution } from '../src/eval/index.js';
import { buildModelGraph } from '../src/engine/onnx/model-graph.js';
import { OnnxRunner } from '../src/engine/onnx/onnx-runner.js';
import {
  Model,
  TfjsRunner,
  gpt2Family,
  loadGpt2Weights,
  planRun,
  readModelConfig,
} from '../src/model/index.js';
import type {
  HookReplacement,
  Intervention,
  ModelConfig,
  ReplacementSae,
  TokenBatch,
} from '../src/model/index.js';
import { selectBackend } from '../src/pipeline/backend.js';
import { UserError } from '../src/pipeline/errors.js';
import { Sae } from '../src/sae/index.js';
import { Mulberry32 } from '../src/util/random.js';
import { relErr } from './gpt2-fixture.js';
import { randomSae } from './replacement-helpers.js';
import type { RandomSaeOptions } from './replacement-helpers.js';

const TINY_GPT2 = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'models', 'tiny-gpt2');
const TOL = 1e-4;
const LATER = 'blocks.3.hook_resid_post';

let config: ModelConfig;
let bound: Model;
let model: TfjsRunner;
let onnx: OnnxRunner;

beforeAll(async () => {
  await selectBackend('wasm');
  config = await readModelConfig(TINY_GPT2);
  bound = Model.bind(gpt2Family, config, await loadGpt2Weights(TINY_GPT2, config));
  model = TfjsRunner.create(bound);
  onnx = new OnnxRunner(bound, { threads: 2 });
});
afterAll(async () => {
  model.dispose();
  await onnx.dispose();
});

function randomTokens(batch: number, seq: number, seed: number): TokenBatch {
  const rng = new Mulberry32(seed);
  const data = Int32Array.from({ length: batch * seq }, () => Math.floor(rng.next() * config.vocabSize));
  return { data, shape: [batch, seq] };
}

/** Every fifth position excluded, as the evaluator's mask for special tokens. */
function everyFifthExcluded(rows: number): Uint8Array {
  return Uint8Array.from({ length: rows }, (_, i) => (i % 5 === 2 ? 0 : 1));
}

/** Where `keep` is 1 the replacement, elsewhere the original: the evaluator's tfjs formula. */
function keepReplaced(replacement: tf.Tensor, original: tf.Tensor, keep: Uint8Array | undefined): tf.Tensor {
  if (!keep) return replacement;
  const m = tf.tensor2d(Float32Array.from(keep), [keep.length, 1]);
  return tf.add(tf.mul(replacement, m), tf.mul(original, tf.sub(1, m)));
}

/** The tfjs interventions that splice `sae` in as the evaluator does (input at `input`, output at `hook`). */
function tfjsInterventions(
  sae: Sae,
  hook: string,
  input: string,
  rows: number,
  keep: Uint8Array | undefined,
): { interventions: Record<string, Intervention>; release: () => void } {
  if (input === hook) {
    return {
      interventions: {
        [hook]: (a) => {
          const x = tf.reshape(a, [rows, sae.dIn]) as tf.Tensor2D;
          return tf.reshape(keepReplaced(sae.forward(x), x, keep), a.shape);
        },
      },
      release: () => undefined,
    };
  }
  let x: tf.Tensor2D | undefined;
  return {
    interventions: {
      [input]: (a) => {
        x = tf.keep(tf.reshape(a, [rows, sae.dIn]).clone() as tf.Tensor2D);
        return a;
      },
      [hook]: (a) => {
        const y = tf.reshape(a, [rows, sae.dOut]);
        return tf.reshape(keepReplaced(sae.forward(x!), y, keep), a.shape);
      },
    },
    release: () => x?.dispose(),
  };
}

/** float64 logsumexp(logits) - logits[next token] from [batch, seq, vocab] logits. */
function lossFromLogits(logits: Float32Array, tokens: TokenBatch): Float64Array {
  const [batch, seq] = tokens.shape;
  const V = config.vocabSize;
  const out = new Float64Array(batch * (seq - 1));
  for (let b = 0; b < batch; b++) {
    for (let p = 0; p < seq - 1; p++) {
      const base = (b * seq + p) * V;
      let max = -Infinity;
      for (let v = 0; v < V; v++) max = Math.max(max, logits[base + v]!);
      let sum = 0;
      for (let v = 0; v < V; v++) sum += Math.exp(logits[base + v]! - max);
      out[b * (seq - 1) + p] = max + Math.log(sum) - logits[base + tokens.data[b * seq + p + 1]!]!;
    }
  }
  return out;
}

describe('OnnxRunner next-token loss', () => {
  it('equals TfjsRunner.lossPerToken, and the float64 loss of the logits', async () => {
    const tokens = randomTokens(3, 40, 1);
    const got = await onnx.runWithHooks(tokens, { returnLoss: true });
    expect(got.lossPerToken!.shape).toEqual([3, 39]);
    expect(got.logits).toBeUndefined();
    const want = await model.runWithHooks(tokens, { returnLoss: true, returnLogits: true });
    expect(relErr(got.lossPerToken!.data, want.lossPerToken!.data)).toBeLessThan(TOL);
    // tfjs sums 50k exponentials in float32; the graph's log-softmax is closer to the float64 value.
    expect(relErr(got.lossPerToken!.data, lossFromLogits(want.logits!.data, tokens))).toBeLessThan(1e-5);
  });
});

describe('OnnxRunner zero ablation', () => {
  it.each(['hook_pos_embed', 'blocks.0.attn.hook_z', 'blocks.2.mlp.hook_post', 'blocks.1.hook_resid_pre'])(
    'at %s: the same downstream activations and losses as tfjs zerosLike',
    async (hook) => {
      const tokens = randomTokens(2, 24, 2);
      const got = await onnx.runWithHooks(tokens, {
        hooks: [hook, LATER],
        interventions: { [hook]: { kind: 'zero' } },
        returnLoss: true,
      });
      const want = await model.runWithHooks(tokens, {
        hooks: [hook, LATER],
        interventions: { [hook]: (a) => tf.zerosLike(a) },
        returnLoss: true,
      });
      // A captured replaced hook holds the replacement.
      expect(got.activations.get(hook)!.shape).toEqual(want.activations.get(hook)!.shape);
      expect(got.activations.get(hook)!.data.every((v) => v === 0)).toBe(true);
      expect(relErr(got.activations.get(LATER)!.data, want.activations.get(LATER)!.data)).toBeLessThan(TOL);
      expect(relErr(got.lossPerToken!.data, want.lossPerToken!.data)).toBeLessThan(TOL);
      expect(got.saeOutputs.size).toBe(0);
    },
  );
});

const SAE_CASES: Array<[string, RandomSaeOptions & { keep?: boolean }]> = [
  [
    'standard, b_dec applied to the input, keep mask',
    { architecture: 'standard', hook: 'blocks.1.hook_resid_pre', keep: true },
  ],
  [
    'topk rescaled by decoder norms, b_dec not applied',
    {
      architecture: 'topk',
      hook: 'blocks.2.hook_resid_post',
      k: 6,
      rescaleActsByDecoderNorm: true,
      applyBDecToInput: false,
    },
  ],
  [
    'jumprelu (also how batchtopk is saved)',
    { architecture: 'jumprelu', hook: 'blocks.1.hook_mlp_out', keep: true },
  ],
  ['gated', { architecture: 'gated', hook: 'blocks.0.hook_resid_mid' }],
  [
    'constant_norm_rescale',
    { architecture: 'standard', hook: 'blocks.2.hook_resid_pre', normalize: 'constant_norm_rescale' },
  ],
  [
    'layer_norm, keep mask',
    { architecture: 'topk', hook: 'blocks.1.hook_resid_mid', normalize: 'layer_norm', keep: true },
  ],
  ['hook_z, heads flattened', { architecture: 'topk', hook: 'blocks.1.attn.hook_z', k: 4 }],
  [
    'skip transcoder, keep mask',
    {
      architecture: 'skip_transcoder',
      hook: 'blocks.0.ln2.hook_normalized',
      hookOut: 'blocks.0.hook_mlp_out',
      keep: true,
    },
  ],
  [
    'topk transcoder to a wider hook, layer_norm',
    {
      architecture: 'topk_transcoder',
      hook: 'blocks.1.hook_resid_mid',
      hookOut: 'blocks.1.mlp.hook_post',
      dOut: 256,
      normalize: 'layer_norm',
    },
  ],
];

describe('OnnxRunner SAE replacement', () => {
  it.each(SAE_CASES)('%s: as the tfjs SAE spliced in by a JS intervention', async (_, o) => {
    const spec = randomSae({ seed: 5, ...o });
    const hook = o.hookOut ?? o.hook;
    const tokens = randomTokens(2, 24, 3);
    const rows = 48;
    const keep = o.keep ? everyFifthExcluded(rows) : undefined;
    const replacement: HookReplacement = { kind: 'sae', sae: spec, input: o.hook };
    const got = await onnx.runWithHooks(tokens, {
      hooks: [LATER],
      interventions: { [hook]: replacement },
      returnLoss: true,
      keep,
    });

    const sae = Sae.fromTensors(spec.config, spec.kind, { ...spec.tensors });
    const { interventions, release } = tfjsInterventions(sae, hook, o.hook, rows, keep);
    try {
      const want = await model.runWithHooks(tokens, { hooks: [LATER], interventions, returnLoss: true });
      expect(relErr(got.activations.get(LATER)!.data, want.activations.get(LATER)!.data)).toBeLessThan(TOL);
      expect(relErr(got.lossPerToken!.data, want.lossPerToken!.data)).toBeLessThan(TOL);

      // Features and reconstruction of the clean input, as the tfjs SAE computes them.
      const clean = await model.runWithHooks(tokens, { hooks: [o.hook] });
      const x = tf.tensor2d(clean.activations.get(o.hook)!.data, [rows, sae.dIn]);
      const f = sae.encode(x);
      const xHat = sae.forward(x);
      const out = got.saeOutputs.get(hook)!;
      expect(out.features.shape).toEqual([rows, spec.config.d_sae]);
      expect(out.reconstruction.shape).toEqual([rows, sae.dOut]);
      const wantF = f.dataSync() as Float32Array;
      expect(relErr(out.features.data, wantF)).toBeLessThan(TOL);
      // The same features fire (some, not all).
      const fired = (a: Float32Array) => a.reduce((n, v) => n + (v > 0 ? 1 : 0), 0);
      expect(fired(out.features.data)).toBe(fired(wantF));
      expect(fired(wantF)).toBeGreaterThan(0);
      expect(fired(wantF)).toBeLessThan(wantF.length);
      expect(relErr(out.reconstruction.data, xHat.dataSync() as Float32Array)).toBeLessThan(TOL);
      tf.dispose([x, f, xHat]);
    } finally {
      release();
      sae.dispose();
    }
  });

  it('a keep mask of all ones is the same as none; excluded positions keep the original activation', async () => {
    const spec = randomSae({ architecture: 'standard', hook: 'blocks.1.hook_resid_pre' });
    const tokens = randomTokens(2, 24, 4);
    const hook = 'blocks.1.hook_resid_pre';
    const run = (keep?: Uint8Array) =>
      onnx.runWithHooks(tokens, {
        hooks: [hook],
        interventions: { [hook]: { kind: 'sae', sae: spec } },
        keep,
      });
    const none = await run();
    const ones = await run(new Uint8Array(48).fill(1));
    expect(ones.activations.get(hook)!.data).toEqual(none.activations.get(hook)!.data);
    const zeros = await run(new Uint8Array(48));
    const clean = await onnx.runWithHooks(tokens, { hooks: [hook] });
    expect(zeros.activations.get(hook)!.data).toEqual(clean.activations.get(hook)!.data);
    expect(none.activations.get(hook)!.data).toEqual(none.saeOutputs.get(hook)!.reconstruction.data);
  });
});

describe('OnnxRunner.runVariants', () => {
  it('KL against the clean forward in the same run equals the evaluator’s host KL of tfjs logits', async () => {
    const tokens = randomTokens(2, 24, 6);
    const rows = 48;
    const keep = everyFifthExcluded(rows);
    const hook = 'blocks.2.hook_resid_pre';
    const spec = randomSae({ architecture: 'topk', hook, k: 8, seed: 9 });
    const got = await onnx.runVariants(tokens, {
      hooks: [hook],
      variants: [{ 'blocks.1.hook_resid_pre': { kind: 'zero' } }, { [hook]: { kind: 'sae', sae: spec } }],
      kl: true,
      keep,
    });

    const clean = await model.runWithHooks(tokens, { hooks: [hook], returnLogits: true, returnLoss: true });
    const reference = new ReferenceDistribution(clean.logits!.data, rows, config.vocabSize);
    expect(relErr(got.clean.lossPerToken!.data, clean.lossPerToken!.data)).toBeLessThan(TOL);
    expect(relErr(got.clean.activations.get(hook)!.data, clean.activations.get(hook)!.data)).toBeLessThan(
      TOL,
    );

    const ablated = await model.runWithHooks(tokens, {
      interventions: { 'blocks.1.hook_resid_pre': (a) => tf.zerosLike(a) },
      returnLogits: true,
      returnLoss: true,
    });
    const sae = Sae.fromTensors(spec.config, spec.kind, { ...spec.tensors });
    const { interventions } = tfjsInterventions(sae, hook, hook, rows, keep);
    const patched = await model.runWithHooks(tokens, { interventions, returnLogits: true, returnLoss: true });
    sae.dispose();

    for (const [variant, want] of [
      [got.variants[0]!, ablated],
      [got.variants[1]!, patched],
    ] as const) {
      expect(variant.kl!.shape).toEqual([2, 24]);
      const wantKl = reference.klAgainst(want.logits!.data);
      expect(relErr(variant.kl!.data, wantKl)).toBeLessThan(TOL);
      expect(Math.min(...wantKl)).toBeGreaterThanOrEqual(0);
      expect(relErr(variant.lossPerToken.data, want.lossPerToken!.data)).toBeLessThan(TOL);
    }
    // The SAE's outputs are those of a single patched forward.
    const alone = await onnx.runWithHooks(tokens, {
      interventions: { [hook]: { kind: 'sae', sae: spec } },
      keep,
    });
    expect(got.variants[1]!.saeOutputs.get(hook)!.features.data).toEqual(
      alone.saeOutputs.get(hook)!.features.data,
    );
  });

  it('a variant that replaces a hook by an exact copy has KL 0 and the clean loss, bit for bit', async () => {
    // Identity SAE: W_enc = [I, -I], W_dec = [I; -I], so x̂ = relu(x) - relu(-x) = x exactly.
    const d = 64;
    const wEnc = new Float32Array(d * 2 * d);
    const wDec = new Float32Array(2 * d * d);
    for (let i = 0; i < d; i++) {
      wEnc[i * 2 * d + i] = 1;
      wEnc[i * 2 * d + d + i] = -1;
      wDec[i * d + i] = 1;
      wDec[(d + i) * d + i] = -1;
    }
    const base = randomSae({ architecture: 'standard', hook: 'blocks.2.hook_resid_mid', dSae: 2 * d });
    const identity: ReplacementSae = {
      ...base,
      config: { ...base.config, apply_b_dec_to_input: false },
      tensors: {
        W_enc: { shape: [d, 2 * d], data: wEnc },
        b_enc: { shape: [2 * d], data: new Float32Array(2 * d) },
        W_dec: { shape: [2 * d, d], data: wDec },
        b_dec: { shape: [d], data: new Float32Array(d) },
      },
    };
    const tokens = randomTokens(2, 16, 7);
    const got = await onnx.runVariants(tokens, {
      variants: [{ 'blocks.2.hook_resid_mid': { kind: 'sae', sae: identity } }],
      kl: true,
    });
    expect(got.variants[0]!.kl!.data.every((v) => v === 0)).toBe(true);
    expect(got.variants[0]!.lossPerToken.data).toEqual(got.clean.lossPerToken!.data);
  });

  it('builds the clean forward once: a variant recomputes only what follows its replaced hook', () => {
    const spec = randomSae({ architecture: 'standard', hook: 'blocks.2.hook_resid_pre' });
    const graph = buildModelGraph(bound, [
      { plan: planRun(config, { returnLoss: true }), loss: true },
      {
        plan: planRun(config, { interventions: ['blocks.2.hook_resid_pre'], returnLoss: true }),
        interventions: { 'blocks.2.hook_resid_pre': { kind: 'sae', sae: spec } },
        loss: true,
        kl: true,
      },
    ]).model.graph;
    const count = (op: string) => graph.nodes.filter((n) => n.opType === op).length;
    // Clean: ln1 + ln2 in 4 blocks + ln_final; patched: blocks 2 and 3 + ln_final.
    expect(count('LayerNormalization')).toBe(9 + 5);
    // The unembedding (a Gemm over the tied embedding) once per forward.
    expect(graph.nodes.filter((n) => n.opType === 'Gemm' && n.inputs.includes('W_E_U')).length).toBe(2);
    expect(count('Gather')).toBe(1);
    // Weights are stored once.
    expect(new Set(graph.initializers.map((t) => t.name)).size).toBe(graph.initializers.length);
    expect(graph.initializers.filter((t) => t.name.startsWith('sae0.')).length).toBe(4);
    expect(graph.outputs.map((o) => o.name)).toEqual([
      'loss_per_token',
      'forward1/loss_per_token',
      'forward1/kl',
      'forward1/blocks.2.hook_resid_pre/sae_features',
      'forward1/blocks.2.hook_resid_pre/sae_reconstruction',
    ]);
  });
});

describe('bad replacements', () => {
  const tokens = (): TokenBatch => randomTokens(1, 8, 8);
  const replace = (hook: string, r: HookReplacement) =>
    onnx.runWithHooks(tokens(), { interventions: { [hook]: r } });

  it('an unknown hook is a UserError naming it', async () => {
    await expect(replace('blocks.9.hook_resid_pre', { kind: 'zero' })).rejects.toThrow(UserError);
    await expect(replace('blocks.9.hook_resid_pre', { kind: 'zero' })).rejects.toThrow(
      /intervention at "blocks\.9\.hook_resid_pre".*out of range/,
    );
    await expect(replace('blocks.0.hook_nope', { kind: 'zero' })).rejects.toThrow(
      /unknown hook "blocks\.0\.hook_nope"/,
    );
    const sae = randomSae({ architecture: 'skip_transcoder', hook: 'blocks.0.ln2.hook_normalized' });
    await expect(
      replace('blocks.0.hook_mlp_out', { kind: 'sae', sae, input: 'blocks.0.ln9' }),
    ).rejects.toThrow(/input hook: unknown hook "blocks\.0\.ln9"/);
  });

  it('an SAE whose widths do not fit its hooks is a UserError naming the SAE and the field', async () => {
    const narrow = randomSae({ architecture: 'standard', hook: 'blocks.0.hook_resid_pre', dIn: 32 });
    await expect(replace('blocks.0.hook_resid_pre', { kind: 'sae', sae: narrow })).rejects.toThrow(UserError);
    await expect(replace('blocks.0.hook_resid_pre', { kind: 'sae', sae: narrow })).rejects.toThrow(
      /SAE 'standard@blocks\.0\.hook_resid_pre': d_in is 32 but hook blocks\.0\.hook_resid_pre has width 64/,
    );
    const tc = randomSae({ architecture: 'transcoder', hook: 'blocks.0.hook_resid_mid', dOut: 64 });
    await expect(
      replace('blocks.0.mlp.hook_post', { kind: 'sae', sae: tc, input: 'blocks.0.hook_resid_mid' }),
    ).rejects.toThrow(/d_out is 64 but hook blocks\.0\.mlp\.hook_post has width 256/);
    await expect(
      replace('blocks.0.hook_resid_mid', { kind: 'sae', sae: tc, input: 'blocks.1.hook_resid_pre' }),
    ).rejects.toThrow(/input hook blocks\.1\.hook_resid_pre comes after the hook it replaces/);
  });

  it('weights that do not match the cfg, and a keep mask of the wrong length, are UserErrors', async () => {
    const sae = randomSae({ architecture: 'jumprelu', hook: 'blocks.0.hook_resid_pre' });
    const { threshold: _, ...noThreshold } = sae.tensors;
    await expect(
      replace('blocks.0.hook_resid_pre', { kind: 'sae', sae: { ...sae, tensors: noThreshold } }),
    ).rejects.toThrow(/no threshold tensor/);
    const badShape = { ...sae.tensors, W_dec: { shape: [64, 96], data: sae.tensors.W_dec!.data } };
    await expect(
      replace('blocks.0.hook_resid_pre', { kind: 'sae', sae: { ...sae, tensors: badShape } }),
    ).rejects.toThrow(/W_dec has shape \[64, 96\], expected \[96, 64\]/);
    await expect(
      onnx.runWithHooks(tokens(), {
        interventions: { 'blocks.0.hook_resid_pre': { kind: 'sae', sae } },
        keep: new Uint8Array(3),
      }),
    ).rejects.toThrow(/keep mask has 3 entries, expected 8/);
  });
});
