/**
 * `center_writing_weights` (TransformerLens): residual writers lose their mean over d_model, so every
 * residual-stream activation is the unprocessed one minus its mean, while LayerNorm outputs, everything
 * computed from them, the logits and the loss are unchanged.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  centerRows,
  listHookNames,
  loadTfjsModel,
  loadGpt2Weights,
  parseHookName,
  processGpt2Weights,
  readModelConfig,
} from '../src/model/index.js';
import type { Activation, ModelConfig, TfjsRunner, Gpt2Weights, RunResult } from '../src/model/index.js';
import { selectBackend } from '../src/pipeline/backend.js';
import { MODEL_F32, loadReference, ref, relErr } from './gpt2-fixture.js';
import type { Reference } from './gpt2-fixture.js';

/** Hook sites whose value is (a sum of) residual writers. */
const RESIDUAL_SITES = new Set([
  'hook_embed',
  'hook_pos_embed',
  'hook_resid_pre',
  'hook_attn_out',
  'hook_resid_mid',
  'hook_mlp_out',
  'hook_resid_post',
]);

let config: ModelConfig;
let reference: Reference;
let plain: RunResult;
let centered: RunResult;
const models: TfjsRunner[] = [];

beforeAll(async () => {
  await selectBackend('cpu');
  reference = await loadReference();
  config = await readModelConfig(MODEL_F32);
  const opts = { hooks: '*', returnLogits: true, returnLoss: true } as const;
  const none = await loadTfjsModel(MODEL_F32, { processing: 'none' });
  const centre = await loadTfjsModel(MODEL_F32, { processing: 'center_writing_weights' });
  models.push(none, centre);
  expect(centre.processing).toBe('center_writing_weights');
  plain = await none.runWithHooks(reference.tokens, opts);
  centered = await centre.runWithHooks(reference.tokens, opts);
});
afterAll(() => {
  for (const m of models) m.dispose();
});

/** The activation with its mean over the last axis removed. */
function minusLastAxisMean(a: Activation): Float32Array {
  const width = a.shape.at(-1)!;
  return centerRows(a.data, width);
}

/** Largest |mean over d_model| of a [rows, d_model] array. */
function maxRowMean(data: Float32Array, width: number): number {
  let worst = 0;
  for (let r = 0; r < data.length; r += width) {
    let s = 0;
    for (let j = 0; j < width; j++) s += data[r + j]!;
    worst = Math.max(worst, Math.abs(s / width));
  }
  return worst;
}

describe('processGpt2Weights center_writing_weights', () => {
  let raw: Gpt2Weights;
  let done: Gpt2Weights;
  beforeAll(async () => {
    raw = await loadGpt2Weights(MODEL_F32, config);
    done = processGpt2Weights(raw, config, 'center_writing_weights');
  });

  it('gives every residual writer zero mean over d_model', () => {
    const d = config.dModel;
    const writers = [
      done.wte,
      done.wpe,
      ...done.blocks.flatMap((b) => [b.attnOut.weight, b.attnOut.bias, b.mlpOut.weight, b.mlpOut.bias]),
    ];
    for (const w of writers) expect(maxRowMean(w, d)).toBeLessThan(1e-6);
    // ...and they did not have zero mean before, so this is not vacuous.
    expect(maxRowMean(raw.blocks[0]!.mlpOut.bias, d)).toBeGreaterThan(1e-3);
    expect(maxRowMean(raw.wte, d)).toBeGreaterThan(1e-3);
  });

  it('leaves readers, LayerNorms and the tied unembedding alone and does not modify its input', () => {
    const before = new Float32Array(raw.wte);
    expect(done.unembed).toBe(raw.wte);
    expect(raw.wte).toEqual(before);
    expect(done.lnFinal).toBe(raw.lnFinal);
    for (const [i, b] of done.blocks.entries()) {
      const r = raw.blocks[i]!;
      expect([b.ln1, b.attnQkv, b.ln2, b.mlpIn]).toEqual([r.ln1, r.attnQkv, r.ln2, r.mlpIn]);
      expect(b.ln1).toBe(r.ln1);
      expect(b.mlpIn).toBe(r.mlpIn);
      // W_out minus its row means: each row moved by a constant.
      expect(relErr(b.mlpOut.weight, centerRows(r.mlpOut.weight, config.dModel))).toBe(0);
    }
    expect(processGpt2Weights(raw, config, 'none')).toBe(raw);
  });
});

describe('the centred model', () => {
  it('residual hooks are the unprocessed ones minus their mean over d_model', () => {
    let checked = 0;
    for (const name of listHookNames(config)) {
      if (!RESIDUAL_SITES.has(parseHookName(config, name).site)) continue;
      const p = plain.activations.get(name)!;
      const c = centered.activations.get(name)!;
      expect(c.shape, name).toEqual(p.shape);
      expect(relErr(c.data, minusLastAxisMean(p)), name).toBeLessThan(1e-4);
      // Also against Hugging Face's numbers, independently of our unprocessed forward.
      expect(relErr(c.data, minusLastAxisMean(ref(reference, name))), name).toBeLessThan(1e-4);
      expect(maxRowMean(c.data, config.dModel) / Math.max(...c.data.map(Math.abs)), name).toBeLessThan(1e-5);
      // The change is real: these activations had a non-zero mean.
      expect(relErr(c.data, p.data), name).toBeGreaterThan(1e-3);
      checked++;
    }
    expect(checked).toBe(2 + 5 * config.nLayers);
  });

  it('every other hook, the logits and the loss are unchanged', () => {
    let checked = 0;
    for (const name of listHookNames(config)) {
      if (RESIDUAL_SITES.has(parseHookName(config, name).site)) continue;
      expect(
        relErr(centered.activations.get(name)!.data, plain.activations.get(name)!.data),
        name,
      ).toBeLessThan(1e-4);
      checked++;
    }
    expect(checked).toBe(1 + 8 * config.nLayers);
    expect(relErr(centered.logits!.data, plain.logits!.data)).toBeLessThan(1e-4);
    expect(relErr(centered.logits!.data, ref(reference, 'logits').data)).toBeLessThan(1e-4);
    expect(relErr(centered.lossPerToken!.data, ref(reference, 'loss_per_token').data)).toBeLessThan(1e-4);
  });
});
