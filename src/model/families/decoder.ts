/**
 * The pre-norm rotary decoder that Llama, Mistral, Qwen2, Gemma and Gemma 2 share, written once on the op
 * layer and configured by the family files (llama.ts, gemma.ts): RMSNorm (scale w, or Gemma's 1 + w),
 * rotary embeddings, grouped-query attention (optionally sliding-window and soft-capped), a gated MLP, and
 * Gemma 2's post-attention / post-MLP norms. Hook names and values follow TransformerLens (see
 * test/fixtures/families/README.md for the source lines): `hook_normalized` is x / rms(x) before the scale,
 * `attn.hook_q/k/v` are before rotary and `hook_rot_q/k` after, `hook_k/v` have n_key_value_heads heads,
 * `mlp.hook_pre` is the gate projection and `hook_pre_linear` the up projection, and `hook_attn_out` /
 * `hook_mlp_out` are what the block adds to the residual stream (after Gemma 2's post-norms).
 *
 * Kernels: q, k and v are one [d_model, (n_heads + 2 n_kv) d_head] product then a split, gate and up one
 * [d_model, 2 d_mlp] product (GPT-2's measurement: fewer, larger GEMMs); torch's [out, in] Linear weights
 * are transposed once at load, so every product is a plain MatMul; the unembedding is read transposed in
 * place (tied: stored once).
 */
import { inMemory, memoryStore } from '../../io/weight-file.js';
import type { Weight, WeightStore } from '../../io/weight-file.js';
import type { Ops } from '../../ops/ops.js';
import { UserError } from '../../pipeline/errors.js';
import { Checkpoint } from '../checkpoint.js';
import { positiveInt, positiveNumber } from '../config.js';
import type { ActivationFunction, HookLayout, ModelConfig } from '../config.js';
import { collectDashboardWeights } from '../family.js';
import type { DashboardWeights, ForwardStart, HookFn, ModelFamily } from '../family.js';
import {
  activation,
  causalAttention,
  repeatKvHeads,
  rmsNormalized,
  rotaryAngles,
  rotate,
  softCap,
} from '../layers.js';
import type { RotaryAngles } from '../layers.js';
import type { WeightProcessing } from '../process-weights.js';
import { inverseFrequencies, parseRope } from '../rope.js';
import type { RopeConfig } from '../rope.js';
import { concatArrays, linear, transposeConcat } from '../linear.js';
import type { Linear } from '../linear.js';

/** TransformerLens's hook points of the rotary decoders, in execution order. */
export const DECODER_HOOKS: HookLayout = {
  embed: [{ site: 'hook_embed', dims: ['d_model'] }],
  block: [
    { site: 'hook_resid_pre', dims: ['d_model'] },
    { site: 'ln1.hook_normalized', dims: ['d_model'] },
    { site: 'attn.hook_q', dims: ['n_heads', 'd_head'] },
    { site: 'attn.hook_k', dims: ['n_kv_heads', 'd_head'] },
    { site: 'attn.hook_v', dims: ['n_kv_heads', 'd_head'] },
    { site: 'attn.hook_rot_q', dims: ['n_heads', 'd_head'] },
    { site: 'attn.hook_rot_k', dims: ['n_kv_heads', 'd_head'] },
    { site: 'attn.hook_z', dims: ['n_heads', 'd_head'] },
    { site: 'hook_attn_out', dims: ['d_model'] },
    { site: 'hook_resid_mid', dims: ['d_model'] },
    { site: 'ln2.hook_normalized', dims: ['d_model'] },
    { site: 'mlp.hook_pre', dims: ['d_mlp'] },
    { site: 'mlp.hook_pre_linear', dims: ['d_mlp'] },
    { site: 'mlp.hook_post', dims: ['d_mlp'] },
    { site: 'hook_mlp_out', dims: ['d_model'] },
    { site: 'hook_resid_post', dims: ['d_model'] },
  ],
  final: [{ site: 'ln_final.hook_normalized', dims: ['d_model'] }],
};

/** How a family's decoder differs from Llama's; the family file fills it from config.json. */
export interface DecoderVariant {
  /** Gemma: norms scale by 1 + w. */
  normOffset: boolean;
  /** Gemma: the embedding is multiplied by sqrt(d_model) (rounded to float32, as transformers does). */
  scaleEmbedding: boolean;
  /** Gemma 2: norms after attention and after the MLP, before the residual sum. */
  postNorms: boolean;
  /** Multiplies q·k (1/sqrt(d_head), or Gemma 2's query_pre_attn_scalar^-1/2). */
  attnScale: number;
  attnSoftCap: number | null;
  finalSoftCap: number | null;
  /** Whether q/k/v, o, and the MLP projections carry biases. */
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
  /** Sliding window in tokens (a query sees itself and window - 1 keys before it), and which layers use it. */
  slidingWindow: number | null;
  slidingLayers: readonly boolean[];
  tiedEmbeddings: boolean;
  rope: RopeConfig;
}

/** The decoder variant of a parsed config (kept in `ModelConfig.extra.decoder` as JSON). */
export function decoderVariant(c: ModelConfig): DecoderVariant {
  return JSON.parse(String(c.extra.decoder)) as DecoderVariant;
}

export interface DecoderBlockWeights {
  /** Each norm's effective scale (w, or 1 + w), [d_model]. */
  ln1: Float32Array;
  /** q | k | v columns. */
  qkv: Linear;
  /** W_O: [n_heads d_head, d_model]. */
  o: Linear;
  postAttnNorm?: Float32Array;
  ln2: Float32Array;
  /** gate | up columns: [d_model, 2 d_mlp]. */
  gateUp: Linear;
  /** W_out: [d_mlp, d_model]. */
  down: Linear;
  postMlpNorm?: Float32Array;
}

export interface DecoderWeights {
  /** [vocab, d_model]. */
  embed: Weight;
  /** [vocab, d_model]; the same array as `embed` when tied. */
  unembed: Weight;
  blocks: DecoderBlockWeights[];
  lnFinal: Float32Array;
  /** Rotary inverse frequencies [rotary_dim / 2]. */
  invFreq: Float32Array;
}

/** What a family's config.json mapping needs beyond the shared fields. */
export interface DecoderConfigInput {
  family: string;
  act: ActivationFunction;
  variant: Omit<DecoderVariant, 'rope' | 'attnScale' | 'tiedEmbeddings'> & {
    attnScale?: number;
    tiedEmbeddings?: boolean;
  };
  defaultTheta?: number;
  /** The default of tie_word_embeddings when config.json does not say. */
  tiedByDefault: boolean;
}

/** The sizes every rotary decoder's config.json spells the same way, plus the family's variant. */
export function decoderConfig(
  j: Record<string, unknown>,
  file: string,
  input: DecoderConfigInput,
): ModelConfig {
  const nLayers = positiveInt(j, 'num_hidden_layers', file);
  const nHeads = positiveInt(j, 'num_attention_heads', file);
  const dModel = positiveInt(j, 'hidden_size', file);
  const nKvHeads = j.num_key_value_heads == null ? nHeads : positiveInt(j, 'num_key_value_heads', file);
  if (nHeads % nKvHeads !== 0) {
    throw new UserError(
      `${file}: num_attention_heads (${nHeads}) is not a multiple of num_key_value_heads (${nKvHeads})`,
    );
  }
  let dHead: number;
  if (j.head_dim == null) {
    if (dModel % nHeads !== 0) {
      throw new UserError(
        `${file}: hidden_size (${dModel}) is not a multiple of num_attention_heads and head_dim is absent`,
      );
    }
    dHead = dModel / nHeads;
  } else dHead = positiveInt(j, 'head_dim', file);
  const tie = j.tie_word_embeddings ?? input.tiedByDefault;
  if (typeof tie !== 'boolean')
    throw new UserError(`${file}: field "tie_word_embeddings" must be true or false`);
  const rope = parseRope(j, file, dHead, { defaultTheta: input.defaultTheta ?? 10000 });
  const variant: DecoderVariant = {
    ...input.variant,
    attnScale: input.variant.attnScale ?? 1 / Math.sqrt(dHead),
    tiedEmbeddings: tie,
    rope,
  };
  if (variant.slidingLayers.length !== nLayers) {
    throw new Error(`decoderConfig: ${variant.slidingLayers.length} sliding flags for ${nLayers} layers`);
  }
  return {
    family: input.family,
    nLayers,
    dModel,
    nHeads,
    nKvHeads,
    dHead,
    dMlp: positiveInt(j, 'intermediate_size', file),
    vocabSize: positiveInt(j, 'vocab_size', file),
    nCtx: positiveInt(j, 'max_position_embeddings', file),
    eps: positiveNumber(j, 'rms_norm_eps', file, 1e-6),
    act: input.act,
    hooks: DECODER_HOOKS,
    extra: {
      decoder: JSON.stringify(variant),
      rotary_dim: rope.rotaryDim,
      rotary_base: rope.theta,
      sliding_window: variant.slidingWindow,
      attn_scores_soft_cap: variant.attnSoftCap,
      final_logit_soft_cap: variant.finalSoftCap,
    },
  };
}

/**
 * Which layers use the sliding window: transformers 5's `layer_types` when config.json has it, else the
 * family's rule for older configs.
 */
export function slidingLayersOf(
  j: Record<string, unknown>,
  file: string,
  nLayers: number,
  legacyRule: (layer: number) => boolean,
): boolean[] {
  const types = j.layer_types;
  if (types === undefined || types === null) return Array.from({ length: nLayers }, (_, l) => legacyRule(l));
  if (!Array.isArray(types) || types.length !== nLayers) {
    throw new UserError(`${file}: field "layer_types" must be a list of ${nLayers} entries`);
  }
  return types.map((t, l) => {
    if (t === 'sliding_attention') return true;
    if (t === 'full_attention') return false;
    throw new UserError(
      `${file}: layer_types[${l}] is ${JSON.stringify(t)}, expected "sliding_attention" or "full_attention"`,
    );
  });
}

/** An optional positive integer field (null or absent: null). */
export function optionalPositiveInt(j: Record<string, unknown>, key: string, file: string): number | null {
  return j[key] == null ? null : positiveInt(j, key, file);
}

/** An optional positive number field (null or absent: null). */
export function optionalPositiveNumber(j: Record<string, unknown>, key: string, file: string): number | null {
  if (j[key] == null) return null;
  const v = j[key];
  if (typeof v !== 'number' || !(v > 0)) {
    throw new UserError(
      `${file}: field "${key}" must be a positive number or null, got ${JSON.stringify(v)}`,
    );
  }
  return v;
}

/** A boolean field with its default. */
export function flag(j: Record<string, unknown>, key: string, file: string, dflt: boolean): boolean {
  const v = j[key] ?? dflt;
  if (typeof v !== 'boolean')
    throw new UserError(`${file}: field "${key}" must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

function normScale(w: Float32Array, offset: boolean): Float32Array {
  // Gemma's (1 + w) is a float32 sum in transformers too.
  return offset ? w.map((v) => 1 + v) : w;
}

/** HF tensor names of one layer and of the ends, for families that name their norms alike. */
export interface DecoderTensorNames {
  /** The pre-MLP norm (Llama/Gemma: post_attention_layernorm; Gemma 2: pre_feedforward_layernorm). */
  ln2: string;
  /** Gemma 2's norm after attention (post_attention_layernorm) and after the MLP (post_feedforward_layernorm). */
  postAttnNorm?: string;
  postMlpNorm?: string;
}

/**
 * Loads and validates a rotary decoder's weights one layer at a time, with or without the `model.` prefix.
 * The matrices go through `store` as soon as they are arranged, so with a weight file the peak is one layer
 * (plus the embedding) rather than the whole model; norms, biases and frequencies stay in memory.
 */
export async function loadDecoderWeights(
  dir: string,
  c: ModelConfig,
  names: DecoderTensorNames,
  store: WeightStore = memoryStore,
): Promise<DecoderWeights> {
  const v = decoderVariant(c);
  const ckpt = await Checkpoint.open(dir);
  const prefix = ckpt.has('model.embed_tokens.weight') ? 'model.' : '';
  const d = c.dModel;
  const q = c.nHeads * c.dHead;
  const kv = c.nKvHeads * c.dHead;
  const one = async (key: string, shape: number[]): Promise<Float32Array> =>
    (await ckpt.read(new Map([[key, shape]]))).get(key)!;

  const embed = await store.put(await one(`${prefix}embed_tokens.weight`, [c.vocabSize, d]));
  const lmHead = ckpt.has('lm_head.weight') ? 'lm_head.weight' : undefined;
  if (!v.tiedEmbeddings && lmHead === undefined) {
    throw new UserError(`${ckpt.source}: missing tensor 'lm_head.weight' (tie_word_embeddings is false)`);
  }
  // Tied models ignore a stored lm_head, as transformers does.
  const unembed = v.tiedEmbeddings ? embed : await store.put(await one(lmHead!, [c.vocabSize, d]));

  const blocks: DecoderBlockWeights[] = [];
  for (let l = 0; l < c.nLayers; l++) {
    const p = `${prefix}layers.${l}.`;
    const expected = new Map<string, number[]>([
      [`${p}input_layernorm.weight`, [d]],
      [`${p}self_attn.q_proj.weight`, [q, d]],
      [`${p}self_attn.k_proj.weight`, [kv, d]],
      [`${p}self_attn.v_proj.weight`, [kv, d]],
      [`${p}self_attn.o_proj.weight`, [d, q]],
      [`${p}${names.ln2}.weight`, [d]],
      [`${p}mlp.gate_proj.weight`, [c.dMlp, d]],
      [`${p}mlp.up_proj.weight`, [c.dMlp, d]],
      [`${p}mlp.down_proj.weight`, [d, c.dMlp]],
    ]);
    if (v.qkvBias) {
      expected.set(`${p}self_attn.q_proj.bias`, [q]);
      expected.set(`${p}self_attn.k_proj.bias`, [kv]);
      expected.set(`${p}self_attn.v_proj.bias`, [kv]);
    }
    if (v.oBias) expected.set(`${p}self_attn.o_proj.bias`, [d]);
    if (v.mlpBias) {
      expected.set(`${p}mlp.gate_proj.bias`, [c.dMlp]);
      expected.set(`${p}mlp.up_proj.bias`, [c.dMlp]);
      expected.set(`${p}mlp.down_proj.bias`, [d]);
    }
    if (names.postAttnNorm) expected.set(`${p}${names.postAttnNorm}.weight`, [d]);
    if (names.postMlpNorm) expected.set(`${p}${names.postMlpNorm}.weight`, [d]);
    const t = await ckpt.read(expected);
    const get = (k: string): Float32Array => t.get(p + k)!;
    const norm = (k: string): Float32Array => normScale(get(`${k}.weight`), v.normOffset);
    blocks.push({
      ln1: norm('input_layernorm'),
      qkv: {
        weight: await store.put(
          transposeConcat(
            [get('self_attn.q_proj.weight'), get('self_attn.k_proj.weight'), get('self_attn.v_proj.weight')],
            [q, kv, kv],
            d,
          ),
        ),
        inDim: d,
        outDim: q + 2 * kv,
        bias: v.qkvBias
          ? concatArrays([
              get('self_attn.q_proj.bias'),
              get('self_attn.k_proj.bias'),
              get('self_attn.v_proj.bias'),
            ])
          : undefined,
      },
      o: {
        weight: await store.put(transposeConcat([get('self_attn.o_proj.weight')], [d], q)),
        inDim: q,
        outDim: d,
        bias: v.oBias ? get('self_attn.o_proj.bias') : undefined,
      },
      postAttnNorm: names.postAttnNorm ? norm(names.postAttnNorm) : undefined,
      ln2: norm(names.ln2),
      gateUp: {
        weight: await store.put(
          transposeConcat([get('mlp.gate_proj.weight'), get('mlp.up_proj.weight')], [c.dMlp, c.dMlp], d),
        ),
        inDim: d,
        outDim: 2 * c.dMlp,
        bias: v.mlpBias ? concatArrays([get('mlp.gate_proj.bias'), get('mlp.up_proj.bias')]) : undefined,
      },
      down: {
        weight: await store.put(transposeConcat([get('mlp.down_proj.weight')], [d], c.dMlp)),
        inDim: c.dMlp,
        outDim: d,
        bias: v.mlpBias ? get('mlp.down_proj.bias') : undefined,
      },
      postMlpNorm: names.postMlpNorm ? norm(names.postMlpNorm) : undefined,
    });
  }
  const lnFinal = normScale(await one(`${prefix}norm.weight`, [d]), v.normOffset);
  return { embed, unembed, blocks, lnFinal, invFreq: inverseFrequencies(v.rope) };
}

function scaled<T>(o: Ops<T>, key: string, normalized: T, scale: Float32Array): T {
  return o.mul(normalized, o.constant(key, [scale.length], scale));
}

/** The tied embedding and unembedding share one constant. */
function embeddingKey(w: DecoderWeights): string {
  return w.embed === w.unembed ? 'W_E_U' : 'W_E';
}

/** The shared forward and host-side helpers, bound into a family by `decoderFamily`. */
export function decoderFamily(
  base: Pick<ModelFamily<DecoderWeights>, 'name' | 'modelTypes' | 'architectures' | 'parseConfig'>,
  names: DecoderTensorNames,
): ModelFamily<DecoderWeights> {
  const processings: readonly WeightProcessing[] = ['none'];
  return {
    ...base,
    processings,
    loadWeights: (dir, config, store) => loadDecoderWeights(dir, config, names, store),
    processWeights(w, _config, processing) {
      if (processing !== 'none')
        throw new UserError(`the ${base.name} family offers no weight processing but none`);
      return w;
    },
    weightArrays(w) {
      const arrays = [w.embed, w.unembed, w.lnFinal];
      for (const b of w.blocks) {
        arrays.push(b.ln1, b.ln2, b.qkv.weight, b.o.weight, b.gateUp.weight, b.down.weight);
        for (const x of [b.qkv.bias, b.o.bias, b.gateUp.bias, b.down.bias, b.postAttnNorm, b.postMlpNorm]) {
          if (x) arrays.push(x);
        }
      }
      return arrays;
    },
    dashboardWeights(w, config, layers): DashboardWeights {
      const ends = { unembed: inMemory(w.unembed), lnFinalWeight: w.lnFinal };
      return collectDashboardWeights(config, ends, layers, (l) => {
        const b = w.blocks[l];
        return b && { attnOut: inMemory(b.o.weight), mlpOut: inMemory(b.down.weight) };
      });
    },
    embed: decoderEmbed,
    block: decoderBlock,
    final<T>(o: Ops<T>, c: ModelConfig, w: DecoderWeights, x: T, hook: HookFn<T>): T | undefined {
      const n = hook('ln_final.hook_normalized', rmsNormalized(o, x, c.eps));
      return n === undefined ? undefined : scaled(o, 'ln_final.w', n, w.lnFinal);
    },
    unembed<T>(o: Ops<T>, c: ModelConfig, w: DecoderWeights, x: T): T {
      const key = w.embed === w.unembed ? embeddingKey(w) : 'W_U_T';
      const logits = o.linear(x, o.constant(key, [c.vocabSize, c.dModel], w.unembed), { transB: true });
      const cap = decoderVariant(c).finalSoftCap;
      return cap ? softCap(o, logits, cap) : logits;
    },
  };
}

function decoderEmbed<T>(
  o: Ops<T>,
  c: ModelConfig,
  w: DecoderWeights,
  ids: T,
  hook: HookFn<T>,
): ForwardStart<T> | undefined {
  const v = decoderVariant(c);
  let x = o.gather(o.constant(embeddingKey(w), [c.vocabSize, c.dModel], w.embed), ids);
  if (v.scaleEmbedding) x = o.mul(x, o.scalar(Math.fround(Math.sqrt(c.dModel))));
  const embed = hook('hook_embed', x);
  if (embed === undefined) return undefined;
  const angles = rotaryAngles(o, ids, w.invFreq, 'rotary.inv_freq');
  const state: Record<string, T> = { mask: o.causalMask(ids, 1), cos: angles.cos, sin: angles.sin };
  if (v.slidingWindow !== null && v.slidingLayers.some(Boolean)) {
    state.slidingMask = o.causalMask(ids, 1, v.slidingWindow);
  }
  return { x: embed, state };
}

function decoderBlock<T>(
  o: Ops<T>,
  c: ModelConfig,
  w: DecoderWeights,
  l: number,
  x: T,
  state: Record<string, T>,
  hook: HookFn<T>,
): T | undefined {
  const v = decoderVariant(c);
  const b = w.blocks[l]!;
  const p = `blocks.${l}.`;
  const q = c.nHeads * c.dHead;
  const kv = c.nKvHeads * c.dHead;
  const resid = hook(`${p}hook_resid_pre`, x);
  if (resid === undefined) return undefined;
  const n1 = hook(`${p}ln1.hook_normalized`, rmsNormalized(o, resid, c.eps));
  if (n1 === undefined) return undefined;
  const [qFlat, kFlat, vFlat] = o.split(linear(o, `${p}attn.qkv`, b.qkv, scaled(o, `${p}ln1.w`, n1, b.ln1)), [
    q,
    kv,
    kv,
  ]);
  const qh = hook(`${p}attn.hook_q`, o.reshape(qFlat!, [0, 0, c.nHeads, c.dHead]));
  if (qh === undefined) return undefined;
  const kh = hook(`${p}attn.hook_k`, o.reshape(kFlat!, [0, 0, c.nKvHeads, c.dHead]));
  if (kh === undefined) return undefined;
  const vh = hook(`${p}attn.hook_v`, o.reshape(vFlat!, [0, 0, c.nKvHeads, c.dHead]));
  if (vh === undefined) return undefined;
  const angles: RotaryAngles<T> = { cos: state.cos!, sin: state.sin! };
  const rq = hook(`${p}attn.hook_rot_q`, rotate(o, qh, angles, v.rope.rotaryDim, c.dHead));
  if (rq === undefined) return undefined;
  const rk = hook(`${p}attn.hook_rot_k`, rotate(o, kh, angles, v.rope.rotaryDim, c.dHead));
  if (rk === undefined) return undefined;
  const groups = c.nHeads / c.nKvHeads;
  const mask = v.slidingLayers[l] && state.slidingMask !== undefined ? state.slidingMask : state.mask!;
  const attention = causalAttention(
    o,
    rq,
    repeatKvHeads(o, rk, c.nKvHeads, groups, c.dHead),
    repeatKvHeads(o, vh, c.nKvHeads, groups, c.dHead),
    mask,
    { scale: v.attnScale, softCap: v.attnSoftCap },
  );
  const z = hook(`${p}attn.hook_z`, attention);
  if (z === undefined) return undefined;
  let attnOut = linear(o, `${p}attn.out`, b.o, o.reshape(z, [0, 0, q]));
  if (b.postAttnNorm) attnOut = scaled(o, `${p}ln1_post.w`, rmsNormalized(o, attnOut, c.eps), b.postAttnNorm);
  const a = hook(`${p}hook_attn_out`, attnOut);
  if (a === undefined) return undefined;
  const mid = hook(`${p}hook_resid_mid`, o.add(resid, a));
  if (mid === undefined) return undefined;
  const n2 = hook(`${p}ln2.hook_normalized`, rmsNormalized(o, mid, c.eps));
  if (n2 === undefined) return undefined;
  const [gate, up] = o.split(linear(o, `${p}mlp.gate_up`, b.gateUp, scaled(o, `${p}ln2.w`, n2, b.ln2)), [
    c.dMlp,
    c.dMlp,
  ]);
  const pre = hook(`${p}mlp.hook_pre`, gate!);
  if (pre === undefined) return undefined;
  const preLinear = hook(`${p}mlp.hook_pre_linear`, up!);
  if (preLinear === undefined) return undefined;
  const post = hook(`${p}mlp.hook_post`, o.mul(activation(o, pre, c.act), preLinear));
  if (post === undefined) return undefined;
  let mlpOut = linear(o, `${p}mlp.out`, b.down, post);
  if (b.postMlpNorm) mlpOut = scaled(o, `${p}ln2_post.w`, rmsNormalized(o, mlpOut, c.eps), b.postMlpNorm);
  const m = hook(`${p}hook_mlp_out`, mlpOut);
  if (m === undefined) return undefined;
  return hook(`${p}hook_resid_post`, o.add(mid, m));
}
