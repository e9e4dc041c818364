/**
 * The model on onnxruntime-node's kernels, multi-threaded: the family's forward built into an ONNX graph
 * (model-graph.ts), with the same hook names, shapes and results as the TensorFlow.js runner: captures,
 * logits, next-token losses, and hook replacements given as data (zero ablation, an SAE's reconstruction).
 * `runVariants` runs a clean forward and patched ones in one session run and compares their predictions
 * there (KL), so that no [tokens, vocab] logits reach the host. Each distinct request gets its own graph,
 * stopped at its deepest hook, and its InferenceSession is cached. A model loaded into a weight file
 * (src/io/weight-file.ts) has its weights mapped from that file by every session (session-source.ts), so
 * more sessions cost no more weight memory.
 */
import { availableParallelism } from 'node:os';
import * as ort from 'onnxruntime-node';
import type { ModelConfig } from '../../model/config.js';
import type { Model } from '../../model/family.js';
import { planRun, validateTokenBatch } from '../../model/hook-points.js';
import type { Activation, TokenBatch } from '../../model/hook-points.js';
import type { WeightProcessing } from '../../model/process-weights.js';
import { checkReplacement } from '../../model/replacement.js';
import type { ReplacementSae } from '../../model/replacement.js';
import type {
  ModelRunner,
  Replacements,
  RunOptions,
  RunResult,
  VariantResult,
  VariantsOptions,
} from '../../model/runner.js';
import { planOf } from '../../model/runner.js';
import { UserError } from '../../pipeline/errors.js';
import {
  INPUT_IDS,
  KEEP_MASK,
  KL,
  LOGITS,
  LOSS,
  buildModelGraph,
  forwardPrefix,
  saeOutputNames,
} from './model-graph.js';
import type { ForwardSpec } from './model-graph.js';
import { createSession } from './session-source.js';
import { onnxSessionOptions } from './session-options.js';

export interface OnnxRunnerOptions {
  /** Intra-op threads; default os.availableParallelism(). */
  threads?: number;
}

export { PROTOBUF_LIMIT } from './onnx-proto.js';

export class OnnxRunner implements ModelRunner {
  readonly engine = 'onnx' as const;
  /** Bytes of the model's weights in a graph that runs to the logits (a tied embedding counted once). */
  readonly weightBytes: number;
  private readonly threads: number;
  /** Sessions by request (see keyOf); a pipeline asks for the same one over and over. */
  private readonly sessions = new Map<
    string,
    { session: Promise<ort.InferenceSession>; usesKeepMask: boolean }
  >();
  private readonly saeIds = new WeakMap<ReplacementSae['tensors'], number>();
  private nextSaeId = 0;
  private disposed = false;

  constructor(
    readonly model: Model,
    options: OnnxRunnerOptions = {},
  ) {
    this.weightBytes = model.weightBytes;
    this.threads = options.threads ?? availableParallelism();
    if (!Number.isInteger(this.threads) || this.threads < 1) {
      throw new UserError(`threads must be a positive integer, got ${options.threads}`);
    }
  }

  get config(): ModelConfig {
    return this.model.config;
  }

  get processing(): WeightProcessing {
    return this.model.processing;
  }

  async runWithHooks(tokens: TokenBatch, options: RunOptions = {}): Promise<RunResult> {
    const interventions = this.checked(options.interventions ?? {});
    const plan = planOf(this.config, options, Object.keys(interventions));
    const spec: ForwardSpec = {
      plan,
      interventions,
      logits: options.returnLogits === true,
      loss: options.returnLoss === true,
    };
    const out = await this.run(tokens, [spec], options.keep);
    return out === undefined
      ? { activations: new Map(), saeOutputs: new Map() }
      : this.forwardResult(out, spec, 0);
  }

  /**
   * A clean forward (capturing `hooks`, with its losses) and one patched forward per variant, with their
   * losses and, with `kl`, KL(clean ‖ patched) per position, all in one session run. Each patched forward
   * reuses the clean one up to its first replaced hook.
   */
  async runVariants(
    tokens: TokenBatch,
    options: VariantsOptions,
  ): Promise<{ clean: RunResult; variants: VariantResult[] }> {
    const kl = options.kl === true;
    const clean: ForwardSpec = {
      plan: planRun(this.config, { hooks: options.hooks, returnLoss: true }),
      loss: true,
    };
    const specs: ForwardSpec[] = [
      clean,
      ...options.variants
        .map((variant) => this.checked(variant))
        .map((interventions) => ({
          plan: planRun(this.config, { interventions: Object.keys(interventions), returnLoss: true }),
          interventions,
          loss: true,
          kl,
        })),
    ];
    const out = (await this.run(tokens, specs, options.keep))!;
    return {
      clean: this.forwardResult(out, clean, 0),
      variants: specs.slice(1).map((spec, j) => {
        const r = this.forwardResult(out, spec, j + 1);
        const prefix = forwardPrefix(j + 1);
        return {
          lossPerToken: r.lossPerToken!,
          ...(kl ? { kl: toActivation(out[`${prefix}${KL}`]!) } : {}),
          saeOutputs: r.saeOutputs,
        };
      }),
    };
  }

  /** Replacements checked before anything else reads their hooks, so that errors say where they came from. */
  private checked(interventions: Replacements): Replacements {
    for (const [hook, r] of Object.entries(interventions)) checkReplacement(this.config, hook, r);
    return interventions;
  }

  /** Runs the graph of `specs` (cached by what it computes); undefined when it would have no output. */
  private async run(
    tokens: TokenBatch,
    specs: ForwardSpec[],
    keep: Uint8Array | undefined,
  ): Promise<ort.InferenceSession.ReturnType | undefined> {
    if (this.disposed) throw new Error('OnnxRunner: used after dispose()');
    validateTokenBatch(this.config, tokens);
    const [batch, seq] = tokens.shape;
    if (keep !== undefined && keep.length !== batch * seq) {
      throw new UserError(`keep mask has ${keep.length} entries, expected ${batch * seq} (batch x seq)`);
    }
    const key = this.keyOf(specs);
    let entry = this.sessions.get(key);
    if (!entry) {
      const graph = buildModelGraph(this.model, specs);
      if (graph.outputNames.length === 0) return undefined;
      const session = createSession(graph.model, {
        ...onnxSessionOptions({ threads: this.threads }),
        // Extended fusions (Add + LayerNorm into SkipLayerNormalization, ...) would apply to the clean
        // forward but not to a patched one that branches off at that hook, so an exact replacement would no
        // longer give bit-identical losses; with several forwards, only the basic optimisations run.
        graphOptimizationLevel: specs.length > 1 ? 'basic' : 'all',
      });
      entry = { session, usesKeepMask: graph.usesKeepMask };
      this.sessions.set(key, entry);
      session.catch(() => this.sessions.delete(key));
    }
    const s = await entry.session;
    const feeds: Record<string, ort.Tensor> = {
      [INPUT_IDS]: new ort.Tensor('int32', tokens.data, [batch, seq]),
    };
    if (entry.usesKeepMask) {
      const mask = keep === undefined ? new Float32Array(batch * seq).fill(1) : Float32Array.from(keep);
      feeds[KEEP_MASK] = new ort.Tensor('float32', mask, [batch, seq]);
    }
    return s.run(feeds);
  }

  private forwardResult(out: ort.InferenceSession.ReturnType, spec: ForwardSpec, i: number): RunResult {
    const prefix = forwardPrefix(i);
    const activations = new Map<string, Activation>();
    for (const h of spec.plan.capture) activations.set(h.name, toActivation(out[`${prefix}${h.name}`]!));
    const result: RunResult = { activations, saeOutputs: new Map() };
    if (spec.logits) result.logits = toActivation(out[`${prefix}${LOGITS}`]!);
    if (spec.loss) result.lossPerToken = toActivation(out[`${prefix}${LOSS}`]!);
    for (const [hook, r] of Object.entries(spec.interventions ?? {})) {
      if (r.kind !== 'sae') continue;
      const names = saeOutputNames(prefix, hook);
      result.saeOutputs.set(hook, {
        features: toActivation(out[names.features]!),
        reconstruction: toActivation(out[names.reconstruction]!),
      });
    }
    return result;
  }

  /** Identifies a request: the plans, flags and replacements (SAE weights by identity, with their cfg). */
  private keyOf(specs: readonly ForwardSpec[]): string {
    return JSON.stringify(
      specs.map((f) => [
        f.plan.capture.map((h) => h.name),
        f.plan.stopAfter,
        f.plan.needLogits,
        Boolean(f.logits),
        Boolean(f.loss),
        Boolean(f.kl),
        Object.entries(f.interventions ?? {}).map(([hook, r]) =>
          r.kind === 'sae'
            ? [hook, r.kind, this.saeId(r.sae), r.sae.config, r.sae.kind, r.input ?? hook]
            : [hook, r.kind],
        ),
      ]),
    );
  }

  private saeId(sae: ReplacementSae): number {
    let id = this.saeIds.get(sae.tensors);
    if (id === undefined) {
      id = this.nextSaeId++;
      this.saeIds.set(sae.tensors, id);
    }
    return id;
  }

  /** Releases every cached session; the runner cannot run afterwards. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    const all = [...this.sessions.values()].map((e) => e.session);
    this.sessions.clear();
    for (const s of await Promise.allSettled(all)) if (s.status === 'fulfilled') await s.value.release();
  }
}

function toActivation(t: ort.Tensor): Activation {
  if (t.type !== 'float32') throw new Error(`OnnxRunner: output of type ${t.type}, expected float32`);
  return { shape: t.dims.map(Number), data: t.data as Float32Array };
}
