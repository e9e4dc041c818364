/**
 * Builds an ONNX graph (opset 17, float32) of the GPT-2 forward for one run plan from hook-points.ts: the
 * captured hooks become graph outputs named after the hook, in their TransformerLens shapes, and nothing
 * past the deepest one is built unless logits are wanted. Weights become initializers that view the
 * caller's arrays (no copy until the model is encoded).
 *
 * Activations stay [batch, seq, width] throughout, so the residual-width and MLP hooks need no reshape;
 * q/k/v/z are reshaped to [batch, seq, heads, d_head] once, which is both their hook shape and what the
 * attention wants before its transposes.
 */
import type { Gpt2Config } from '../../model/gpt2-config.js';
import type { Gpt2Weights, LayerNormWeights, LinearWeights } from '../../model/gpt2-weights.js';
import { hookShape, parseHookName } from '../../model/hook-points.js';
import type { HookSite, RunPlan } from '../../model/hook-points.js';
import { GraphBuilder } from './graph-builder.js';
import { TensorElemType } from './onnx-proto.js';
import type { OnnxModel, OnnxValueInfo } from './onnx-proto.js';

export const INPUT_IDS = 'input_ids';
export const LOGITS = 'logits';
const OPSET = 17;
/** IR version 8 is the one that goes with opset 17. */
const IR_VERSION = 8;

export interface Gpt2Graph {
  model: OnnxModel;
  /** Graph outputs in order: the captured hooks (execution order), then `logits` if asked for. */
  outputNames: string[];
}

/** Symbolic batch/seq markers passed to hookShape so the one shape rule yields symbolic dims. */
const BATCH = -1;
const SEQ = -2;

function symbolicShape(config: Gpt2Config, site: HookSite): Array<number | string> {
  return hookShape(config, site, BATCH, SEQ).map((d) => (d === BATCH ? 'batch' : d === SEQ ? 'seq' : d));
}

/** Builds the graph for `plan` (from `planRun`) over already processed weights. */
export function buildGpt2Graph(config: Gpt2Config, weights: Gpt2Weights, plan: RunPlan): Gpt2Graph {
  const b = new GraphBuilder();
  const d = config.nEmbd;
  const eps = config.layerNormEpsilon;
  const captured = new Set(plan.capture.map((h) => h.name));
  let order = 0;
  /**
   * Called at every hook as the graph reaches it; true once the forward may stop. The check against
   * parseHookName keeps this builder's walk in step with hook-points.ts's execution order.
   */
  const passed = (hook: string): boolean => {
    if (parseHookName(config, hook).order !== order) throw new Error(`buildGpt2Graph: ${hook} out of order`);
    return order++ >= plan.stopAfter;
  };

  const layerNorm = (x: string, w: LayerNormWeights, prefix: string, output: string): string =>
    b.op(
      'LayerNormalization',
      [x, b.constant(`${prefix}.w`, [d], w.weight), b.constant(`${prefix}.b`, [d], w.bias)],
      prefix,
      output,
      { axis: { kind: 'int', value: -1 }, epsilon: { kind: 'float', value: eps } },
    );
  const linear = (x: string, w: LinearWeights, rows: number, prefix: string, output?: string): string => {
    const cols = w.bias.length;
    const y = b.op('MatMul', [x, b.constant(`${prefix}.W`, [rows, cols], w.weight)], prefix);
    return b.op('Add', [y, b.constant(`${prefix}.b`, [cols], w.bias)], prefix, output);
  };

  const ids = INPUT_IDS;
  // Embedding. Gather reads rows of the [vocab, d] matrix directly; wte and the unembedding share one
  // initializer when they are the same array (unprocessed weights), so the largest matrix is stored once.
  const wteName = weights.wte === weights.unembed ? 'W_E_U' : 'W_E';
  const wte = b.constant(wteName, [config.vocabSize, d], weights.wte);
  const embed = b.op('Gather', [wte, ids], 'embed', 'hook_embed', { axis: { kind: 'int', value: 0 } });
  const resid = passed(embed) ? undefined : embedAndBlocks();

  function embedAndBlocks(): string | undefined {
    const idsShape = b.op('Shape', [ids], 'pos');
    const seqLen = b.op('Slice', [idsShape, b.int64('c.one', [1]), b.int64('c.two', [2])], 'pos');
    const wpe = b.constant('W_pos', [config.nPositions, d], weights.wpe);
    const pos = b.op('Slice', [wpe, b.int64('c.zero', [0]), seqLen, b.int64('c.zero', [0])], 'pos');
    if (captured.has('hook_pos_embed')) {
      // TransformerLens repeats the position embedding over the batch.
      b.op('Expand', [pos, b.op('Shape', [embed], 'pos')], 'pos', 'hook_pos_embed');
    }
    if (passed('hook_pos_embed')) return undefined;
    let x = b.op('Add', [embed, pos], 'embed', 'blocks.0.hook_resid_pre');

    // Causal mask [seq, seq]: 0 on and below the diagonal, -inf above (Trilu keeps k >= 1 above it).
    const square = b.op('Concat', [seqLen, seqLen], 'mask', undefined, { axis: { kind: 'int', value: 0 } });
    const full = b.op('ConstantOfShape', [square], 'mask', undefined, {
      value: {
        kind: 'tensor',
        value: {
          name: 'neg_inf',
          dims: [1],
          elemType: TensorElemType.FLOAT,
          data: Float32Array.of(-Infinity),
        },
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
    return x;
  }

  function block(l: number, residPre: string, mask: string): string | undefined {
    const w = weights.blocks[l]!;
    const p = `blocks.${l}.`;
    const { nHead: heads, dHead } = config;
    if (l > 0) b.op('Identity', [residPre], p, `${p}hook_resid_pre`);
    const resid = `${p}hook_resid_pre`;
    if (passed(resid)) return undefined;
    const ln1 = layerNorm(resid, w.ln1, `${p}ln1`, `${p}ln1.hook_normalized`);
    if (passed(ln1)) return undefined;
    // One [d, 3d] matmul for q, k and v, then a split: fewer, larger GEMMs.
    const qkv = linear(ln1, w.attnQkv, d, `${p}attn.qkv`);
    const headShape = b.int64('c.head_shape', [0, 0, heads, dHead]);
    const parts = [`${p}attn.q_flat`, `${p}attn.k_flat`, `${p}attn.v_flat`];
    b.nodes.push({
      opType: 'Split',
      name: `${p}attn.split#Split`,
      inputs: [qkv, b.int64('c.split_qkv', [d, d, d])],
      outputs: parts,
      attributes: { axis: { kind: 'int', value: -1 } },
    });
    const q = b.op('Reshape', [parts[0]!, headShape], p, `${p}attn.hook_q`);
    if (passed(q)) return undefined;
    const k = b.op('Reshape', [parts[1]!, headShape], p, `${p}attn.hook_k`);
    if (passed(k)) return undefined;
    const v = b.op('Reshape', [parts[2]!, headShape], p, `${p}attn.hook_v`);
    if (passed(v)) return undefined;

    const perm = (x: string, order: number[]): string =>
      b.op('Transpose', [x], `${p}attn`, undefined, { perm: { kind: 'ints', value: order } });
    // Scale q rather than the [seq, seq] scores: fewer multiplies, same numbers up to rounding.
    const qs = b.op('Mul', [q, b.scalar('c.attn_scale', 1 / Math.sqrt(dHead))], `${p}attn`);
    const scores = b.op('MatMul', [perm(qs, [0, 2, 1, 3]), perm(k, [0, 2, 3, 1])], `${p}attn`);
    const probs = b.op('Softmax', [b.op('Add', [scores, mask], `${p}attn`)], `${p}attn`, undefined, {
      axis: { kind: 'int', value: -1 },
    });
    const zh = b.op('MatMul', [probs, perm(v, [0, 2, 1, 3])], `${p}attn`);
    const z = b.op('Transpose', [zh], `${p}attn`, `${p}attn.hook_z`, {
      perm: { kind: 'ints', value: [0, 2, 1, 3] },
    });
    if (passed(z)) return undefined;
    const zFlat = b.op('Reshape', [z, b.int64('c.model_shape', [0, 0, d])], `${p}attn`);
    const attnOut = linear(zFlat, w.attnOut, d, `${p}attn.out`, `${p}hook_attn_out`);
    if (passed(attnOut)) return undefined;
    const mid = b.op('Add', [resid, attnOut], p, `${p}hook_resid_mid`);
    if (passed(mid)) return undefined;
    const ln2 = layerNorm(mid, w.ln2, `${p}ln2`, `${p}ln2.hook_normalized`);
    if (passed(ln2)) return undefined;
    const pre = linear(ln2, w.mlpIn, d, `${p}mlp.in`, `${p}mlp.hook_pre`);
    if (passed(pre)) return undefined;
    const post = activation(pre, `${p}mlp`, `${p}mlp.hook_post`);
    if (passed(post)) return undefined;
    const mlpOut = linear(post, w.mlpOut, config.dMlp, `${p}mlp.out`, `${p}hook_mlp_out`);
    if (passed(mlpOut)) return undefined;
    const residPost = b.op('Add', [mid, mlpOut], p, `${p}hook_resid_post`);
    if (passed(residPost)) return undefined;
    return residPost;
  }

  function activation(x: string, prefix: string, output: string): string {
    switch (config.activationFunction) {
      case 'gelu_new': {
        // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), HF's NewGELUActivation.
        const cube = b.op('Mul', [b.op('Mul', [x, x], prefix), x], prefix);
        const inner = b.op('Add', [x, b.op('Mul', [cube, b.scalar('c.gelu_k', 0.044715)], prefix)], prefix);
        const t = b.op(
          'Tanh',
          [b.op('Mul', [inner, b.scalar('c.sqrt_2_pi', Math.sqrt(2 / Math.PI))], prefix)],
          prefix,
        );
        const half = b.op('Mul', [x, b.scalar('c.half', 0.5)], prefix);
        return b.op('Mul', [half, b.op('Add', [t, b.scalar('c.one_f', 1)], prefix)], prefix, output);
      }
      case 'gelu': {
        const e = b.op('Erf', [b.op('Mul', [x, b.scalar('c.sqrt_half', Math.SQRT1_2)], prefix)], prefix);
        const half = b.op('Mul', [x, b.scalar('c.half', 0.5)], prefix);
        return b.op('Mul', [half, b.op('Add', [e, b.scalar('c.one_f', 1)], prefix)], prefix, output);
      }
      case 'relu':
        return b.op('Relu', [x], prefix, output);
    }
  }

  let final: string | undefined;
  if (resid !== undefined) {
    final = layerNorm(resid, weights.lnFinal, 'ln_final', 'ln_final.hook_normalized');
    passed(final);
  }

  const outputs: OnnxValueInfo[] = plan.capture.map((h) => ({
    name: h.name,
    elemType: TensorElemType.FLOAT,
    dims: symbolicShape(config, h.site),
  }));
  if (plan.needLogits) {
    if (final === undefined) throw new Error('buildGpt2Graph: logits requested but the plan stops early');
    // Gemm with transB reads the [vocab, d] unembedding as is (no transposed copy of the largest matrix).
    const unembed =
      weights.wte === weights.unembed ? wte : b.constant('W_U_T', [config.vocabSize, d], weights.unembed);
    const rows = b.op('Reshape', [final, b.int64('c.rows_shape', [-1, d])], 'unembed');
    const flat = b.op('Gemm', [rows, unembed], 'unembed', undefined, { transB: { kind: 'int', value: 1 } });
    const shape = b.op(
      'Concat',
      [b.op('Shape', [ids], 'unembed'), b.int64('c.vocab', [config.vocabSize])],
      'unembed',
      undefined,
      {
        axis: { kind: 'int', value: 0 },
      },
    );
    b.op('Reshape', [flat, shape], 'unembed', LOGITS);
    outputs.push({ name: LOGITS, elemType: TensorElemType.FLOAT, dims: ['batch', 'seq', config.vocabSize] });
  }

  const inputs: OnnxValueInfo[] = [{ name: ids, elemType: TensorElemType.INT32, dims: ['batch', 'seq'] }];
  return {
    model: {
      graph: { name: 'gpt2', nodes: b.nodes, initializers: b.initializers, inputs, outputs },
      opset: OPSET,
      irVersion: IR_VERSION,
      producer: 'saeflow',
    },
    outputNames: outputs.map((o) => o.name),
  };
}
