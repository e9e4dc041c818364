/**
 * GPT-NeoX (the Pythia suite): LayerNorm with bias, partial rotary embeddings (the first rotary_pct of each
 * head's dimensions rotate), attention and MLP reading the same residual stream in parallel (so no
 * `hook_resid_mid`, as in TransformerLens), a plain GELU MLP and an untied unembedding (`embed_out`).
 * Checkpoints fuse q, k and v into `query_key_value` laid out per head ([q_h, k_h, v_h] for each head h);
 * loading regroups it to q | k | v so the forward splits it like the other families.
 */
import type { Ops } from '../../ops/ops.js';
import { UserError } from '../../pipeline/errors.js';
import { inMemory, memoryStore } from '../../io/weight-file.js';
import type { Weight, WeightStore } from '../../io/weight-file.js';
import { Checkpoint } from '../checkpoint.js';
import { positiveInt, positiveNumber } from '../config.js';
import type { HookLayout, HookSiteSpec, ModelConfig } from '../config.js';
import { collectDashboardWeights } from '../family.js';
import type { DashboardWeights, ForwardStart, HookFn, ModelFamily } from '../family.js';
import { activation, causalAttention, rotaryAngles, rotate } from '../layers.js';
import { linear, transposeConcat } from '../linear.js';
import type { Linear } from '../linear.js';
import { centerRows } from '../process-weights.js';
import type { WeightProcessing } from '../process-weights.js';
import { inverseFrequencies, parseRope } from '../rope.js';
import { decoderActivation } from './llama.js';

interface LayerNormWeights {
  weight: Float32Array;
  bias: Float32Array;
}

export interface NeoxBlockWeights {
  ln1: LayerNormWeights;
  /** q | k | v columns, heads contiguous inside each: [d_model, 3 d_model]. */
  qkv: Linear;
  /** W_O [d_model, d_model]. */
  o: Linear;
  ln2: LayerNormWeights;
  mlpIn: Linear;
  /** W_out [d_mlp, d_model]. */
  mlpOut: Linear;
}

export interface NeoxWeights {
  embed: Weight;
  unembed: Weight;
  blocks: NeoxBlockWeights[];
  lnFinal: LayerNormWeights;
  invFreq: Float32Array;
}

const ATTENTION_SITES: HookSiteSpec[] = [
  { site: 'hook_resid_pre', dims: ['d_model'] },
  { site: 'ln1.hook_normalized', dims: ['d_model'] },
  { site: 'attn.hook_q', dims: ['n_heads', 'd_head'] },
  { site: 'attn.hook_k', dims: ['n_heads', 'd_head'] },
  { site: 'attn.hook_v', dims: ['n_heads', 'd_head'] },
  { site: 'attn.hook_rot_q', dims: ['n_heads', 'd_head'] },
  { site: 'attn.hook_rot_k', dims: ['n_heads', 'd_head'] },
  { site: 'attn.hook_z', dims: ['n_heads', 'd_head'] },
  { site: 'hook_attn_out', dims: ['d_model'] },
];
const MLP_SITES: HookSiteSpec[] = [
  { site: 'ln2.hook_normalized', dims: ['d_model'] },
  { site: 'mlp.hook_pre', dims: ['d_mlp'] },
  { site: 'mlp.hook_post', dims: ['d_mlp'] },
  { site: 'hook_mlp_out', dims: ['d_model'] },
  { site: 'hook_resid_post', dims: ['d_model'] },
];

function hooks(parallel: boolean): HookLayout {
  return {
    embed: [{ site: 'hook_embed', dims: ['d_model'] }],
    block: [
      ...ATTENTION_SITES,
      ...(parallel ? [] : [{ site: 'hook_resid_mid', dims: ['d_model'] } as const]),
      ...MLP_SITES,
    ],
    final: [{ site: 'ln_final.hook_normalized', dims: ['d_model'] }],
  };
}

function parseConfig(j: Record<string, unknown>, file: string): ModelConfig {
  const nHeads = positiveInt(j, 'num_attention_heads', file);
  const dModel = positiveInt(j, 'hidden_size', file);
  if (dModel % nHeads !== 0) {
    throw new UserError(
      `${file}: hidden_size (${dModel}) is not a multiple of num_attention_heads (${nHeads})`,
    );
  }
  const dHead = dModel / nHeads;
  const parallel = j.use_parallel_residual ?? true;
  const tied = j.tie_word_embeddings ?? false;
  const bias = j.attention_bias ?? true;
  for (const [key, v] of [
    ['use_parallel_residual', parallel],
    ['tie_word_embeddings', tied],
    ['attention_bias', bias],
  ] as const) {
    if (typeof v !== 'boolean') throw new UserError(`${file}: field "${key}" must be true or false`);
  }
  const rope = parseRope(j, file, dHead, {
    defaultTheta: 10000,
    thetaKey: 'rotary_emb_base',
    partialKey: 'rotary_pct',
    defaultFraction: 0.25,
  });
  return {
    family: 'gpt_neox',
    nLayers: positiveInt(j, 'num_hidden_layers', file),
    dModel,
    nHeads,
    nKvHeads: nHeads,
    dHead,
    dMlp: positiveInt(j, 'intermediate_size', file),
    vocabSize: positiveInt(j, 'vocab_size', file),
    nCtx: positiveInt(j, 'max_position_embeddings', file),
    eps: positiveNumber(j, 'layer_norm_eps', file, 1e-5),
    act: decoderActivation(j, 'hidden_act', file, 'gelu'),
    hooks: hooks(parallel as boolean),
    extra: {
      parallel_attn_mlp: parallel as boolean,
      tied_embeddings: tied as boolean,
      attention_bias: bias as boolean,
      rope: JSON.stringify(rope),
      rotary_dim: rope.rotaryDim,
      rotary_base: rope.theta,
    },
  };
}

/** Rows of the per-head fused [3 d, ...] layout ([q_h, k_h, v_h] per head) in q | k | v order. */
function regroupQkv(src: Float32Array, nHeads: number, dHead: number, width: number): Float32Array {
  const d = nHeads * dHead;
  const dst = new Float32Array(src.length);
  for (let h = 0; h < nHeads; h++) {
    for (let part = 0; part < 3; part++) {
      for (let r = 0; r < dHead; r++) {
        const from = (h * 3 * dHead + part * dHead + r) * width;
        dst.set(src.subarray(from, from + width), (part * d + h * dHead + r) * width);
      }
    }
  }
  return dst;
}

async function loadWeights(
  dir: string,
  c: ModelConfig,
  store: WeightStore = memoryStore,
): Promise<NeoxWeights> {
  const ckpt = await Checkpoint.open(dir);
  const prefix = ckpt.has('gpt_neox.embed_in.weight') ? 'gpt_neox.' : '';
  const d = c.dModel;
  const bias = c.extra.attention_bias === true;
  const one = async (key: string, shape: number[]): Promise<Float32Array> =>
    (await ckpt.read(new Map([[key, shape]]))).get(key)!;
  const embed = await store.put(await one(`${prefix}embed_in.weight`, [c.vocabSize, d]));
  const unembed =
    c.extra.tied_embeddings === true
      ? embed
      : await store.put(await one('embed_out.weight', [c.vocabSize, d]));
  const blocks: NeoxBlockWeights[] = [];
  for (let l = 0; l < c.nLayers; l++) {
    const p = `${prefix}layers.${l}.`;
    const expected = new Map<string, number[]>([
      [`${p}input_layernorm.weight`, [d]],
      [`${p}input_layernorm.bias`, [d]],
      [`${p}attention.query_key_value.weight`, [3 * d, d]],
      [`${p}attention.dense.weight`, [d, d]],
      [`${p}post_attention_layernorm.weight`, [d]],
      [`${p}post_attention_layernorm.bias`, [d]],
      [`${p}mlp.dense_h_to_4h.weight`, [c.dMlp, d]],
      [`${p}mlp.dense_h_to_4h.bias`, [c.dMlp]],
      [`${p}mlp.dense_4h_to_h.weight`, [d, c.dMlp]],
      [`${p}mlp.dense_4h_to_h.bias`, [d]],
    ]);
    if (bias) {
      expected.set(`${p}attention.query_key_value.bias`, [3 * d]);
      expected.set(`${p}attention.dense.bias`, [d]);
    }
    const t = await ckpt.read(expected);
    const get = (k: string): Float32Array => t.get(p + k)!;
    const ln = (k: string): LayerNormWeights => ({ weight: get(`${k}.weight`), bias: get(`${k}.bias`) });
    blocks.push({
      ln1: ln('input_layernorm'),
      qkv: {
        weight: await store.put(
          transposeConcat(
            [regroupQkv(get('attention.query_key_value.weight'), c.nHeads, c.dHead, d)],
            [3 * d],
            d,
          ),
        ),
        inDim: d,
        outDim: 3 * d,
        bias: bias ? regroupQkv(get('attention.query_key_value.bias'), c.nHeads, c.dHead, 1) : undefined,
      },
      o: {
        weight: await store.put(transposeConcat([get('attention.dense.weight')], [d], d)),
        inDim: d,
        outDim: d,
        bias: bias ? get('attention.dense.bias') : undefined,
      },
      ln2: ln('post_attention_layernorm'),
      mlpIn: {
        weight: await store.put(transposeConcat([get('mlp.dense_h_to_4h.weight')], [c.dMlp], d)),
        inDim: d,
        outDim: c.dMlp,
        bias: get('mlp.dense_h_to_4h.bias'),
      },
      mlpOut: {
        weight: await store.put(transposeConcat([get('mlp.dense_4h_to_h.weight')], [d], c.dMlp)),
        inDim: c.dMlp,
        outDim: d,
        bias: get('mlp.dense_4h_to_h.bias'),
      },
    });
  }
  const lnFinal = {
    weight: await one(`${prefix}final_layer_norm.weight`, [d]),
    bias: await one(`${prefix}final_layer_norm.bias`, [d]),
  };
  return { embed, unembed, blocks, lnFinal, invFreq: inverseFrequencies(JSON.parse(String(c.extra.rope))) };
}

// Centred weights are new arrays in memory, also for a model whose weights were in a weight file.
function centerWriter(w: Linear, d: number): Linear {
  return { ...w, weight: centerRows(inMemory(w.weight), d), bias: w.bias && centerRows(w.bias, d) };
}

/** TransformerLens's center_writing_weights (see process-weights.ts); W_U keeps the original embedding. */
function processWeights(w: NeoxWeights, c: ModelConfig, processing: WeightProcessing): NeoxWeights {
  if (processing === 'none') return w;
  const d = c.dModel;
  return {
    ...w,
    embed: centerRows(inMemory(w.embed), d),
    blocks: w.blocks.map((b) => ({ ...b, o: centerWriter(b.o, d), mlpOut: centerWriter(b.mlpOut, d) })),
  };
}

function layerNorm<T>(o: Ops<T>, key: string, w: LayerNormWeights, x: T, eps: number): T {
  const d = w.weight.length;
  return o.layerNorm(x, o.constant(`${key}.w`, [d], w.weight), o.constant(`${key}.b`, [d], w.bias), eps);
}

function embeddingKey(w: NeoxWeights): string {
  return w.embed === w.unembed ? 'W_E_U' : 'W_E';
}

export const gptNeoxFamily: ModelFamily<NeoxWeights> = {
  name: 'gpt_neox',
  modelTypes: ['gpt_neox'],
  architectures: ['GPTNeoXForCausalLM'],
  processings: ['none', 'center_writing_weights'],
  parseConfig,
  loadWeights,
  processWeights,

  weightArrays(w) {
    const arrays = [w.embed, w.unembed, w.lnFinal.weight, w.lnFinal.bias];
    for (const b of w.blocks) {
      arrays.push(b.ln1.weight, b.ln1.bias, b.ln2.weight, b.ln2.bias);
      for (const l of [b.qkv, b.o, b.mlpIn, b.mlpOut]) {
        arrays.push(l.weight);
        if (l.bias) arrays.push(l.bias);
      }
    }
    return arrays;
  },

  dashboardWeights(w, c, layers): DashboardWeights {
    const ends = { unembed: inMemory(w.unembed), lnFinalWeight: w.lnFinal.weight };
    return collectDashboardWeights(c, ends, layers, (l) => {
      const b = w.blocks[l];
      return b && { attnOut: inMemory(b.o.weight), mlpOut: inMemory(b.mlpOut.weight) };
    });
  },

  embed<T>(o: Ops<T>, c: ModelConfig, w: NeoxWeights, ids: T, hook: HookFn<T>): ForwardStart<T> | undefined {
    const x = hook(
      'hook_embed',
      o.gather(o.constant(embeddingKey(w), [c.vocabSize, c.dModel], w.embed), ids),
    );
    if (x === undefined) return undefined;
    const angles = rotaryAngles(o, ids, w.invFreq, 'rotary.inv_freq');
    return { x, state: { mask: o.causalMask(ids, 1), cos: angles.cos, sin: angles.sin } };
  },

  block<T>(
    o: Ops<T>,
    c: ModelConfig,
    w: NeoxWeights,
    l: number,
    x: T,
    state: Record<string, T>,
    hook: HookFn<T>,
  ): T | undefined {
    const b = w.blocks[l]!;
    const p = `blocks.${l}.`;
    const d = c.dModel;
    const rotaryDim = Number(c.extra.rotary_dim);
    const resid = hook(`${p}hook_resid_pre`, x);
    if (resid === undefined) return undefined;
    const ln1 = hook(`${p}ln1.hook_normalized`, layerNorm(o, `${p}ln1`, b.ln1, resid, c.eps));
    if (ln1 === undefined) return undefined;
    const [qFlat, kFlat, vFlat] = o.split(linear(o, `${p}attn.qkv`, b.qkv, ln1), [d, d, d]);
    const heads = [0, 0, c.nHeads, c.dHead];
    const q = hook(`${p}attn.hook_q`, o.reshape(qFlat!, heads));
    if (q === undefined) return undefined;
    const k = hook(`${p}attn.hook_k`, o.reshape(kFlat!, heads));
    if (k === undefined) return undefined;
    const v = hook(`${p}attn.hook_v`, o.reshape(vFlat!, heads));
    if (v === undefined) return undefined;
    const angles = { cos: state.cos!, sin: state.sin! };
    const rq = hook(`${p}attn.hook_rot_q`, rotate(o, q, angles, rotaryDim, c.dHead));
    if (rq === undefined) return undefined;
    const rk = hook(`${p}attn.hook_rot_k`, rotate(o, k, angles, rotaryDim, c.dHead));
    if (rk === undefined) return undefined;
    const z = hook(
      `${p}attn.hook_z`,
      causalAttention(o, rq, rk, v, state.mask!, { scale: 1 / Math.sqrt(c.dHead) }),
    );
    if (z === undefined) return undefined;
    const attnOut = hook(`${p}hook_attn_out`, linear(o, `${p}attn.out`, b.o, o.reshape(z, [0, 0, d])));
    if (attnOut === undefined) return undefined;
    let mlpIn = resid;
    if (c.extra.parallel_attn_mlp !== true) {
      const mid = hook(`${p}hook_resid_mid`, o.add(resid, attnOut));
      if (mid === undefined) return undefined;
      mlpIn = mid;
    }
    const ln2 = hook(`${p}ln2.hook_normalized`, layerNorm(o, `${p}ln2`, b.ln2, mlpIn, c.eps));
    if (ln2 === undefined) return undefined;
    const pre = hook(`${p}mlp.hook_pre`, linear(o, `${p}mlp.in`, b.mlpIn, ln2));
    if (pre === undefined) return undefined;
    const post = hook(`${p}mlp.hook_post`, activation(o, pre, c.act));
    if (post === undefined) return undefined;
    const mlpOut = hook(`${p}hook_mlp_out`, linear(o, `${p}mlp.out`, b.mlpOut, post));
    if (mlpOut === undefined) return undefined;
    // transformers sums mlp + attn + residual in that order (parallel), or mid + mlp (sequential).
    const sum =
      c.extra.parallel_attn_mlp === true ? o.add(o.add(mlpOut, attnOut), resid) : o.add(mlpIn, mlpOut);
    return hook(`${p}hook_resid_post`, sum);
  },

  final<T>(o: Ops<T>, c: ModelConfig, w: NeoxWeights, x: T, hook: HookFn<T>): T | undefined {
    return hook('ln_final.hook_normalized', layerNorm(o, 'ln_final', w.lnFinal, x, c.eps));
  },

  unembed<T>(o: Ops<T>, c: ModelConfig, w: NeoxWeights, x: T): T {
    const key = w.embed === w.unembed ? embeddingKey(w) : 'W_U_T';
    return o.linear(x, o.constant(key, [c.vocabSize, c.dModel], w.unembed), { transB: true });
  },
};
