/**
 * GPT-2 (and GPT-2-architecture models such as distilgpt2 and the embedded tiny-gpt2), the first model
 * family: config.json mapping, safetensors weight names, weight processing, hook points and the forward,
 * written once on the op layer.
 *
 * Kernels the ONNX graph gets from this definition, chosen by measurement (bench/gpt2-forward.ts): fused
 * LayerNormalization; one [d, 3d] product for q, k and v, then a split (fewer, larger GEMMs); q scaled
 * before the scores; the embedding a Gather from the [vocab, d] matrix, and the logits a Gemm with transB
 * over that same matrix (tied: stored once, never transposed).
 */
import type { Ops } from '../../ops/ops.js';
import { UserError } from '../../pipeline/errors.js';
import { Checkpoint } from '../checkpoint.js';
import { ACTIVATION_FUNCTIONS, positiveInt, positiveNumber } from '../config.js';
import type { ActivationFunction, HookLayout, ModelConfig } from '../config.js';
import { collectDashboardWeights } from '../family.js';
import type { DashboardWeights, ForwardStart, HookFn, ModelFamily } from '../family.js';
import { activation, causalAttention } from '../layers.js';
import { centerRows } from '../process-weights.js';
import type { WeightProcessing } from '../process-weights.js';

export interface LayerNormWeights {
  weight: Float32Array;
  bias: Float32Array;
}

/** A Conv1D: `weight` is [in, out] row-major (what `x @ W` wants), `bias` is [out]. */
export interface LinearWeights {
  weight: Float32Array;
  bias: Float32Array;
}

export interface Gpt2BlockWeights {
  ln1: LayerNormWeights;
  /** c_attn: [d_model, 3 d_model], output columns q | k | v, heads contiguous inside each. */
  attnQkv: LinearWeights;
  /** attn.c_proj (TransformerLens W_O / b_O): [d_model, d_model]. */
  attnOut: LinearWeights;
  ln2: LayerNormWeights;
  /** mlp.c_fc (W_in / b_in): [d_model, d_mlp]. */
  mlpIn: LinearWeights;
  /** mlp.c_proj (W_out / b_out): [d_mlp, d_model]. */
  mlpOut: LinearWeights;
}

export interface Gpt2Weights {
  /** wte (W_E): [vocab, d_model]. */
  wte: Float32Array;
  /**
   * The unembedding, [vocab, d_model] (W_U transposed). Tied to wte in the file, so loading gives the same
   * array; kept separate because weight processing changes W_E but not W_U, as in TransformerLens.
   */
  unembed: Float32Array;
  /** wpe (W_pos): [n_positions, d_model]. */
  wpe: Float32Array;
  blocks: Gpt2BlockWeights[];
  lnFinal: LayerNormWeights;
}

/** TransformerLens's GPT-2 hook points, in execution order. */
export const GPT2_HOOKS: HookLayout = {
  embed: [
    { site: 'hook_embed', dims: ['d_model'] },
    { site: 'hook_pos_embed', dims: ['d_model'] },
  ],
  block: [
    { site: 'hook_resid_pre', dims: ['d_model'] },
    { site: 'ln1.hook_normalized', dims: ['d_model'] },
    { site: 'attn.hook_q', dims: ['n_heads', 'd_head'] },
    { site: 'attn.hook_k', dims: ['n_heads', 'd_head'] },
    { site: 'attn.hook_v', dims: ['n_heads', 'd_head'] },
    { site: 'attn.hook_z', dims: ['n_heads', 'd_head'] },
    { site: 'hook_attn_out', dims: ['d_model'] },
    { site: 'hook_resid_mid', dims: ['d_model'] },
    { site: 'ln2.hook_normalized', dims: ['d_model'] },
    { site: 'mlp.hook_pre', dims: ['d_mlp'] },
    { site: 'mlp.hook_post', dims: ['d_mlp'] },
    { site: 'hook_mlp_out', dims: ['d_model'] },
    { site: 'hook_resid_post', dims: ['d_model'] },
  ],
  final: [{ site: 'ln_final.hook_normalized', dims: ['d_model'] }],
};

/**
 * HF spells some activations differently from what they compute: `gelu_pytorch_tanh` is the same tanh
 * approximation as `gelu_new`.
 */
const ACTIVATION_ALIASES: Record<string, ActivationFunction> = {
  gelu_new: 'gelu_new',
  gelu_pytorch_tanh: 'gelu_new',
  gelu: 'gelu',
  relu: 'relu',
};

function parseConfig(j: Record<string, unknown>, file: string): ModelConfig {
  const nLayers = positiveInt(j, 'n_layer', file);
  const nHeads = positiveInt(j, 'n_head', file);
  const dModel = positiveInt(j, 'n_embd', file);
  const nCtx = positiveInt(j, 'n_positions', file);
  const vocabSize = positiveInt(j, 'vocab_size', file);
  if (dModel % nHeads !== 0) {
    throw new UserError(`${file}: n_embd (${dModel}) is not a multiple of n_head (${nHeads})`);
  }
  const dMlp = j.n_inner === undefined || j.n_inner === null ? 4 * dModel : positiveInt(j, 'n_inner', file);
  const eps = positiveNumber(j, 'layer_norm_epsilon', file, 1e-5);
  const act = j.activation_function ?? 'gelu_new';
  const actFn = typeof act === 'string' ? ACTIVATION_ALIASES[act] : undefined;
  if (actFn === undefined || !ACTIVATION_FUNCTIONS.includes(actFn)) {
    throw new UserError(
      `${file}: field "activation_function" ${JSON.stringify(act)} is not supported ` +
        `(supported: ${Object.keys(ACTIVATION_ALIASES).join(', ')})`,
    );
  }
  // Variants of the attention that this forward does not implement; refuse rather than compute wrongly.
  const unsupported: [string, unknown][] = [
    ['scale_attn_weights', true],
    ['scale_attn_by_inverse_layer_idx', false],
    ['add_cross_attention', false],
  ];
  for (const [key, wanted] of unsupported) {
    if (j[key] !== undefined && j[key] !== wanted) {
      throw new UserError(
        `${file}: field "${key}" = ${JSON.stringify(j[key])} is not supported (only ${wanted})`,
      );
    }
  }
  return {
    family: 'gpt2',
    nLayers,
    dModel,
    nHeads,
    nKvHeads: nHeads,
    dHead: dModel / nHeads,
    dMlp,
    vocabSize,
    nCtx,
    eps,
    act: actFn,
    hooks: GPT2_HOOKS,
    extra: {},
  };
}

/** Every tensor a GPT-2 needs, by its key without the `transformer.` prefix, with the expected shape. */
export function expectedGpt2Tensors(config: ModelConfig): Map<string, number[]> {
  const d = config.dModel;
  const m = new Map<string, number[]>([
    ['wte.weight', [config.vocabSize, d]],
    ['wpe.weight', [config.nCtx, d]],
  ]);
  for (let l = 0; l < config.nLayers; l++) {
    const p = `h.${l}.`;
    m.set(`${p}ln_1.weight`, [d]);
    m.set(`${p}ln_1.bias`, [d]);
    m.set(`${p}attn.c_attn.weight`, [d, 3 * d]);
    m.set(`${p}attn.c_attn.bias`, [3 * d]);
    m.set(`${p}attn.c_proj.weight`, [d, d]);
    m.set(`${p}attn.c_proj.bias`, [d]);
    m.set(`${p}ln_2.weight`, [d]);
    m.set(`${p}ln_2.bias`, [d]);
    m.set(`${p}mlp.c_fc.weight`, [d, config.dMlp]);
    m.set(`${p}mlp.c_fc.bias`, [config.dMlp]);
    m.set(`${p}mlp.c_proj.weight`, [config.dMlp, d]);
    m.set(`${p}mlp.c_proj.bias`, [d]);
  }
  m.set('ln_f.weight', [d]);
  m.set('ln_f.bias', [d]);
  return m;
}

const PREFIX = 'transformer.';
const LM_HEAD = 'lm_head.weight';

/**
 * Loads and validates GPT-2 weights from `dir`. Keys may carry the `transformer.` prefix or not; the
 * `attn.bias`/`attn.masked_bias` mask buffers and unknown extras are ignored; an `lm_head.weight`, if
 * present, must equal `wte.weight` (the unembedding is tied). F16/BF16/F64 are widened to float32.
 */
export async function loadGpt2Weights(dir: string, config: ModelConfig): Promise<Gpt2Weights> {
  const ckpt = await Checkpoint.open(dir);
  const prefix = ckpt.has(`${PREFIX}wte.weight`) ? PREFIX : '';
  const expected = new Map([...expectedGpt2Tensors(config)].map(([k, s]) => [prefix + k, s]));
  const lmHeadKey = ckpt.has(LM_HEAD) ? LM_HEAD : ckpt.has(PREFIX + LM_HEAD) ? PREFIX + LM_HEAD : undefined;
  if (lmHeadKey !== undefined) expected.set(lmHeadKey, [config.vocabSize, config.dModel]);
  const values = await ckpt.read(expected);
  const get = (name: string): Float32Array => values.get(prefix + name)!;

  if (lmHeadKey !== undefined) {
    const lmHead = values.get(lmHeadKey)!;
    const wte = get('wte.weight');
    for (let i = 0; i < wte.length; i++) {
      if (lmHead[i] !== wte[i] && !(Number.isNaN(lmHead[i]) && Number.isNaN(wte[i]))) {
        throw new UserError(
          `${ckpt.fileOf(lmHeadKey)}: '${lmHeadKey}' differs from '${prefix}wte.weight' (first at element ${i}); ` +
            'only GPT-2 with the unembedding tied to the token embedding is supported',
        );
      }
    }
  }

  const ln = (p: string): LayerNormWeights => ({ weight: get(`${p}.weight`), bias: get(`${p}.bias`) });
  const lin = (p: string): LinearWeights => ({ weight: get(`${p}.weight`), bias: get(`${p}.bias`) });
  const blocks: Gpt2BlockWeights[] = [];
  for (let l = 0; l < config.nLayers; l++) {
    const p = `h.${l}.`;
    blocks.push({
      ln1: ln(`${p}ln_1`),
      attnQkv: lin(`${p}attn.c_attn`),
      attnOut: lin(`${p}attn.c_proj`),
      ln2: ln(`${p}ln_2`),
      mlpIn: lin(`${p}mlp.c_fc`),
      mlpOut: lin(`${p}mlp.c_proj`),
    });
  }
  const wte = get('wte.weight');
  return { wte, unembed: wte, wpe: get('wpe.weight'), blocks, lnFinal: ln('ln_f') };
}

function centerWriter(lin: LinearWeights, dModel: number): LinearWeights {
  // Conv1D weight is [in, d_model]: each row is what one input unit writes, so centre along the row.
  return { weight: centerRows(lin.weight, dModel), bias: centerRows(lin.bias, dModel) };
}

/** See process-weights.ts for what each processing means. */
export function processGpt2Weights(
  weights: Gpt2Weights,
  config: ModelConfig,
  processing: WeightProcessing,
): Gpt2Weights {
  switch (processing) {
    case 'none':
      return weights;
    case 'center_writing_weights': {
      const d = config.dModel;
      return {
        wte: centerRows(weights.wte, d),
        // W_U is read from the residual stream, not written to it: TransformerLens leaves it alone here.
        unembed: weights.unembed,
        wpe: centerRows(weights.wpe, d),
        blocks: weights.blocks.map((b) => ({
          ...b,
          attnOut: centerWriter(b.attnOut, d),
          mlpOut: centerWriter(b.mlpOut, d),
        })),
        lnFinal: weights.lnFinal,
      };
    }
    default:
      throw new UserError(`unknown weight processing ${JSON.stringify(processing satisfies never)}`);
  }
}

/** The key of the token embedding: shared with the unembedding while they are one array (stored once). */
function embeddingKey(w: Gpt2Weights): string {
  return w.wte === w.unembed ? 'W_E_U' : 'W_E';
}

function layerNorm<T>(o: Ops<T>, key: string, w: LayerNormWeights, x: T, eps: number): T {
  const d = w.weight.length;
  return o.layerNorm(x, o.constant(`${key}.w`, [d], w.weight), o.constant(`${key}.b`, [d], w.bias), eps);
}

function linear<T>(o: Ops<T>, key: string, w: LinearWeights, x: T): T {
  const n = w.bias.length;
  const k = w.weight.length / n;
  return o.linear(x, o.constant(`${key}.W`, [k, n], w.weight), { bias: o.constant(`${key}.b`, [n], w.bias) });
}

export const gpt2Family: ModelFamily<Gpt2Weights> = {
  name: 'gpt2',
  modelTypes: ['gpt2'],
  architectures: ['GPT2LMHeadModel', 'GPT2Model'],
  processings: ['none', 'center_writing_weights'],
  parseConfig,
  loadWeights: loadGpt2Weights,
  processWeights: processGpt2Weights,

  weightArrays(w) {
    const arrays = [w.wte, w.unembed, w.wpe, w.lnFinal.weight, w.lnFinal.bias];
    for (const b of w.blocks) {
      for (const p of [b.ln1, b.attnQkv, b.attnOut, b.ln2, b.mlpIn, b.mlpOut]) arrays.push(p.weight, p.bias);
    }
    return arrays;
  },

  dashboardWeights(w, config, layers): DashboardWeights {
    return collectDashboardWeights(
      config,
      { unembed: w.unembed, lnFinalWeight: w.lnFinal.weight },
      layers,
      (l) => {
        const b = w.blocks[l];
        return b && { attnOut: b.attnOut.weight, mlpOut: b.mlpOut.weight };
      },
    );
  },

  embed<T>(o: Ops<T>, c: ModelConfig, w: Gpt2Weights, ids: T, hook: HookFn<T>): ForwardStart<T> | undefined {
    const embed = hook(
      'hook_embed',
      o.gather(o.constant(embeddingKey(w), [c.vocabSize, c.dModel], w.wte), ids),
    );
    if (embed === undefined) return undefined;
    // TransformerLens repeats the position embedding over the batch; the sum broadcasts the [seq, d] rows
    // unless a replacement came back, so an uncaptured hook costs no repeated copy (the graph drops it).
    const positions = o.sliceLike(o.constant('W_pos', [c.nCtx, c.dModel], w.wpe), ids, 1);
    const repeated = o.expandLike(positions, embed);
    const pos = hook('hook_pos_embed', repeated);
    if (pos === undefined) return undefined;
    return { x: o.add(embed, pos === repeated ? positions : pos), state: { mask: o.causalMask(ids, 1) } };
  },

  block<T>(
    o: Ops<T>,
    c: ModelConfig,
    w: Gpt2Weights,
    l: number,
    x: T,
    state: Record<string, T>,
    hook: HookFn<T>,
  ): T | undefined {
    const b = w.blocks[l]!;
    const p = `blocks.${l}.`;
    const d = c.dModel;
    const resid = hook(`${p}hook_resid_pre`, x);
    if (resid === undefined) return undefined;
    const ln1 = hook(`${p}ln1.hook_normalized`, layerNorm(o, `${p}ln1`, b.ln1, resid, c.eps));
    if (ln1 === undefined) return undefined;
    const [qFlat, kFlat, vFlat] = o.split(linear(o, `${p}attn.qkv`, b.attnQkv, ln1), [d, d, d]);
    const heads = [0, 0, c.nHeads, c.dHead];
    const q = hook(`${p}attn.hook_q`, o.reshape(qFlat!, heads));
    if (q === undefined) return undefined;
    const k = hook(`${p}attn.hook_k`, o.reshape(kFlat!, heads));
    if (k === undefined) return undefined;
    const v = hook(`${p}attn.hook_v`, o.reshape(vFlat!, heads));
    if (v === undefined) return undefined;
    const z = hook(
      `${p}attn.hook_z`,
      causalAttention(o, q, k, v, state.mask!, { scale: 1 / Math.sqrt(c.dHead) }),
    );
    if (z === undefined) return undefined;
    const attnOut = hook(`${p}hook_attn_out`, linear(o, `${p}attn.out`, b.attnOut, o.reshape(z, [0, 0, d])));
    if (attnOut === undefined) return undefined;
    const mid = hook(`${p}hook_resid_mid`, o.add(resid, attnOut));
    if (mid === undefined) return undefined;
    const ln2 = hook(`${p}ln2.hook_normalized`, layerNorm(o, `${p}ln2`, b.ln2, mid, c.eps));
    if (ln2 === undefined) return undefined;
    const pre = hook(`${p}mlp.hook_pre`, linear(o, `${p}mlp.in`, b.mlpIn, ln2));
    if (pre === undefined) return undefined;
    const post = hook(`${p}mlp.hook_post`, activation(o, pre, c.act));
    if (post === undefined) return undefined;
    const mlpOut = hook(`${p}hook_mlp_out`, linear(o, `${p}mlp.out`, b.mlpOut, post));
    if (mlpOut === undefined) return undefined;
    return hook(`${p}hook_resid_post`, o.add(mid, mlpOut));
  },

  final<T>(o: Ops<T>, c: ModelConfig, w: Gpt2Weights, x: T, hook: HookFn<T>): T | undefined {
    return hook('ln_final.hook_normalized', layerNorm(o, 'ln_final', w.lnFinal, x, c.eps));
  },

  unembed<T>(o: Ops<T>, c: ModelConfig, w: Gpt2Weights, x: T): T {
    const key = w.wte === w.unembed ? embeddingKey(w) : 'W_U_T';
    return o.linear(x, o.constant(key, [c.vocabSize, c.dModel], w.unembed), { transB: true });
  },
};
