/**
 * Builds an ONNX graph (opset 17, float32) of GPT-2 forwards from hook-points.ts run plans: the captured
 * hooks become graph outputs named after the hook, in their TransformerLens shapes, and nothing past the
 * deepest one is built unless logits are wanted. Weights become initializers that view the caller's arrays
 * (no copy until the model is encoded).
 *
 * One graph may hold several forwards of the same tokens (a clean one and patched ones, for the
 * evaluator): forward i's tensors and outputs are prefixed `forward<i>/` (none for forward 0), identical
 * nodes are built once (sharing-builder.ts), so a forward with a replaced hook recomputes only what comes
 * after that hook, and later forwards can compare their predictions with forward 0's (KL) inside the graph.
 *
 * Activations stay [batch, seq, width] throughout, so the residual-width and MLP hooks need no reshape;
 * q/k/v/z are reshaped to [batch, seq, heads, d_head] once, which is both their hook shape and what the
 * attention wants before its transposes.
 */
import type { Gpt2Config } from '../../model/gpt2-config.js';
import type { Gpt2Weights, LayerNormWeights, LinearWeights } from '../../model/gpt2-weights.js';
import { hookShape, parseHookName } from '../../model/hook-points.js';
import type { HookSite, RunPlan } from '../../model/hook-points.js';
import { klDivergence, logProbabilities, nextTokenLoss, probabilities } from './loss-graph.js';
import { ONNX_IR_VERSION, ONNX_OPSET, TensorElemType } from './onnx-proto.js';
import type { OnnxModel, OnnxValueInfo } from './onnx-proto.js';
import { checkReplacement, emitSae } from './replacement-graph.js';
import type { HookReplacement, OnnxSae } from './replacement-graph.js';
import { SharingGraphBuilder } from './sharing-builder.js';

export const INPUT_IDS = 'input_ids';
/** Float [batch, seq]: 1 where SAE replacements apply, 0 where the original activation is kept. */
export const KEEP_MASK = 'keep';
export const LOGITS = 'logits';
export const LOSS = 'loss_per_token';
export const KL = 'kl';
/** TensorProto.DataType BOOL, for Cast (onnx-proto.ts lists only the types of initializers and inputs). */
const BOOL = 9;

/** One forward of a graph. */
export interface ForwardSpec {
  /** Hooks to capture and how far to run (planRun); with logits, loss or KL it runs to the end. */
  plan: RunPlan;
  /** Hook name -> replacement; the forward continues from the replaced value. */
  interventions?: Readonly<Record<string, HookReplacement>>;
  logits?: boolean;
  /** Next-token cross-entropy [batch, seq - 1]. */
  loss?: boolean;
  /** KL(forward 0's next-token distribution ‖ this forward's) at every position, [batch, seq]. */
  kl?: boolean;
}

export interface Gpt2Graph {
  model: OnnxModel;
  /** Graph outputs in order: per forward its captured hooks (execution order), then logits, loss, KL, SAEs. */
  outputNames: string[];
  /** Whether the graph reads the KEEP_MASK input. */
  usesKeepMask: boolean;
}

/** Prefix of forward i's tensor and output names. */
export function forwardPrefix(i: number): string {
  return i === 0 ? '' : `forward${i}/`;
}

/** Output names of the SAE replacing `hook` in a forward: features [rows, d_sae], reconstruction [rows, d_out]. */
export function saeOutputNames(prefix: string, hook: string): { features: string; reconstruction: string } {
  return { features: `${prefix}${hook}/sae_features`, reconstruction: `${prefix}${hook}/sae_reconstruction` };
}

/** Symbolic batch/seq markers passed to hookShape so the one shape rule yields symbolic dims. */
const BATCH = -1;
const SEQ = -2;

function symbolicShape(config: Gpt2Config, site: HookSite): Array<number | string> {
  return hookShape(config, site, BATCH, SEQ).map((d) => (d === BATCH ? 'batch' : d === SEQ ? 'seq' : d));
}

const float = (name: string, dims: Array<number | string>): OnnxValueInfo => ({
  name,
  elemType: TensorElemType.FLOAT,
  dims,
});

/** Builds the graph of one forward for `plan` (from `planRun`) over already processed weights. */
export function buildGpt2Graph(config: Gpt2Config, weights: Gpt2Weights, plan: RunPlan): Gpt2Graph {
  return buildGpt2Forwards(config, weights, [{ plan, logits: plan.needLogits }]);
}

/**
 * Builds one graph holding every forward of `forwards` over the same input ids. Replacements are checked
 * first (UserErrors naming the hook or SAE).
 */
export function buildGpt2Forwards(
  config: Gpt2Config,
  weights: Gpt2Weights,
  forwards: readonly ForwardSpec[],
): Gpt2Graph {
  for (const f of forwards) {
    for (const [hook, r] of Object.entries(f.interventions ?? {})) checkReplacement(config, hook, r);
  }
  if (forwards[0]?.kl) throw new Error('buildGpt2Forwards: forward 0 is the KL reference');

  const b = new SharingGraphBuilder();
  const outputs: OnnxValueInfo[] = [];
  const saeIds = new Map<OnnxSae, string>();
  let usesKeepMask = false;
  let reference: { probs: string; logProbs: string } | undefined;
  // Forward 0 then runs to its logits whatever its plan, as the reference distribution.
  const anyKl = forwards.some((f) => f.kl);

  forwards.forEach((f, i) => {
    const prefix = forwardPrefix(i);
    const interventions = f.interventions ?? {};
    const intervened = new Set(Object.keys(interventions));
    /** Each hook's value as the forward computed it, before any replacement there (SAE inputs)... */
    const original = new Map<string, string>();
    /** ...and what the forward continued with (captures). */
    const after = new Map<string, string>();
    const replaced: Array<{ hook: string; sae: { features: string; reconstruction: string } }> = [];

    const atHook = (hook: string, value: string): string => {
      original.set(hook, value);
      const out = replace(hook, value);
      after.set(hook, out);
      return out;
    };
    const replace = (hook: string, value: string): string => {
      const r = interventions[hook];
      if (!r) return value;
      const rank = hookShape(config, parseHookName(config, hook).site, 1, 1).length;
      if (r.kind === 'zero') {
        return b.op('ConstantOfShape', [b.op('Shape', [value], prefix)], prefix, `${prefix}${hook}`, {
          value: {
            kind: 'tensor',
            value: { name: 'zero', dims: [1], elemType: TensorElemType.FLOAT, data: Float32Array.of(0) },
          },
        });
      }
      let id = saeIds.get(r.sae);
      if (id === undefined) {
        id = `sae${saeIds.size}`;
        saeIds.set(r.sae, id);
      }
      const input = original.get(r.input ?? hook)!;
      const sae = emitSae(b, r.sae, id, input);
      replaced.push({ hook, sae });
      const shaped = b.op('Reshape', [sae.reconstruction, b.op('Shape', [value], prefix)], prefix);
      usesKeepMask = true;
      const keep = b.op('Cast', [KEEP_MASK], 'keep', undefined, { to: { kind: 'int', value: BOOL } });
      const axes = rank === 4 ? b.int64('c.axes_2_3', [2, 3]) : b.int64('c.two', [2]);
      const mask = b.op('Unsqueeze', [keep, axes], 'keep');
      return b.op('Where', [mask, shaped, value], prefix, `${prefix}${hook}`);
    };

    const touched = new Set(f.plan.touched.keys());
    const needFinal = f.plan.needLogits || f.logits || f.loss || f.kl || (i === 0 && anyKl);
    const stopAfter = needFinal ? Infinity : f.plan.stopAfter;
    const final = emitForward(b, config, weights, { prefix, intervened, touched, stopAfter, atHook });

    for (const h of f.plan.capture) {
      const value = after.get(h.name);
      if (value === undefined) throw new Error(`buildGpt2Forwards: ${h.name} was not reached`);
      b.alias(value, `${prefix}${h.name}`);
      outputs.push(float(`${prefix}${h.name}`, symbolicShape(config, h.site)));
    }

    if (needFinal) {
      if (final === undefined) throw new Error('buildGpt2Forwards: the forward stopped before the logits');
      const logits = unembed(b, config, weights, final, prefix);
      if (f.logits) {
        b.alias(logits, `${prefix}${LOGITS}`);
        outputs.push(float(`${prefix}${LOGITS}`, ['batch', 'seq', config.vocabSize]));
      }
      const logProbs =
        f.loss || f.kl || (i === 0 && anyKl) ? logProbabilities(b, logits, `${prefix}head`) : '';
      if (i === 0 && anyKl) reference = { probs: probabilities(b, logits, 'head'), logProbs };
      if (f.loss) {
        b.alias(
          nextTokenLoss(b, logProbs, INPUT_IDS, `${prefix}head`, `${prefix}${LOSS}`),
          `${prefix}${LOSS}`,
        );
        outputs.push(float(`${prefix}${LOSS}`, ['batch', 'seq_minus_1']));
      }
      if (f.kl) {
        b.alias(klDivergence(b, reference!, logProbs, `${prefix}head`, `${prefix}${KL}`), `${prefix}${KL}`);
        outputs.push(float(`${prefix}${KL}`, ['batch', 'seq']));
      }
    }
    for (const { hook, sae } of replaced) {
      const names = saeOutputNames(prefix, hook);
      b.alias(sae.features, names.features);
      b.alias(sae.reconstruction, names.reconstruction);
      const r = interventions[hook] as Extract<HookReplacement, { kind: 'sae' }>;
      outputs.push(float(names.features, ['rows', r.sae.config.d_sae]));
      outputs.push(float(names.reconstruction, ['rows', r.sae.config.d_out ?? r.sae.config.d_in]));
    }
  });

  const inputs: OnnxValueInfo[] = [
    { name: INPUT_IDS, elemType: TensorElemType.INT32, dims: ['batch', 'seq'] },
  ];
  if (usesKeepMask) inputs.push(float(KEEP_MASK, ['batch', 'seq']));
  return {
    model: {
      graph: { name: 'gpt2', nodes: b.nodes, initializers: b.initializers, inputs, outputs },
      opset: ONNX_OPSET,
      irVersion: ONNX_IR_VERSION,
      producer: 'saeflow',
    },
    outputNames: outputs.map((o) => o.name),
    usesKeepMask,
  };
}

interface ForwardEmit {
  prefix: string;
  /** Hooks with a replacement: their computed value is named `<hook>.original`, the replacement `<hook>`. */
  intervened: ReadonlySet<string>;
  /** Hooks captured or replaced (hook_pos_embed then takes its repeated-over-the-batch shape). */
  touched: ReadonlySet<string>;
  /** Execution-order index after which the forward may stop; Infinity runs to ln_final. */
  stopAfter: number;
  /** Called at every hook as the forward reaches it; returns the tensor the forward continues with. */
  atHook(hook: string, value: string): string;
}

/** Emits one forward; returns the ln_final output, or undefined where it stopped earlier. */
function emitForward(
  b: SharingGraphBuilder,
  config: Gpt2Config,
  weights: Gpt2Weights,
  o: ForwardEmit,
): string | undefined {
  const d = config.nEmbd;
  const eps = config.layerNormEpsilon;
  const fp = o.prefix;
  let order = 0;
  const nameOf = (hook: string): string =>
    o.intervened.has(hook) ? `${fp}${hook}.original` : `${fp}${hook}`;
  /**
   * Passes `value` through the hook; returns what the forward continues with, or undefined once it may
   * stop. The check against parseHookName keeps this walk in step with hook-points.ts's execution order.
   */
  const hook = (name: string, value: string): string | undefined => {
    if (parseHookName(config, name).order !== order) throw new Error(`buildGpt2Graph: ${name} out of order`);
    const out = o.atHook(name, value);
    return order++ >= o.stopAfter ? undefined : out;
  };

  const layerNorm = (x: string, w: LayerNormWeights, scope: string, output: string): string =>
    b.op(
      'LayerNormalization',
      [x, b.constant(`${scope}.w`, [d], w.weight), b.constant(`${scope}.b`, [d], w.bias)],
      `${fp}${scope}`,
      output,
      { axis: { kind: 'int', value: -1 }, epsilon: { kind: 'float', value: eps } },
    );
  const linear = (x: string, w: LinearWeights, rows: number, scope: string, output?: string): string => {
    const cols = w.bias.length;
    const y = b.op('MatMul', [x, b.constant(`${scope}.W`, [rows, cols], w.weight)], `${fp}${scope}`);
    return b.op('Add', [y, b.constant(`${scope}.b`, [cols], w.bias)], `${fp}${scope}`, output);
  };

  // Embedding. Gather reads rows of the [vocab, d] matrix directly; wte and the unembedding share one
  // initializer when they are the same array (unprocessed weights), so the largest matrix is stored once.
  const wte = embeddingName(b, config, weights);
  const embed = hook(
    'hook_embed',
    b.op('Gather', [wte, INPUT_IDS], `${fp}embed`, nameOf('hook_embed'), { axis: { kind: 'int', value: 0 } }),
  );
  if (embed === undefined) return undefined;

  const idsShape = b.op('Shape', [INPUT_IDS], 'pos');
  const seqLen = b.op('Slice', [idsShape, b.int64('c.one', [1]), b.int64('c.two', [2])], 'pos');
  const wpe = b.constant('W_pos', [config.nPositions, d], weights.wpe);
  let pos = b.op('Slice', [wpe, b.int64('c.zero', [0]), seqLen, b.int64('c.zero', [0])], 'pos');
  if (o.touched.has('hook_pos_embed')) {
    // TransformerLens repeats the position embedding over the batch.
    pos = b.op('Expand', [pos, b.op('Shape', [embed], `${fp}pos`)], `${fp}pos`, nameOf('hook_pos_embed'));
  }
  const posEmbed = hook('hook_pos_embed', pos);
  if (posEmbed === undefined) return undefined;
  let x = b.op('Add', [embed, posEmbed], `${fp}embed`, nameOf('blocks.0.hook_resid_pre'));

  // Causal mask [seq, seq]: 0 on and below the diagonal, -inf above (Trilu keeps k >= 1 above it).
  const square = b.op('Concat', [seqLen, seqLen], 'mask', undefined, { axis: { kind: 'int', value: 0 } });
  const full = b.op('ConstantOfShape', [square], 'mask', undefined, {
    value: {
      kind: 'tensor',
      value: { name: 'neg_inf', dims: [1], elemType: TensorElemType.FLOAT, data: Float32Array.of(-Infinity) },
    },
  });
  const mask = b.op('Trilu', [full, b.int64('c.one_scalar', [1], true)], 'mask', undefined, {
    upper: { kind: 'int', value: 1 },
  });

  for (let l = 0; l < config.nLayer; l++) {
    const out = block(l, x, mask);
    if (out === undefined) return undefined;
    x = out;
  }
  return hook(
    'ln_final.hook_normalized',
    layerNorm(x, weights.lnFinal, 'ln_final', nameOf('ln_final.hook_normalized')),
  );

  function block(l: number, residIn: string, mask: string): string | undefined {
    const w = weights.blocks[l]!;
    const p = `blocks.${l}.`;
    const scope = `${fp}${p}attn`;
    const { nHead: heads, dHead } = config;
    const residPre = l > 0 ? b.op('Identity', [residIn], `${fp}${p}`, nameOf(`${p}hook_resid_pre`)) : residIn;
    const resid = hook(`${p}hook_resid_pre`, residPre);
    if (resid === undefined) return undefined;
    const ln1 = hook(
      `${p}ln1.hook_normalized`,
      layerNorm(resid, w.ln1, `${p}ln1`, nameOf(`${p}ln1.hook_normalized`)),
    );
    if (ln1 === undefined) return undefined;
    // One [d, 3d] matmul for q, k and v, then a split: fewer, larger GEMMs.
    const qkv = linear(ln1, w.attnQkv, d, `${p}attn.qkv`);
    const headShape = b.int64('c.head_shape', [0, 0, heads, dHead]);
    const parts = b.multi('Split', [qkv, b.int64('c.split_qkv', [d, d, d])], scope, 3, {
      axis: { kind: 'int', value: -1 },
    });
    const q = hook(
      `${p}attn.hook_q`,
      b.op('Reshape', [parts[0]!, headShape], scope, nameOf(`${p}attn.hook_q`)),
    );
    if (q === undefined) return undefined;
    const k = hook(
      `${p}attn.hook_k`,
      b.op('Reshape', [parts[1]!, headShape], scope, nameOf(`${p}attn.hook_k`)),
    );
    if (k === undefined) return undefined;
    const v = hook(
      `${p}attn.hook_v`,
      b.op('Reshape', [parts[2]!, headShape], scope, nameOf(`${p}attn.hook_v`)),
    );
    if (v === undefined) return undefined;

    const perm = (t: string, order: number[]): string =>
      b.op('Transpose', [t], scope, undefined, { perm: { kind: 'ints', value: order } });
    // Scale q rather than the [seq, seq] scores: fewer multiplies, same numbers up to rounding.
    const qs = b.op('Mul', [q, b.scalar('c.attn_scale', 1 / Math.sqrt(dHead))], scope);
    const scores = b.op('MatMul', [perm(qs, [0, 2, 1, 3]), perm(k, [0, 2, 3, 1])], scope);
    const probs = b.op('Softmax', [b.op('Add', [scores, mask], scope)], scope, undefined, {
      axis: { kind: 'int', value: -1 },
    });
    const zh = b.op('MatMul', [probs, perm(v, [0, 2, 1, 3])], scope);
    const z = hook(
      `${p}attn.hook_z`,
      b.op('Transpose', [zh], scope, nameOf(`${p}attn.hook_z`), {
        perm: { kind: 'ints', value: [0, 2, 1, 3] },
      }),
    );
    if (z === undefined) return undefined;
    const zFlat = b.op('Reshape', [z, b.int64('c.model_shape', [0, 0, d])], scope);
    const attnOut = hook(
      `${p}hook_attn_out`,
      linear(zFlat, w.attnOut, d, `${p}attn.out`, nameOf(`${p}hook_attn_out`)),
    );
    if (attnOut === undefined) return undefined;
    const mid = hook(
      `${p}hook_resid_mid`,
      b.op('Add', [resid, attnOut], `${fp}${p}`, nameOf(`${p}hook_resid_mid`)),
    );
    if (mid === undefined) return undefined;
    const ln2 = hook(
      `${p}ln2.hook_normalized`,
      layerNorm(mid, w.ln2, `${p}ln2`, nameOf(`${p}ln2.hook_normalized`)),
    );
    if (ln2 === undefined) return undefined;
    const pre = hook(`${p}mlp.hook_pre`, linear(ln2, w.mlpIn, d, `${p}mlp.in`, nameOf(`${p}mlp.hook_pre`)));
    if (pre === undefined) return undefined;
    const post = hook(`${p}mlp.hook_post`, activation(pre, `${fp}${p}mlp`, nameOf(`${p}mlp.hook_post`)));
    if (post === undefined) return undefined;
    const mlpOut = hook(
      `${p}hook_mlp_out`,
      linear(post, w.mlpOut, config.dMlp, `${p}mlp.out`, nameOf(`${p}hook_mlp_out`)),
    );
    if (mlpOut === undefined) return undefined;
    return hook(
      `${p}hook_resid_post`,
      b.op('Add', [mid, mlpOut], `${fp}${p}`, nameOf(`${p}hook_resid_post`)),
    );
  }

  function activation(x: string, scope: string, output: string): string {
    switch (config.activationFunction) {
      case 'gelu_new': {
        // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), HF's NewGELUActivation.
        const cube = b.op('Mul', [b.op('Mul', [x, x], scope), x], scope);
        const inner = b.op('Add', [x, b.op('Mul', [cube, b.scalar('c.gelu_k', 0.044715)], scope)], scope);
        const t = b.op(
          'Tanh',
          [b.op('Mul', [inner, b.scalar('c.sqrt_2_pi', Math.sqrt(2 / Math.PI))], scope)],
          scope,
        );
        const half = b.op('Mul', [x, b.scalar('c.half', 0.5)], scope);
        return b.op('Mul', [half, b.op('Add', [t, b.scalar('c.one_f', 1)], scope)], scope, output);
      }
      case 'gelu': {
        const e = b.op('Erf', [b.op('Mul', [x, b.scalar('c.sqrt_half', Math.SQRT1_2)], scope)], scope);
        const half = b.op('Mul', [x, b.scalar('c.half', 0.5)], scope);
        return b.op('Mul', [half, b.op('Add', [e, b.scalar('c.one_f', 1)], scope)], scope, output);
      }
      case 'relu':
        return b.op('Relu', [x], scope, output);
    }
  }
}

function embeddingName(b: SharingGraphBuilder, config: Gpt2Config, weights: Gpt2Weights): string {
  const name = weights.wte === weights.unembed ? 'W_E_U' : 'W_E';
  return b.constant(name, [config.vocabSize, config.nEmbd], weights.wte);
}

/** Logits [batch, seq, vocab] from ln_final's output. */
function unembed(
  b: SharingGraphBuilder,
  config: Gpt2Config,
  weights: Gpt2Weights,
  final: string,
  prefix: string,
): string {
  const d = config.nEmbd;
  const scope = `${prefix}unembed`;
  // Gemm with transB reads the [vocab, d] unembedding as is (no transposed copy of the largest matrix).
  const wu =
    weights.wte === weights.unembed
      ? embeddingName(b, config, weights)
      : b.constant('W_U_T', [config.vocabSize, d], weights.unembed);
  const rows = b.op('Reshape', [final, b.int64('c.rows_shape', [-1, d])], scope);
  const flat = b.op('Gemm', [rows, wu], scope, undefined, { transB: { kind: 'int', value: 1 } });
  const shape = b.op(
    'Concat',
    [b.op('Shape', [INPUT_IDS], 'unembed'), b.int64('c.vocab', [config.vocabSize])],
    'unembed',
    undefined,
    { axis: { kind: 'int', value: 0 } },
  );
  return b.op('Reshape', [flat, shape], scope, `${prefix}${LOGITS}`);
}
