/**
 * GPT-2 forward on onnxruntime-node's CPU kernels, multi-threaded, with the same hook names, shapes and
 * results as `Gpt2Model.runWithHooks` (captures and logits; no interventions or loss). Each distinct set of
 * captured hooks gets its own graph, stopped at its deepest hook, and its InferenceSession is cached.
 */
import { availableParallelism } from 'node:os';
import * as ort from 'onnxruntime-node';
import type { Gpt2Config } from '../../model/gpt2-config.js';
import type { Gpt2Weights } from '../../model/gpt2-weights.js';
import { planRun, validateTokenBatch } from '../../model/hook-points.js';
import type { Activation, TokenBatch } from '../../model/hook-points.js';
import { processWeights } from '../../model/process-weights.js';
import type { WeightProcessing } from '../../model/process-weights.js';
import { UserError } from '../../pipeline/errors.js';
import { INPUT_IDS, LOGITS, buildGpt2Graph } from './gpt2-graph.js';
import { encodeOnnxModel } from './onnx-proto.js';

export interface Gpt2OnnxOptions {
  /** Default `none`. */
  processing?: WeightProcessing;
  /** Intra-op threads; default os.availableParallelism(). */
  threads?: number;
}

export interface OnnxRunOptions {
  /** Hook names or glob patterns (`blocks.*.hook_resid_post`) to capture. */
  hooks?: string | readonly string[];
  /** Also return logits [batch, seq, vocab] (runs the whole model). */
  returnLogits?: boolean;
}

export interface OnnxRunResult {
  /** Captured activations by hook name, in execution order. */
  activations: Map<string, Activation>;
  logits?: Activation;
}

/** A serialised protobuf message may not reach 2 GiB; keep room for the graph itself. */
const PROTOBUF_LIMIT = 2 ** 31 - 2 ** 24;

export class Gpt2Onnx {
  private readonly weights: Gpt2Weights;
  private readonly threads: number;
  /** Sessions by `hook,hook,...|logits`; a pipeline asks for one hook set over and over. */
  private readonly sessions = new Map<string, Promise<ort.InferenceSession>>();
  private disposed = false;

  constructor(
    readonly config: Gpt2Config,
    weights: Gpt2Weights,
    options: Gpt2OnnxOptions = {},
  ) {
    this.weights = processWeights(weights, config, options.processing ?? 'none');
    this.threads = options.threads ?? availableParallelism();
    if (!Number.isInteger(this.threads) || this.threads < 1) {
      throw new UserError(`threads must be a positive integer, got ${options.threads}`);
    }
  }

  async runWithHooks(tokens: TokenBatch, options: OnnxRunOptions = {}): Promise<OnnxRunResult> {
    if (this.disposed) throw new Error('Gpt2Onnx: used after dispose()');
    validateTokenBatch(this.config, tokens);
    const plan = planRun(this.config, { hooks: options.hooks, returnLogits: options.returnLogits });
    if (plan.stopAfter < 0) return { activations: new Map() };
    const key = `${plan.capture.map((h) => h.name).join(',')}|${plan.needLogits}`;
    let session = this.sessions.get(key);
    if (!session) {
      const graph = buildGpt2Graph(this.config, this.weights, plan);
      const bytes = graph.model.graph.initializers.reduce((n, t) => n + t.data.byteLength, 0);
      if (bytes >= PROTOBUF_LIMIT) {
        throw new UserError(
          `Gpt2Onnx: the graph for these hooks holds ${(bytes / 2 ** 30).toFixed(2)} GiB of weights, over ` +
            `protobuf's 2 GiB limit for one ONNX model (external weight files are not supported)`,
        );
      }
      session = ort.InferenceSession.create(encodeOnnxModel(graph.model), {
        intraOpNumThreads: this.threads,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        graphOptimizationLevel: 'all',
      });
      this.sessions.set(key, session);
      session.catch(() => this.sessions.delete(key));
    }
    const s = await session;
    const [batch, seq] = tokens.shape;
    const feeds = { [INPUT_IDS]: new ort.Tensor('int32', tokens.data, [batch, seq]) };
    const out = await s.run(feeds);
    const activations = new Map<string, Activation>();
    for (const h of plan.capture) activations.set(h.name, toActivation(out[h.name]!));
    const result: OnnxRunResult = { activations };
    if (plan.needLogits) result.logits = toActivation(out[LOGITS]!);
    return result;
  }

  /** Releases every cached session; the engine cannot run afterwards. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    const all = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of await Promise.allSettled(all)) if (s.status === 'fulfilled') await s.value.release();
  }
}

function toActivation(t: ort.Tensor): Activation {
  if (t.type !== 'float32') throw new Error(`Gpt2Onnx: output of type ${t.type}, expected float32`);
  return { shape: t.dims.map(Number), data: t.data as Float32Array };
}
