/**
 * The onnxruntime GPT-2 engine against the Hugging Face references (test/fixtures/gpt2-tiny): every hook and
 * the logits, hook selection, early stopping in the built graph, session caching and bad input.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildModelGraph } from '../src/engine/onnx/model-graph.js';
import { OnnxRunner } from '../src/engine/onnx/onnx-runner.js';
import {
  Model,
  gpt2Family,
  listHookNames,
  loadGpt2Weights,
  planRun,
  readModelConfig,
} from '../src/model/index.js';
import type { ModelConfig } from '../src/model/index.js';
import { UserError } from '../src/pipeline/errors.js';
import { MODEL_F32, loadReference, ref, relErr, sliceBatch, tokenSlice } from './gpt2-fixture.js';
import type { Reference } from './gpt2-fixture.js';

const TOL = 1e-4;
let config: ModelConfig;
let model: Model;
let reference: Reference;
let engine: OnnxRunner;

beforeAll(async () => {
  config = await readModelConfig(MODEL_F32);
  model = Model.bind(gpt2Family, config, await loadGpt2Weights(MODEL_F32, config));
  reference = await loadReference();
  engine = new OnnxRunner(model, { threads: 2 });
});
afterAll(async () => {
  await engine.dispose();
});

describe('OnnxRunner forward', () => {
  it('matches every hook and the logits of the reference', async () => {
    const out = await engine.runWithHooks(reference.tokens, { hooks: '*', returnLogits: true });
    const names = listHookNames(config);
    expect([...out.activations.keys()]).toEqual(names);
    for (const name of names) {
      const got = out.activations.get(name)!;
      const want = ref(reference, name);
      expect(got.shape, name).toEqual(want.shape);
      expect(relErr(got.data, want.data), name).toBeLessThan(TOL);
    }
    const logits = ref(reference, 'logits');
    expect(out.logits!.shape).toEqual(logits.shape);
    expect(relErr(out.logits!.data, logits.data)).toBeLessThan(TOL);
  });

  it('captures only the requested hooks, for any batch size and sequence length', async () => {
    const tokens = tokenSlice(reference.tokens, 1, 1);
    const out = await engine.runWithHooks(tokens, { hooks: 'blocks.*.attn.hook_z' });
    expect([...out.activations.keys()]).toEqual(['blocks.0.attn.hook_z', 'blocks.1.attn.hook_z']);
    expect(out.logits).toBeUndefined();
    for (const [name, got] of out.activations) {
      const want = sliceBatch(ref(reference, name), 1, 1);
      expect(got.shape).toEqual(want.shape);
      expect(relErr(got.data, want.data), name).toBeLessThan(TOL);
    }
    // Shorter sequences: the causal mask and position slice follow the input's length.
    const [b, seq] = reference.tokens.shape;
    const short = tokenSlice(reference.tokens, 0, b, seq - 3);
    const r = await engine.runWithHooks(short, { hooks: 'blocks.1.hook_resid_post' });
    const full = ref(reference, 'blocks.1.hook_resid_post');
    const got = r.activations.get('blocks.1.hook_resid_post')!;
    expect(got.shape).toEqual([b, seq - 3, config.dModel]);
    // Causality: the first seq - 3 positions do not depend on the later tokens.
    const d = config.dModel;
    for (let i = 0; i < b; i++) {
      const want = full.data.subarray(i * seq * d, (i * seq + seq - 3) * d);
      expect(relErr(got.data.subarray(i * (seq - 3) * d, (i + 1) * (seq - 3) * d), want)).toBeLessThan(TOL);
    }
  });

  it('returns nothing for an empty request and rejects bad hooks and tokens', async () => {
    expect((await engine.runWithHooks(reference.tokens, {})).activations.size).toBe(0);
    await expect(engine.runWithHooks(reference.tokens, { hooks: 'blocks.7.hook_resid_pre' })).rejects.toThrow(
      UserError,
    );
    await expect(
      engine.runWithHooks(
        { data: Int32Array.of(0, config.vocabSize), shape: [1, 2] },
        { hooks: 'hook_embed' },
      ),
    ).rejects.toThrow(/outside the vocabulary/);
  });

  it('applies weight processing like the tfjs runner (centred writing weights keep centred outputs)', async () => {
    const centred = new OnnxRunner(model.withProcessing('center_writing_weights'), { threads: 1 });
    try {
      const out = await centred.runWithHooks(reference.tokens, { hooks: 'blocks.0.hook_attn_out' });
      const a = out.activations.get('blocks.0.hook_attn_out')!;
      const d = config.dModel;
      for (let row = 0; row < a.data.length / d; row++) {
        let sum = 0;
        for (let j = 0; j < d; j++) sum += a.data[row * d + j]!;
        expect(Math.abs(sum / d)).toBeLessThan(1e-5);
      }
    } finally {
      await centred.dispose();
    }
  });

  it('rejects use after dispose', async () => {
    const e = new OnnxRunner(model, { threads: 1 });
    await e.dispose();
    await expect(e.runWithHooks(reference.tokens, { hooks: 'hook_embed' })).rejects.toThrow(/after dispose/);
  });
});

describe('buildModelGraph', () => {
  function graphFor(hooks: string[], returnLogits = false) {
    const plan = planRun(config, { hooks, returnLogits });
    return buildModelGraph(model, [{ plan, logits: plan.needLogits }]).model.graph;
  }

  it('stops at the deepest requested hook', () => {
    const g = graphFor(['blocks.0.hook_resid_post', 'hook_embed']);
    expect(g.outputs.map((o) => o.name)).toEqual(['hook_embed', 'blocks.0.hook_resid_post']);
    const everything = [
      ...g.nodes.flatMap((n) => [n.name, ...n.inputs, ...n.outputs]),
      ...g.initializers.map((t) => t.name),
    ];
    expect(everything.some((s) => s.includes('blocks.0.mlp'))).toBe(true);
    expect(everything.some((s) => s.startsWith('blocks.1.'))).toBe(false);
    expect(everything.some((s) => s.startsWith('ln_final') || s === 'logits')).toBe(false);

    const early = graphFor(['blocks.0.attn.hook_q']);
    expect(early.nodes.some((n) => n.name.includes('mlp') || n.opType === 'Softmax')).toBe(false);
    expect(early.initializers.some((t) => t.name.includes('mlp'))).toBe(false);
    expect(graphFor(['hook_embed']).nodes.map((n) => n.opType)).toEqual(['Gather']);
  });

  it('builds the whole model and the unembedding only for logits', () => {
    const g = graphFor(['blocks.0.hook_resid_pre'], true);
    expect(g.outputs.map((o) => o.name)).toEqual(['blocks.0.hook_resid_pre', 'logits']);
    expect(g.outputs[1]!.dims).toEqual(['batch', 'seq', config.vocabSize]);
    // The unembedding is the one product reading its weight transposed ([vocab, d], tied to W_E).
    const unembeds = (nodes: typeof g.nodes) =>
      nodes.filter((n) => n.opType === 'Gemm' && n.attributes?.transB !== undefined).length;
    expect(unembeds(g.nodes)).toBe(1);
    // Every block's two LayerNorms and the final one.
    expect(g.nodes.filter((n) => n.opType === 'LayerNormalization').length).toBe(2 * config.nLayers + 1);
    expect(unembeds(graphFor(['ln_final.hook_normalized']).nodes)).toBe(0);
  });

  it('declares TransformerLens shapes for the hook outputs', () => {
    const g = graphFor(['blocks.0.attn.hook_v', 'blocks.0.mlp.hook_pre', 'hook_pos_embed']);
    expect(Object.fromEntries(g.outputs.map((o) => [o.name, o.dims]))).toEqual({
      hook_pos_embed: ['batch', 'seq', config.dModel],
      'blocks.0.attn.hook_v': ['batch', 'seq', config.nHeads, config.dHead],
      'blocks.0.mlp.hook_pre': ['batch', 'seq', config.dMlp],
    });
  });
});
