/**
 * The eager engine: the family's forward (family.ts) run on TensorFlow.js through the op layer's TfjsOps,
 * with TransformerLens hook points (hook-points.ts): captures, replacements as data (replacement.ts, the
 * same definition the ONNX graph uses) or as JS functions, early stopping, logits and next-token loss
 * (loss.ts). TensorFlow.js stays the reference and the engine of last resort where onnxruntime cannot load.
 *
 * Memory: weights are uploaded once (at creation) and kept until `dispose`; each part of the forward
 * (embedding, each block, final norm) runs in its own `tf.tidy`, so what outlives a part is the residual
 * stream, and logits are computed a chunk of sequences at a time; everything else is freed before a call
 * returns. Captured activations are copied out as soon as they are computed.
 */
import * as tf from '@tensorflow/tfjs-core';
import { TfjsOps } from '../ops/tfjs-ops.js';
import { UserError } from '../pipeline/errors.js';
import type { ModelConfig } from './config.js';
import { runForward } from './family.js';
import type { HookFn, Model } from './family.js';
import { hookShape, parseHookName, planRun, validateTokenBatch } from './hook-points.js';
import type { Activation, RunPlan, TokenBatch } from './hook-points.js';
import { klDivergence, nextTokenLoss, referenceOf } from './loss.js';
import { applyReplacement, checkReplacement } from './replacement.js';
import type { HookReplacement, ReplacementSae } from './replacement.js';
import { hookOrderChecker, planOf } from './runner.js';
import type {
  ModelRunner,
  RunOptions,
  RunResult,
  SaeOutputs,
  VariantResult,
  VariantsOptions,
} from './runner.js';
import type { WeightProcessing } from './process-weights.js';

/**
 * Replaces the activation at a hook. It receives the activation in its TransformerLens shape and must
 * return a float32 tensor of that same shape. It runs inside a `tf.tidy`, so its intermediate tensors are
 * freed; a tensor it returns that was created outside (a precomputed mean, say) stays the caller's.
 */
export type Intervention = (activation: tf.Tensor) => tf.Tensor;

/** A replacement as data (both engines) or as a JS function (this engine only). */
export type TfjsReplacement = HookReplacement | Intervention;

/** Logit rows per chunk by default: keeps a chunk of [rows, vocab] logits near 64 MB. */
const LOGIT_CHUNK_ELEMENTS = 1 << 24;

export interface TfjsRunnerOptions {
  /** Rows of logits computed at once, rounded to whole sequences (memory vs. per-call overhead); default ~64 MB worth. */
  logitChunkRows?: number;
}

function checkResult(name: string, value: unknown, shape: number[]): tf.Tensor {
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

/**
 * Most weight bytes the wasm backend is given: its heap is 32-bit (4 GiB in all), and besides the weights
 * it holds the transposes of the matrices read transposed (the unembedding) and the activations.
 */
export const WASM_WEIGHT_LIMIT = 2 ** 31;

/** Refuses, in one line, a model the backend cannot hold, rather than letting it die mid-upload. */
export function checkFitsBackend(weightBytes: number, backend: string): void {
  if (backend !== 'wasm' || weightBytes <= WASM_WEIGHT_LIMIT) return;
  throw new UserError(
    `the model's weights take ${(weightBytes / 1e9).toFixed(2)} GB as float32, more than the tfjs engine's ` +
      `wasm backend can hold (a 4 GiB heap, at most ${WASM_WEIGHT_LIMIT / 2 ** 30} GiB of it for weights): ` +
      'use --engine onnx',
  );
}

const copy = (t: tf.Tensor): Activation => ({
  shape: [...t.shape],
  // A fresh array: the cpu backend hands out its own buffer, which a caller's tensor may share.
  data: (t.dataSync() as Float32Array).slice(),
});

export class TfjsRunner implements ModelRunner {
  readonly engine = 'tfjs' as const;
  private readonly o = new TfjsOps();
  private readonly logitChunkRows: number;
  private readonly saeKeys = new WeakMap<ReplacementSae['tensors'], string>();
  private nextSaeKey = 0;
  private disposed = false;

  private constructor(
    readonly model: Model,
    options: TfjsRunnerOptions,
  ) {
    this.logitChunkRows =
      options.logitChunkRows ?? Math.max(1, Math.floor(LOGIT_CHUNK_ELEMENTS / model.config.vocabSize));
    if (!Number.isInteger(this.logitChunkRows) || this.logitChunkRows < 1) {
      throw new UserError(`logitChunkRows must be a positive integer, got ${options.logitChunkRows}`);
    }
  }

  /** Uploads the weights to the active tfjs backend; they stay there until `dispose()`. */
  static create(model: Model, options: TfjsRunnerOptions = {}): TfjsRunner {
    checkFitsBackend(model.weightBytes, tf.getBackend());
    const runner = new TfjsRunner(model, options);
    // One forward of one token creates every weight constant now, so runs leave memory as they found it.
    tf.tidy(() => {
      const final = runForward(runner.o, model, tf.zeros([1, 1], 'int32'), (_, v) => v);
      if (final) model.unembed(runner.o, final);
    });
    return runner;
  }

  get config(): ModelConfig {
    return this.model.config;
  }

  get processing(): WeightProcessing {
    return this.model.processing;
  }

  /**
   * Runs the model on a token batch, capturing the requested hooks and applying interventions. Everything
   * the forward allocates is freed before this returns; results are plain float32 arrays the caller owns.
   */
  async runWithHooks(tokens: TokenBatch, options: RunOptions<TfjsReplacement> = {}): Promise<RunResult> {
    const interventions = this.checked(tokens, options);
    const plan = planOf(this.config, options, Object.keys(interventions));
    const result: RunResult = { activations: new Map(), saeOutputs: new Map() };
    // Nothing asked for: nothing to run.
    if (plan.stopAfter < 0) return result;
    const [batch, seq] = tokens.shape;
    const held: tf.Tensor[] = [];
    try {
      tf.tidy(() => {
        const ids = tf.tensor2d(tokens.data, [batch, seq], 'int32');
        const keep = this.keepTensor(options.keep, batch, seq);
        const final = this.forward(ids, keep, plan, interventions, result, held);
        if (final === undefined || !plan.needLogits) return;
        const logits = options.returnLogits
          ? new Float32Array(batch * seq * this.config.vocabSize)
          : undefined;
        const loss = options.returnLoss ? new Float32Array(batch * (seq - 1)) : undefined;
        this.head(ids, [final], (b0, [chunk]) => {
          if (logits) logits.set(chunk!.dataSync(), b0 * seq * this.config.vocabSize);
          if (loss) {
            const idsChunk = this.o.slice(ids, 0, b0, b0 + chunk!.shape[0]!);
            loss.set(nextTokenLoss(this.o, this.o.logSoftmax(chunk!), idsChunk).dataSync(), b0 * (seq - 1));
          }
        });
        if (logits) result.logits = { shape: [batch, seq, this.config.vocabSize], data: logits };
        if (loss) result.lossPerToken = { shape: [batch, seq - 1], data: loss };
      });
    } finally {
      for (const t of held) t.dispose();
    }
    return result;
  }

  /** Next-token cross-entropy [batch, seq - 1], optionally with interventions. */
  async lossPerToken(
    tokens: TokenBatch,
    options: { interventions?: Readonly<Record<string, TfjsReplacement>> } = {},
  ): Promise<Activation> {
    const r = await this.runWithHooks(tokens, { interventions: options.interventions, returnLoss: true });
    return r.lossPerToken!;
  }

  async runVariants(
    tokens: TokenBatch,
    options: VariantsOptions,
  ): Promise<{ clean: RunResult; variants: VariantResult[] }> {
    const checked = options.variants.map((v) => this.checked(tokens, { interventions: v }));
    const [batch, seq] = tokens.shape;
    const clean: RunResult = { activations: new Map(), saeOutputs: new Map() };
    const variants = checked.map(() => ({ activations: new Map(), saeOutputs: new Map() }) as RunResult);
    const kl = options.kl === true;
    const losses = [clean, ...variants].map(() => new Float32Array(batch * (seq - 1)));
    const kls = variants.map(() => new Float32Array(batch * seq));
    const held: tf.Tensor[] = [];
    try {
      tf.tidy(() => {
        const ids = tf.tensor2d(tokens.data, [batch, seq], 'int32');
        const keep = this.keepTensor(options.keep, batch, seq);
        const finals = [
          this.forward(
            ids,
            keep,
            planRun(this.config, { hooks: options.hooks, returnLoss: true }),
            {},
            clean,
            held,
          )!,
          ...checked.map((interventions, j) =>
            this.forward(
              ids,
              keep,
              planRun(this.config, { interventions: Object.keys(interventions), returnLoss: true }),
              interventions,
              variants[j]!,
              held,
            )!,
          ),
        ];
        this.head(ids, finals, (b0, raw) => {
          const n = raw[0]!.shape[0]!;
          const idsChunk = this.o.slice(ids, 0, b0, b0 + n);
          const logProbs = raw.map((l) => this.o.logSoftmax(l));
          logProbs.forEach((lp, j) =>
            losses[j]!.set(nextTokenLoss(this.o, lp, idsChunk).dataSync(), b0 * (seq - 1)),
          );
          if (!kl) return;
          const ref = referenceOf(this.o, raw[0]!);
          logProbs
            .slice(1)
            .forEach((lp, j) => kls[j]!.set(klDivergence(this.o, ref, lp).dataSync(), b0 * seq));
        });
      });
    } finally {
      for (const t of held) t.dispose();
    }
    const lossOf = (i: number): Activation => ({ shape: [batch, seq - 1], data: losses[i]! });
    clean.lossPerToken = lossOf(0);
    return {
      clean,
      variants: variants.map((v, j) => ({
        lossPerToken: lossOf(j + 1),
        ...(kl ? { kl: { shape: [batch, seq], data: kls[j]! } } : {}),
        saeOutputs: v.saeOutputs,
      })),
    };
  }

  /** Frees every weight tensor; the runner cannot run afterwards. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.o.dispose();
  }

  private checked(
    tokens: TokenBatch,
    options: RunOptions<TfjsReplacement>,
  ): Readonly<Record<string, TfjsReplacement>> {
    if (this.disposed) throw new Error('TfjsRunner: used after dispose()');
    validateTokenBatch(this.config, tokens);
    const [batch, seq] = tokens.shape;
    if (options.keep !== undefined && options.keep.length !== batch * seq) {
      throw new UserError(
        `keep mask has ${options.keep.length} entries, expected ${batch * seq} (batch x seq)`,
      );
    }
    const interventions = options.interventions ?? {};
    for (const [hook, r] of Object.entries(interventions)) {
      if (typeof r === 'function') parseHookName(this.config, hook);
      else checkReplacement(this.config, hook, r);
    }
    return interventions;
  }

  private keepTensor(keep: Uint8Array | undefined, batch: number, seq: number): tf.Tensor | undefined {
    return keep === undefined ? undefined : tf.tensor2d(Float32Array.from(keep), [batch, seq]);
  }

  private saeKey(sae: ReplacementSae): string {
    let key = this.saeKeys.get(sae.tensors);
    if (key === undefined) {
      // By its weights' identity, so that replacement specs made afresh per call (saeInterventions)
      // reuse the weights uploaded the first time; they stay until the runner is disposed.
      key = `sae${this.nextSaeKey++}`;
      this.saeKeys.set(sae.tensors, key);
    }
    return key;
  }

  /**
   * One forward to the final normalisation (undefined where it stopped earlier), filling `result` with
   * captures and SAE outputs. Inputs of SAE replacements that a later part reads are kept in `held`.
   */
  private forward(
    ids: tf.Tensor,
    keep: tf.Tensor | undefined,
    plan: RunPlan,
    interventions: Readonly<Record<string, TfjsReplacement>>,
    result: RunResult,
    held: tf.Tensor[],
  ): tf.Tensor | undefined {
    const config = this.config;
    const [batch, seq] = ids.shape as [number, number];
    const captured = new Set(plan.capture.map((h) => h.name));
    const inputs = new Set(
      Object.entries(interventions).flatMap(([hook, r]) =>
        typeof r !== 'function' && r.kind === 'sae' && r.input !== undefined && r.input !== hook
          ? [r.input]
          : [],
      ),
    );
    const originals = new Map<string, tf.Tensor>();
    const order = hookOrderChecker(config);
    const hook: HookFn<tf.Tensor> = (name, value) => {
      const at = order(name);
      const point = plan.touched.get(name);
      if (point === undefined && !inputs.has(name)) return at >= plan.stopAfter ? undefined : value;
      if (inputs.has(name)) {
        const kept = tf.keep(tf.clone(value));
        held.push(kept);
        originals.set(name, kept);
      }
      let out = value;
      const r = interventions[name];
      const shape = hookShape(config, parseHookName(config, name).site, batch, seq);
      if (typeof r === 'function') out = checkResult(name, r(value), shape);
      else if (r !== undefined) {
        const applied = applyReplacement(this.o, r, {
          value,
          input: r.kind === 'sae' && r.input !== undefined ? (originals.get(r.input) ?? value) : value,
          keep: r.kind === 'sae' ? keep : undefined,
          saeKey: r.kind === 'sae' ? this.saeKey(r.sae) : '',
          rank: shape.length,
        });
        out = applied.value;
        if (applied.sae) {
          const sae: SaeOutputs = {
            features: copy(applied.sae.features),
            reconstruction: copy(applied.sae.reconstruction),
          };
          result.saeOutputs.set(name, sae);
        }
      }
      if (captured.has(name)) result.activations.set(name, copy(out));
      return at >= plan.stopAfter ? undefined : out;
    };
    const step = <R>(part: () => R): R => tf.tidy(part as () => tf.TensorContainer) as R;
    return runForward(this.o, this.model, ids, hook, step);
  }

  /**
   * The logits of each forward's final normalisation output, a chunk of whole sequences at a time: `use`
   * gets the chunk's first sequence and each forward's logits [sequences, seq, vocab], inside a tidy.
   */
  private head(
    ids: tf.Tensor,
    finals: readonly tf.Tensor[],
    use: (b0: number, logits: tf.Tensor[]) => void,
  ): void {
    const [batch, seq] = ids.shape as [number, number];
    const perChunk = Math.max(1, Math.floor(this.logitChunkRows / seq));
    for (let b0 = 0; b0 < batch; b0 += perChunk) {
      const b1 = Math.min(batch, b0 + perChunk);
      tf.tidy(() => {
        use(
          b0,
          finals.map((f) => this.model.unembed(this.o, this.o.slice(f, 0, b0, b1))),
        );
      });
    }
  }
}
