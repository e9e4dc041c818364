/**
 * GPT-2 forward in TensorFlow.js (float32) with TransformerLens hook points. Hook names, shapes, ordering and
 * the capture/intervention semantics come from hook-points.ts; this file only computes.
 *
 * Layout choices, all for the wasm backend:
 * - Every per-token activation is a 2-D [batch * seq, width] tensor so that each projection is one plain
 *   matmul against an [in, out] weight (wasm runs transposed matmuls 10-40x slower). Activations take their
 *   TransformerLens shape only at a hook that is captured or intervened on.
 * - The unembedding is stored once, transposed ([d_model, vocab]); with unprocessed weights the token
 *   embedding is gathered from that same tensor, so GPT-2's largest matrix is held once.
 * - Each block runs in its own `tf.tidy`, and the logits are computed in row chunks, so memory holds the
 *   weights plus about one block's intermediates, whatever the depth (the wasm heap is small).
 * - Captured activations are copied out as soon as they are computed.
 */
import * as tf from '@tensorflow/tfjs-core';
import { transposeMatrix } from '../util/transpose.js';
import { UserError } from '../pipeline/errors.js';
import type { Gpt2Config } from './gpt2-config.js';
import type { Gpt2Weights, LayerNormWeights, LinearWeights } from './gpt2-weights.js';
import { hookShape, listHookNames, planRun, validateTokenBatch } from './hook-points.js';
import type { Activation, HookSite, RunPlan, TokenBatch } from './hook-points.js';
import { processWeights } from './process-weights.js';
import type { WeightProcessing } from './process-weights.js';

/**
 * Replaces the activation at a hook. It receives the activation in its TransformerLens shape and must
 * return a float32 tensor of that same shape. It runs inside a `tf.tidy`, so its intermediate tensors are
 * freed; a tensor it returns that was created outside (a precomputed mean, say) stays the caller's.
 */
export type Intervention = (activation: tf.Tensor) => tf.Tensor;

export interface RunWithHooksOptions {
  /** Hook names or glob patterns (`blocks.*.hook_resid_post`) to capture. */
  hooks?: string | readonly string[];
  /** Exact hook name -> replacement; the forward continues from the returned value. */
  interventions?: Readonly<Record<string, Intervention>>;
  /** Also return logits [batch, seq, vocab] (runs the whole model). */
  returnLogits?: boolean;
  /** Also return the next-token cross-entropy [batch, seq - 1] (runs the whole model). */
  returnLoss?: boolean;
  /** Stop after the deepest captured or intervened hook when neither logits nor loss are asked for. Default true. */
  stopAtDeepestHook?: boolean;
}

export interface RunResult {
  /**
   * Captured activations by hook name, in execution order. A hook that was also intervened on holds the
   * replaced value (what the rest of the forward saw), not the original.
   */
  activations: Map<string, Activation>;
  logits?: Activation;
  lossPerToken?: Activation;
}

interface LnTensors {
  weight: tf.Tensor1D;
  bias: tf.Tensor1D;
}
interface LinearTensors {
  weight: tf.Tensor2D;
  bias: tf.Tensor1D;
}
interface BlockTensors {
  ln1: LnTensors;
  /** c_attn split into its q, k and v column blocks, so no activation needs splitting (a full copy in wasm). */
  attnQ: LinearTensors;
  attnK: LinearTensors;
  attnV: LinearTensors;
  attnOut: LinearTensors;
  ln2: LnTensors;
  mlpIn: LinearTensors;
  mlpOut: LinearTensors;
}

/** Logit rows per chunk by default: keeps a chunk of [rows, vocab] logits near 64 MB. */
const LOGIT_CHUNK_ELEMENTS = 1 << 24;

export interface Gpt2ModelOptions {
  /** Default `none`. */
  processing?: WeightProcessing;
  /** Rows of logits computed at once (memory vs. per-call overhead); default ~64 MB worth. */
  logitChunkRows?: number;
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/** The MLP nonlinearity; its own tidy frees the elementwise temporaries ([rows, d_mlp] each) at once. */
function activation(x: tf.Tensor, kind: Gpt2Config['activationFunction']): tf.Tensor {
  return tf.tidy(() => activationOf(x, kind));
}

function activationOf(x: tf.Tensor, kind: Gpt2Config['activationFunction']): tf.Tensor {
  switch (kind) {
    case 'gelu_new':
      // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), HF's NewGELUActivation.
      return tf.mul(
        tf.mul(x, 0.5),
        tf.add(tf.tanh(tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), SQRT_2_OVER_PI)), 1),
      );
    case 'gelu':
      return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));
    case 'relu':
      return tf.relu(x);
  }
}

function linear(x: tf.Tensor, w: LinearTensors): tf.Tensor {
  return tf.fused.matMul({ a: x as tf.Tensor2D, b: w.weight, bias: w.bias });
}

function layerNorm(x: tf.Tensor, w: LnTensors, eps: number): tf.Tensor {
  return tf.tidy(() => {
    const { mean, variance } = tf.moments(x, -1, true);
    const normalized = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps)));
    return tf.add(tf.mul(normalized, w.weight), w.bias);
  });
}

/** Columns [block * width, (block + 1) * width) of a Conv1D [in, n * width] and its bias. */
function columnBlock(lin: LinearWeights, width: number, block: number): LinearWeights {
  const cols = lin.bias.length;
  const rows = lin.weight.length / cols;
  const weight = new Float32Array(rows * width);
  for (let r = 0; r < rows; r++) {
    weight.set(lin.weight.subarray(r * cols + block * width, r * cols + (block + 1) * width), r * width);
  }
  return { weight, bias: lin.bias.slice(block * width, (block + 1) * width) };
}

/**
 * softmax(q k^T / sqrt(d_head) + causal mask) v for every sequence and head: [rows, d_model] in and out,
 * heads side by side as in HF's merged layout (TransformerLens z flattened over heads).
 *
 * One 2-D matmul per (sequence, head) rather than a batched 4-D matmul: tfjs-wasm sends only batch-1
 * matmuls to XNNPACK and runs batched ones in a naive loop (4x slower at 1024 positions). Heads are taken
 * out with gather, which works in place, since wasm's slice/split/unstack copy their whole input per call.
 */
function causalAttention(
  q: tf.Tensor,
  k: tf.Tensor,
  v: tf.Tensor,
  mask: tf.Tensor2D,
  batch: number,
  seq: number,
  heads: number,
  dHead: number,
): tf.Tensor {
  const split = [batch, seq, heads, dHead];
  const perHead = [batch * heads, seq * dHead];
  // Scale q rather than the [seq, seq] scores: fewer multiplies, same numbers up to rounding.
  const qh = tf.reshape(
    tf.transpose(tf.reshape(tf.mul(q, 1 / Math.sqrt(dHead)), split), [0, 2, 1, 3]),
    perHead,
  );
  const kt = tf.reshape(tf.transpose(tf.reshape(k, split), [0, 2, 3, 1]), perHead);
  const vh = tf.reshape(tf.transpose(tf.reshape(v, split), [0, 2, 1, 3]), perHead);
  const outs: tf.Tensor[] = [];
  for (let i = 0; i < batch * heads; i++) {
    // A tidy per head: only its [seq, d_head] output outlives it, not three [seq, seq] temporaries.
    outs.push(
      tf.tidy(() => {
        const index = tf.tensor1d([i], 'int32');
        const qi = tf.reshape(tf.gather(qh, index), [seq, dHead]);
        const kti = tf.reshape(tf.gather(kt, index), [dHead, seq]);
        const vi = tf.reshape(tf.gather(vh, index), [seq, dHead]);
        return tf.matMul(tf.softmax(tf.add(tf.matMul(qi, kti), mask)), vi);
      }),
    );
  }
  const z = tf.reshape(tf.concat(outs, 0), [batch, heads, seq, dHead]);
  return tf.reshape(tf.transpose(z, [0, 2, 1, 3]), [batch * seq, heads * dHead]);
}

/** One forward's bookkeeping: walks the hook sites in order, applies interventions, copies out captures. */
class HookWalk {
  private visited = 0;
  readonly captured = new Map<string, Activation>();

  constructor(
    private readonly config: Gpt2Config,
    private readonly names: readonly string[],
    private readonly plan: RunPlan,
    private readonly interventions: Readonly<Record<string, Intervention>>,
    private readonly captureNames: ReadonlySet<string>,
    private readonly batch: number,
    private readonly seq: number,
  ) {}

  get needLogits(): boolean {
    return this.plan.needLogits;
  }

  touches(name: string): boolean {
    return this.plan.touched.has(name);
  }

  /** Passes `x` (internal layout) through the hook `name`; returns what the forward continues with. */
  hook(name: string, site: HookSite, x: tf.Tensor): tf.Tensor {
    if (this.names[this.visited] !== name) throw new Error(`Gpt2Model: hook ${name} reached out of order`);
    this.visited++;
    if (!this.plan.touched.has(name)) return x;
    const shape = hookShape(this.config, site, this.batch, this.seq);
    let value = tf.reshape(x, shape);
    const fn = this.interventions[name];
    if (fn) value = checkReplacement(name, fn(value), shape);
    if (this.captureNames.has(name)) {
      const data = value.dataSync() as Float32Array;
      // The cpu backend hands out its own buffer; a replacement may be a tensor the caller still uses.
      this.captured.set(name, { shape, data: fn ? data.slice() : data });
    }
    return fn ? tf.reshape(value, x.shape) : x;
  }

  /** True once the forward has passed the deepest hook it needs. */
  get done(): boolean {
    return this.visited - 1 >= this.plan.stopAfter;
  }
}

export class Gpt2Model {
  /** Token embedding [vocab, d_model], only when it differs from the unembedding (processed weights). */
  private readonly wte: tf.Tensor2D | undefined;
  /** Unembedding, transposed: [d_model, vocab]. */
  private readonly unembedT: tf.Tensor2D;
  private readonly wpe: tf.Tensor2D;
  private readonly blocks: BlockTensors[];
  private readonly lnFinal: LnTensors;
  private readonly hookNames: string[];
  private readonly logitChunkRows: number;
  private causalMask: tf.Tensor2D | undefined;
  private disposed = false;

  private constructor(
    readonly config: Gpt2Config,
    readonly processing: WeightProcessing,
    weights: Gpt2Weights,
    logitChunkRows: number | undefined,
  ) {
    this.logitChunkRows = logitChunkRows ?? Math.max(1, Math.floor(LOGIT_CHUNK_ELEMENTS / config.vocabSize));
    if (!Number.isInteger(this.logitChunkRows) || this.logitChunkRows < 1) {
      throw new UserError(`logitChunkRows must be a positive integer, got ${logitChunkRows}`);
    }
    const d = config.nEmbd;
    const ln = (w: LayerNormWeights): LnTensors => ({
      weight: tf.tensor1d(w.weight),
      bias: tf.tensor1d(w.bias),
    });
    const lin = (w: LinearWeights, rows: number, cols: number): LinearTensors => ({
      weight: tf.tensor2d(w.weight, [rows, cols]),
      bias: tf.tensor1d(w.bias),
    });
    this.unembedT = tf.tensor2d(transposeMatrix(weights.unembed, config.vocabSize, d), [d, config.vocabSize]);
    this.wte = weights.wte === weights.unembed ? undefined : tf.tensor2d(weights.wte, [config.vocabSize, d]);
    this.wpe = tf.tensor2d(weights.wpe, [config.nPositions, d]);
    this.blocks = weights.blocks.map((b) => ({
      ln1: ln(b.ln1),
      attnQ: lin(columnBlock(b.attnQkv, d, 0), d, d),
      attnK: lin(columnBlock(b.attnQkv, d, 1), d, d),
      attnV: lin(columnBlock(b.attnQkv, d, 2), d, d),
      attnOut: lin(b.attnOut, d, d),
      ln2: ln(b.ln2),
      mlpIn: lin(b.mlpIn, d, config.dMlp),
      mlpOut: lin(b.mlpOut, config.dMlp, d),
    }));
    this.lnFinal = ln(weights.lnFinal);
    this.hookNames = listHookNames(config);
  }

  /** Uploads (processed) weights to the active tfjs backend; they stay there until `dispose()`. */
  static create(config: Gpt2Config, weights: Gpt2Weights, options: Gpt2ModelOptions = {}): Gpt2Model {
    const processing = options.processing ?? 'none';
    return new Gpt2Model(
      config,
      processing,
      processWeights(weights, config, processing),
      options.logitChunkRows,
    );
  }

  /**
   * Runs the model on a token batch, capturing the requested hooks and applying interventions. Everything
   * the forward allocates is freed before this returns; results come back as plain float32 arrays that
   * belong to the caller.
   */
  async runWithHooks(tokens: TokenBatch, options: RunWithHooksOptions = {}): Promise<RunResult> {
    if (this.disposed) throw new Error('Gpt2Model: used after dispose()');
    validateTokenBatch(this.config, tokens);
    const interventions = options.interventions ?? {};
    const plan = planRun(this.config, {
      hooks: options.hooks,
      interventions: Object.keys(interventions),
      returnLogits: options.returnLogits,
      returnLoss: options.returnLoss,
      stopAtDeepestHook: options.stopAtDeepestHook,
    });
    // Nothing asked for: nothing to run.
    if (plan.stopAfter < 0) return { activations: new Map() };
    const [batch, seq] = tokens.shape;
    const walk = new HookWalk(
      this.config,
      this.hookNames,
      plan,
      interventions,
      new Set(plan.capture.map((h) => h.name)),
      batch,
      seq,
    );
    const result: RunResult = { activations: walk.captured };
    const final = this.runBlocks(tokens, walk);
    if (final) {
      try {
        this.head(final, tokens, options, result);
      } finally {
        final.dispose();
      }
    }
    return result;
  }

  /**
   * Next-token cross-entropy (natural log) per position, [batch, seq - 1]: entry [b, p] is the loss of
   * predicting token p + 1 from tokens 0..p, optionally with interventions.
   */
  async lossPerToken(
    tokens: TokenBatch,
    options: { interventions?: Readonly<Record<string, Intervention>> } = {},
  ): Promise<Activation> {
    const r = await this.runWithHooks(tokens, { interventions: options.interventions, returnLoss: true });
    return r.lossPerToken!;
  }

  /** Frees every weight tensor; the model cannot run afterwards. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    const all: tf.Tensor[] = [this.unembedT, this.wpe, this.lnFinal.weight, this.lnFinal.bias];
    if (this.wte) all.push(this.wte);
    if (this.causalMask) all.push(this.causalMask);
    for (const b of this.blocks) {
      for (const p of [b.ln1, b.attnQ, b.attnK, b.attnV, b.attnOut, b.ln2, b.mlpIn, b.mlpOut]) {
        all.push(p.weight, p.bias);
      }
    }
    for (const t of all) t.dispose();
  }

  /** 0 on and below the diagonal, -Infinity above. Kept for the last sequence length (usually the only one). */
  private maskFor(seq: number): tf.Tensor2D {
    if (this.causalMask?.shape[0] !== seq) {
      this.causalMask?.dispose();
      const values = new Float32Array(seq * seq);
      for (let q = 0; q < seq; q++) for (let k = q + 1; k < seq; k++) values[q * seq + k] = -Infinity;
      this.causalMask = tf.tensor2d(values, [seq, seq]);
    }
    return this.causalMask;
  }

  /**
   * Embedding and blocks, then `ln_final`. Returns the final LayerNorm output [rows, d_model] when the
   * logits are needed, undefined when the walk stopped earlier or no logits are wanted.
   */
  private runBlocks(tokens: TokenBatch, walk: HookWalk): tf.Tensor | undefined {
    const cfg = this.config;
    const [batch, seq] = tokens.shape;
    const rows = batch * seq;
    const d = cfg.nEmbd;

    let resid = tf.tidy(() => {
      const ids = tf.tensor1d(tokens.data, 'int32');
      const gathered = this.wte ? tf.gather(this.wte, ids) : tf.transpose(tf.gather(this.unembedT, ids, 1));
      const embed = walk.hook('hook_embed', 'hook_embed', gathered);
      if (walk.done) return undefined;
      let pos: tf.Tensor = tf.slice(this.wpe, [0, 0], [seq, d]);
      // Repeat over the batch only when someone looks at it; otherwise broadcasting does the same.
      if (walk.touches('hook_pos_embed')) pos = tf.tile(pos, [batch, 1]);
      pos = walk.hook('hook_pos_embed', 'hook_pos_embed', pos);
      if (walk.done) return undefined;
      return pos.shape[0] === rows
        ? tf.add(embed, pos)
        : tf.reshape(tf.add(tf.reshape(embed, [batch, seq, d]), pos), [rows, d]);
    });

    const mask = this.maskFor(seq);
    for (let l = 0; l < cfg.nLayer && resid; l++) {
      const input: tf.Tensor = resid;
      try {
        resid = tf.tidy(() => this.block(l, input, mask, walk, batch, seq));
      } finally {
        input.dispose();
      }
    }
    if (!resid) return undefined;
    const input: tf.Tensor = resid;
    try {
      const final = tf.tidy(() =>
        walk.hook(
          'ln_final.hook_normalized',
          'ln_final.hook_normalized',
          layerNorm(input, this.lnFinal, cfg.layerNormEpsilon),
        ),
      );
      if (walk.needLogits) return final;
      final.dispose();
      return undefined;
    } finally {
      input.dispose();
    }
  }

  /** One transformer block; returns the residual stream after it, or undefined once the walk is done. */
  private block(
    l: number,
    residIn: tf.Tensor,
    mask: tf.Tensor2D,
    walk: HookWalk,
    batch: number,
    seq: number,
  ): tf.Tensor | undefined {
    const cfg = this.config;
    const w = this.blocks[l]!;
    const p = `blocks.${l}.`;
    const { nHead: heads, dHead, layerNormEpsilon: eps } = cfg;

    let resid = walk.hook(`${p}hook_resid_pre`, 'hook_resid_pre', residIn);
    if (walk.done) return undefined;
    const ln1 = walk.hook(`${p}ln1.hook_normalized`, 'ln1.hook_normalized', layerNorm(resid, w.ln1, eps));
    if (walk.done) return undefined;
    const q = walk.hook(`${p}attn.hook_q`, 'attn.hook_q', linear(ln1, w.attnQ));
    if (walk.done) return undefined;
    const k = walk.hook(`${p}attn.hook_k`, 'attn.hook_k', linear(ln1, w.attnK));
    if (walk.done) return undefined;
    const v = walk.hook(`${p}attn.hook_v`, 'attn.hook_v', linear(ln1, w.attnV));
    if (walk.done) return undefined;
    const z = walk.hook(
      `${p}attn.hook_z`,
      'attn.hook_z',
      causalAttention(q, k, v, mask, batch, seq, heads, dHead),
    );
    if (walk.done) return undefined;
    const attnOut = walk.hook(`${p}hook_attn_out`, 'hook_attn_out', linear(z, w.attnOut));
    if (walk.done) return undefined;
    resid = walk.hook(`${p}hook_resid_mid`, 'hook_resid_mid', tf.add(resid, attnOut));
    if (walk.done) return undefined;
    const ln2 = walk.hook(`${p}ln2.hook_normalized`, 'ln2.hook_normalized', layerNorm(resid, w.ln2, eps));
    if (walk.done) return undefined;
    const pre = walk.hook(`${p}mlp.hook_pre`, 'mlp.hook_pre', linear(ln2, w.mlpIn));
    if (walk.done) return undefined;
    const post = walk.hook(`${p}mlp.hook_post`, 'mlp.hook_post', activation(pre, cfg.activationFunction));
    if (walk.done) return undefined;
    const mlpOut = walk.hook(`${p}hook_mlp_out`, 'hook_mlp_out', linear(post, w.mlpOut));
    if (walk.done) return undefined;
    resid = walk.hook(`${p}hook_resid_post`, 'hook_resid_post', tf.add(resid, mlpOut));
    if (walk.done) return undefined;
    return resid;
  }

  /** Logits and/or next-token loss from the final LayerNorm output, a chunk of rows at a time. */
  private head(final: tf.Tensor, tokens: TokenBatch, options: RunWithHooksOptions, result: RunResult): void {
    const [batch, seq] = tokens.shape;
    const rows = batch * seq;
    const vocab = this.config.vocabSize;
    const d = this.config.nEmbd;
    const logits = options.returnLogits ? new Float32Array(rows * vocab) : undefined;
    const rowLoss = options.returnLoss ? new Float32Array(rows) : undefined;
    const chunk = this.logitChunkRows;
    for (let start = 0; start < rows; start += chunk) {
      const n = Math.min(chunk, rows - start);
      tf.tidy(() => {
        const part: tf.Tensor2D = tf.matMul(
          tf.slice(final, [start, 0], [n, d]) as tf.Tensor2D,
          this.unembedT,
        );
        if (logits) logits.set(part.dataSync(), start * vocab);
        if (rowLoss) rowLoss.set(nextTokenLoss(part, tokens, start).dataSync(), start);
      });
    }
    if (logits) result.logits = { shape: [batch, seq, vocab], data: logits };
    if (rowLoss) {
      // Row b*seq+p scored token p+1; the last position of each sequence has no next token.
      const loss = new Float32Array(batch * (seq - 1));
      for (let b = 0; b < batch; b++) loss.set(rowLoss.subarray(b * seq, b * seq + seq - 1), b * (seq - 1));
      result.lossPerToken = { shape: [batch, seq - 1], data: loss };
    }
  }
}

/**
 * logsumexp(logits[row]) - logits[row, next token] for the rows [start, start + n) of the batch; the last
 * position of each sequence is scored against token 0 and dropped by the caller.
 */
function nextTokenLoss(logits: tf.Tensor2D, tokens: TokenBatch, start: number): tf.Tensor {
  const n = logits.shape[0];
  const seq = tokens.shape[1];
  // gatherND rather than gather with batchDims: the latter corrupts memory in the wasm backend (tfjs 4.22).
  const pairs = new Int32Array(2 * n);
  for (let i = 0; i < n; i++) {
    const row = start + i;
    pairs[2 * i] = i;
    pairs[2 * i + 1] = (row % seq) + 1 < seq ? tokens.data[row + 1]! : 0;
  }
  const picked = tf.gatherND(logits, tf.tensor2d(pairs, [n, 2], 'int32'));
  return tf.sub(tf.logSumExp(logits, 1), picked);
}

function checkReplacement(name: string, value: unknown, shape: number[]): tf.Tensor {
  if (!(value instanceof tf.Tensor)) {
    throw new UserError(`intervention at ${name} must return a tf.Tensor, got ${typeof value}`);
  }
  if (value.dtype !== 'float32') {
    throw new UserError(`intervention at ${name} returned dtype ${value.dtype}, expected float32`);
  }
  const actual: number[] = value.shape;
  if (actual.length !== shape.length || actual.some((s, i) => s !== shape[i])) {
    throw new UserError(
      `intervention at ${name} returned shape [${actual.join(', ')}], expected [${shape.join(', ')}]`,
    );
  }
  return value;
}
