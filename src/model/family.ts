/**
 * A model family (GPT-2, and later Gemma 2, Llama, Qwen2, Pythia, ...) as one object that names nothing
 * about any engine: how Hugging Face's `config.json` maps onto a `ModelConfig`, where its weights are in a
 * safetensors checkpoint, which weight processings it offers, and its forward written once on the op layer
 * (`Ops<T>`), so that the same definition builds the ONNX graph (onnxruntime) and runs eagerly on
 * TensorFlow.js. Families register in registry.ts; docs/model-families.md says how to add one.
 *
 * The forward is cut where engines need to step in: `embed`, then `block` per layer, then `final` (the
 * final normalisation) and `unembed` (logits). Every hook point is a call of `hook(name, value)` with the
 * activation in its TransformerLens shape; the forward continues with what it returns, or stops when it
 * returns undefined. Captures, replacements and early stopping are the caller's business.
 */
import type { Weight, WeightStore } from '../io/weight-file.js';
import type { Ops } from '../ops/ops.js';
import type { ModelConfig } from './config.js';
import type { WeightProcessing } from './process-weights.js';

/**
 * Called at every hook point in execution order with the activation in its TransformerLens shape;
 * returns the value the forward continues with (the activation itself, or a replacement of the same
 * shape), or undefined to stop the forward there.
 */
export type HookFn<T> = (name: string, value: T) => T | undefined;

/** The residual stream after the embedding, and what every block reads besides it (masks, positions). */
export interface ForwardStart<T> {
  x: T;
  /** Values a family computes once per forward for all blocks (the causal mask, rotary angles). */
  state: Record<string, T>;
}

/** The host weights the feature dashboards read (logit effects): see src/eval/logit-effects.ts. */
export interface DashboardWeights {
  vocab: number;
  dModel: number;
  dMlp: number;
  /** [vocab, d_model]: row v is token v's unembedding vector. */
  unembed: Float32Array;
  /** The final normalisation's scale [d_model]. */
  lnFinalWeight: Float32Array;
  /** W_O [n_heads * d_head, d_model] and W_out [d_mlp, d_model] of the layers asked for. */
  attnOut: Map<number, Float32Array>;
  mlpOut: Map<number, Float32Array>;
}

/**
 * The dashboard weights of the layers asked for, given each layer's W_O and W_out (undefined for a layer
 * the model lacks): the assembly every family shares.
 */
export function collectDashboardWeights(
  config: ModelConfig,
  ends: { unembed: Float32Array; lnFinalWeight: Float32Array },
  layers: Iterable<number>,
  writers: (layer: number) => { attnOut: Float32Array; mlpOut: Float32Array } | undefined,
): DashboardWeights {
  const attnOut = new Map<number, Float32Array>();
  const mlpOut = new Map<number, Float32Array>();
  for (const l of layers) {
    const w = writers(l);
    if (!w) continue;
    attnOut.set(l, w.attnOut);
    mlpOut.set(l, w.mlpOut);
  }
  return { vocab: config.vocabSize, dModel: config.dModel, dMlp: config.dMlp, ...ends, attnOut, mlpOut };
}

/** The forward of a family over its host weights `W`, on any op-layer backend. */
export interface FamilyForward<W> {
  /** Token ids [batch, seq] (int) to the residual stream [batch, seq, d_model]. */
  embed<T>(o: Ops<T>, config: ModelConfig, w: W, ids: T, hook: HookFn<T>): ForwardStart<T> | undefined;
  /** Block `layer`: residual stream in, residual stream out. */
  block<T>(
    o: Ops<T>,
    config: ModelConfig,
    w: W,
    layer: number,
    x: T,
    state: Record<string, T>,
    hook: HookFn<T>,
  ): T | undefined;
  /** The final normalisation (its hook included). */
  final<T>(o: Ops<T>, config: ModelConfig, w: W, x: T, hook: HookFn<T>): T | undefined;
  /** Logits [..., vocab] from the final normalisation's output [..., d_model]. */
  unembed<T>(o: Ops<T>, config: ModelConfig, w: W, x: T): T;
}

export interface ModelFamily<W> extends FamilyForward<W> {
  /** Registry name, stored in `ModelConfig.family`. */
  readonly name: string;
  /** Hugging Face `model_type` values this family loads. */
  readonly modelTypes: readonly string[];
  /** Hugging Face `architectures` entries it accepts (an unknown one is refused: other heads, other math). */
  readonly architectures: readonly string[];
  /** Weight processings it offers, `none` first (TransformerLens's meanings). */
  readonly processings: readonly WeightProcessing[];
  /** Validates a parsed config.json; UserErrors name `file` and the field. */
  parseConfig(json: Record<string, unknown>, file: string): ModelConfig;
  /**
   * Loads and validates the weights of a Hugging Face folder (safetensors only). Large arrays go through
   * `store` (default: kept in memory), which may write them to a weight file and return their place
   * (src/io/weight-file.ts); a family that ignores it keeps everything in memory.
   */
  loadWeights(dir: string, config: ModelConfig, store?: WeightStore): Promise<W>;
  /** Processed weights; arrays that do not change are shared with the input. */
  processWeights(w: W, config: ModelConfig, processing: WeightProcessing): W;
  /** Every weight array, in memory or stored (an array used twice, such as a tied embedding, may repeat). */
  weightArrays(w: W): Weight[];
  dashboardWeights(w: W, config: ModelConfig, layers: Iterable<number>): DashboardWeights;
}

/**
 * A family bound to one model's weights, processed as asked: what engines run. The unprocessed weights
 * are kept so that `withProcessing` can derive another processing without reloading.
 */
export class Model {
  readonly weights: unknown;

  private constructor(
    readonly family: ModelFamily<unknown>,
    readonly config: ModelConfig,
    private readonly raw: unknown,
    readonly processing: WeightProcessing,
  ) {
    if (!family.processings.includes(processing)) {
      throw new Error(
        `the ${family.name} family offers weight processing ${family.processings.join(', ')}, not ${processing}`,
      );
    }
    this.weights = family.processWeights(raw, config, processing);
  }

  static bind<W>(
    family: ModelFamily<W>,
    config: ModelConfig,
    weights: W,
    processing: WeightProcessing = 'none',
  ): Model {
    return new Model(family as ModelFamily<unknown>, config, weights, processing);
  }

  withProcessing(processing: WeightProcessing): Model {
    return processing === this.processing ? this : new Model(this.family, this.config, this.raw, processing);
  }

  /** Bytes of the weights a full forward reads, each array counted once, wherever it is. */
  get weightBytes(): number {
    return [...new Set(this.family.weightArrays(this.weights))].reduce((n, a) => n + a.byteLength, 0);
  }

  /** Bytes of those weights held in memory (an ONNX graph carries these inside its protobuf). */
  get memoryWeightBytes(): number {
    return [...new Set(this.family.weightArrays(this.weights))]
      .filter((a) => a instanceof Float32Array)
      .reduce((n, a) => n + a.byteLength, 0);
  }

  embed<T>(o: Ops<T>, ids: T, hook: HookFn<T>): ForwardStart<T> | undefined {
    return o.scope('embed', () => this.family.embed(o, this.config, this.weights, ids, hook));
  }

  block<T>(o: Ops<T>, layer: number, x: T, state: Record<string, T>, hook: HookFn<T>): T | undefined {
    return o.scope(`blocks.${layer}`, () =>
      this.family.block(o, this.config, this.weights, layer, x, state, hook),
    );
  }

  final<T>(o: Ops<T>, x: T, hook: HookFn<T>): T | undefined {
    return o.scope('final', () => this.family.final(o, this.config, this.weights, x, hook));
  }

  unembed<T>(o: Ops<T>, x: T): T {
    return o.scope('unembed', () => this.family.unembed(o, this.config, this.weights, x));
  }

  dashboardWeights(layers: Iterable<number>): DashboardWeights {
    return this.family.dashboardWeights(this.weights, this.config, layers);
  }
}

/**
 * The forward up to the final normalisation: embedding, every block, final norm. `step` wraps each part
 * (the eager engine frees a block's intermediates there); undefined once a hook stopped the forward.
 */
export function runForward<T>(
  o: Ops<T>,
  model: Model,
  ids: T,
  hook: HookFn<T>,
  step: <R>(part: () => R) => R = (part) => part(),
): T | undefined {
  const start = step(() => model.embed(o, ids, hook));
  if (start === undefined) return undefined;
  const { state } = start;
  let x = start.x;
  for (let l = 0; l < model.config.nLayers; l++) {
    const input = x;
    const next = step(() => model.block(o, l, input, state, hook));
    if (next === undefined) return undefined;
    x = next;
  }
  return step(() => model.final(o, x, hook));
}
