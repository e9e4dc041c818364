/**
 * One SAE being trained: its parameters, Adam state, schedules, firing statistics and normalisation
 * factors, and the training step (SAELens's `SAETrainer._train_step` for a single SAE):
 *   1. close the feature-sampling window every `feature_sampling_window` steps;
 *   2. forward and backward of the architecture, with the dead-feature mask of this step; under
 *      `normalize_sae_decoder`, each W_dec row's gradient loses its component along the row;
 *   3. read back losses, gradient norm and per-feature firing counts in one transfer; stop with a UserError
 *      before touching the parameters if anything is not finite;
 *   4. clip the global gradient norm, Adam update at this step's lr, re-project W_dec rows to unit norm;
 *   5. update firing statistics, batchtopk's threshold, step and token counters.
 * Steps 2 and 4 run in a step engine (engines/): TensorFlow.js or onnxruntime. `trainSteps` takes
 * consecutive batches, which an engine with chunks computes several at a time (3 and 5 then follow per step).
 */
import { UserError } from '../pipeline/errors.js';
import { outputWidth, totalTrainingSteps } from './config.js';
import type { SaeTrainingConfig } from './config.js';
import { architectureOf } from './architectures/registry.js';
import type { Architecture, ParamName } from './architectures/types.js';
import { columnMean, geometricMedian } from './b-dec-init.js';
import { createStepEngine } from './engines/create-step-engine.js';
import type { StepEngineOptions } from './engines/create-step-engine.js';
import type { ComputedStep, StepEngine, StepEngineName, StepRequest } from './engines/step-engine.js';
import { FiringStats } from './firing-stats.js';
import type { SparsityReport } from './firing-stats.js';
import { inferenceWeights } from './fold.js';
import type { HostTensor, InferenceWeights } from './fold.js';
import { initialParamValues } from './init.js';
import { NormEstimate } from './norm-scaling.js';
import { learningRateAt, sparsityCoefficient } from './optim/schedules.js';

export interface SaeStepMetrics {
  sae: string;
  /** 0-based index of the step just taken. */
  step: number;
  /** Tokens this SAE has trained on, including this step. */
  tokens: number;
  /** Sum of the loss terms. */
  loss: number;
  /** SAELens's loss names: mse_loss, l1_loss, l0_loss, auxiliary_reconstruction_loss. */
  losses: Record<string, number>;
  /** Mean over tokens of Σ_d (y - ŷ)², in normalised units (= losses.mse_loss). */
  mse: number;
  /** Mean number of firing features per token. */
  l0: number;
  explained_variance: number;
  /** Features that did not fire in the last dead_feature_window steps (0 until that many steps have run). */
  dead_features: number;
  /** Features that have not fired once since training began. */
  never_fired_features: number;
  /** Learning rate and sparsity coefficient used for this step. */
  lr: number;
  coefficients: Record<string, number>;
  /** Global gradient norm before clipping. */
  grad_norm: number;
  topk_threshold?: number;
  /** Present when a feature-sampling window closed at the start of this step. */
  sparsity?: SparsityReport;
}

/** One batch for `trainSteps`: x [rows, d_in], y [rows, d_out] for transcoders (raw activations). */
export interface StepBatch {
  x: Float32Array;
  y: Float32Array | null;
  rows: number;
}

type Coefficient = ReturnType<typeof sparsityCoefficient>;

interface ReadStep {
  losses: Record<string, number>;
  loss: number;
  totalVariance: number;
  gradNorm: number;
  stats: Record<string, number>;
  fired: Float32Array;
  finite: boolean;
}

/** Unpacks a step's readback: [losses..., total variance, Σ grad², stats..., firing counts]. */
function readStep({ readback: values, lossNames, statNames }: ComputedStep): ReadStep {
  const losses: Record<string, number> = {};
  lossNames.forEach((n, i) => (losses[n] = values[i]!));
  let idx = lossNames.length;
  const totalVariance = values[idx++]!;
  const gradNorm = Math.sqrt(values[idx++]!);
  const stats: Record<string, number> = {};
  for (const n of statNames) stats[n] = values[idx++]!;
  const loss = Object.values(losses).reduce((a, b) => a + b, 0);
  const fired = values.subarray(idx);
  return {
    losses,
    loss,
    totalVariance,
    gradNorm,
    stats,
    fired,
    finite: Number.isFinite(loss) && Number.isFinite(gradNorm),
  };
}

function hasNonFinite(data: Float32Array): number {
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i]!)) return i;
  return -1;
}

export class TrainingSae {
  readonly engine: StepEngine;
  readonly stats: FiringStats;
  /** Optimiser steps taken. */
  step = 0;
  tokens = 0;
  /** batchtopk's running threshold (float64, as SAELens keeps it). */
  topkThreshold = 0;
  bDecInitialized: boolean;
  /** Norm-scaling estimates (null when normalize_activations is none). */
  readonly normIn: NormEstimate | null;
  readonly normOut: NormEstimate | null;
  private disposed = false;
  private readonly arch: Architecture;

  private constructor(
    readonly cfg: SaeTrainingConfig,
    engine: StepEngine,
    /** State of the initialisation generator after drawing; nothing random happens after that. */
    readonly rngState: number,
  ) {
    this.engine = engine;
    this.arch = architectureOf(cfg.architecture);
    this.stats = new FiringStats(cfg.d_sae);
    this.bDecInitialized = cfg.b_dec_init_method === 'zeros';
    const normalised = cfg.normalize_activations === 'expected_average_only_in';
    this.normIn = normalised ? new NormEstimate(cfg.d_in) : null;
    this.normOut = normalised && cfg.d_out !== null ? new NormEstimate(cfg.d_out) : null;
  }

  static create(
    cfg: SaeTrainingConfig,
    engine: StepEngineName = 'tfjs',
    options: StepEngineOptions = {},
  ): TrainingSae {
    const init = initialParamValues(cfg);
    return new TrainingSae(
      cfg,
      createStepEngine(engine, cfg, init.values as Record<string, HostTensor>, options),
      init.rngState,
    );
  }

  /** Builds an SAE from saved host parameters (resumption); Adam and statistics are restored by the caller. */
  static fromHostParams(
    cfg: SaeTrainingConfig,
    values: Record<string, HostTensor>,
    rngState: number,
    engine: StepEngineName = 'tfjs',
  ): TrainingSae {
    return new TrainingSae(cfg, createStepEngine(engine, cfg, values), rngState);
  }

  get name(): string {
    return this.cfg.name;
  }

  get done(): boolean {
    return this.tokens >= this.cfg.training_tokens;
  }

  get totalSteps(): number {
    return totalTrainingSteps(this.cfg);
  }

  /** Batches still needed for the normalisation estimate. */
  get pendingNormBatches(): number {
    return this.normIn === null ? 0 : Math.max(0, this.cfg.n_batches_for_norm_estimate - this.normIn.batches);
  }

  observeNormBatch(x: Float32Array, y: Float32Array | null, rows: number): void {
    this.normIn?.observe(x, rows);
    if (this.normOut !== null && y !== null) this.normOut.observe(y, rows);
  }

  get scaleIn(): number {
    return this.normIn === null || this.normIn.batches === 0 ? 1 : this.normIn.scalingFactor();
  }

  /** For an SAE the target is the input and shares its factor. */
  get scaleOut(): number {
    if (this.cfg.d_out === null) return this.scaleIn;
    return this.normOut === null || this.normOut.batches === 0 ? 1 : this.normOut.scalingFactor();
  }

  private initBDec(target: Float32Array, rows: number): void {
    const width = outputWidth(this.cfg);
    const scale = this.scaleOut;
    const sample = scale === 1 ? target : Float32Array.from(target, (v) => v * scale);
    const b =
      this.cfg.b_dec_init_method === 'mean'
        ? columnMean(sample, rows, width)
        : geometricMedian(sample, rows, width);
    this.engine.setParam('b_dec', Float32Array.from(b));
    this.bDecInitialized = true;
  }

  /**
   * One optimiser step on `rows` tokens: x [rows, d_in] and, for transcoders, the target y [rows, d_out]
   * (raw, un-normalised activations). Throws a UserError, leaving the parameters as they were, when the
   * loss or the gradients are not finite.
   */
  async trainStep(x: Float32Array, y: Float32Array | null, rows: number): Promise<SaeStepMetrics> {
    return (await this.trainSteps([{ x, y, rows }]))[0]!;
  }

  /**
   * Consecutive optimiser steps, one per batch, with the same results as as many `trainStep` calls. An
   * engine with chunks runs batches of equal rows together (up to its `maxChunkSteps`); when a step
   * diverges, the steps before it are kept and a UserError names it.
   */
  async trainSteps(batches: readonly StepBatch[]): Promise<SaeStepMetrics[]> {
    if (this.disposed) throw new Error(`SAE '${this.name}' was disposed`);
    const transcoder = this.cfg.d_out !== null;
    for (const b of batches)
      if (transcoder && b.y === null) throw new Error(`transcoder '${this.name}' needs a target batch`);
    const chunked = this.engine.maxChunkSteps > 1 && this.engine.computeChunk !== undefined;
    const out: SaeStepMetrics[] = [];
    let i = 0;
    while (i < batches.length) {
      let n = 1;
      if (chunked) {
        while (
          i + n < batches.length &&
          n < this.engine.maxChunkSteps &&
          batches[i + n]!.rows === batches[i]!.rows
        )
          n++;
      }
      const group = batches.slice(i, i + n);
      if (!this.bDecInitialized) this.initBDec(transcoder ? group[0]!.y! : group[0]!.x, group[0]!.rows);
      out.push(...(n > 1 ? await this.chunk(group) : [await this.single(group[0]!)]));
      i += n;
    }
    return out;
  }

  /**
   * What step `this.step + offset` feeds the engine. A single step carries the dead-feature mask as of now;
   * a chunk's steps carry none (the engine derives them from the steps since each feature fired).
   */
  private request(
    batch: StepBatch,
    offset: number,
    withDeadMask: boolean,
  ): { req: StepRequest; coefficient: Coefficient } {
    const cfg = this.cfg;
    const usesDeadMask = withDeadMask && this.arch.auxK === true;
    const numDead = usesDeadMask ? this.stats.deadCount(cfg.dead_feature_window) : 0;
    const coefficient = sparsityCoefficient(cfg, this.step + offset);
    return {
      coefficient,
      req: {
        x: batch.x,
        y: batch.y,
        rows: batch.rows,
        coefficient: coefficient?.value ?? 0,
        deadMask: numDead > 0 ? this.stats.deadMask(cfg.dead_feature_window) : null,
        numDead,
        scaleIn: this.scaleIn,
        scaleOut: this.scaleOut,
        lr: learningRateAt(cfg, this.step + offset),
      },
    };
  }

  private async single(batch: StepBatch): Promise<SaeStepMetrics> {
    const { req, coefficient } = this.request(batch, 0, true);
    const computed = await this.engine.compute(req);
    const read = readStep(computed);
    if (!read.finite) {
      this.engine.discard();
      throw this.divergence(read.losses, read.gradNorm);
    }
    this.engine.commit(read.gradNorm);
    return this.record(read, req, coefficient);
  }

  private async chunk(batches: readonly StepBatch[]): Promise<SaeStepMetrics[]> {
    const planned = batches.map((b, i) => this.request(b, i, false));
    const usesDeadMask = this.arch.auxK === true;
    const computed = await this.engine.computeChunk!(
      planned.map((p) => p.req),
      usesDeadMask ? this.stats.sinceFired : null,
    );
    const reads = computed.map(readStep);
    const good = reads.findIndex((r) => !r.finite);
    await this.engine.commitChunk!(good < 0 ? reads.length : good);
    const out: SaeStepMetrics[] = [];
    for (let i = 0; i < (good < 0 ? reads.length : good); i++)
      out.push(this.record(reads[i]!, planned[i]!.req, planned[i]!.coefficient));
    if (good >= 0) throw this.divergence(reads[good]!.losses, reads[good]!.gradNorm);
    return out;
  }

  /** Host-side bookkeeping of a committed step: sampling window, firing statistics, metrics, counters. */
  private record(read: ReadStep, req: StepRequest, coefficient: Coefficient): SaeStepMetrics {
    const cfg = this.cfg;
    let sparsity: SparsityReport | undefined;
    if ((this.step + 1) % cfg.feature_sampling_window === 0) sparsity = this.stats.closeWindow();
    this.stats.record(read.fired, req.rows);
    if (this.arch.batchSelection === true && read.stats.min_positive_act! < 1e30) {
      const rate = cfg.topk_threshold_lr;
      this.topkThreshold = (1 - rate) * this.topkThreshold + rate * read.stats.min_positive_act!;
    }
    let l0 = 0;
    for (let j = 0; j < read.fired.length; j++) l0 += read.fired[j]!;
    const metrics: SaeStepMetrics = {
      sae: this.name,
      step: this.step,
      tokens: this.tokens + req.rows,
      loss: read.loss,
      losses: read.losses,
      mse: read.losses.mse_loss!,
      l0: l0 / req.rows,
      explained_variance: 1 - read.losses.mse_loss! / read.totalVariance,
      dead_features: this.stats.deadCount(cfg.dead_feature_window),
      never_fired_features: this.stats.neverFiredCount(),
      lr: req.lr,
      coefficients: coefficient === null ? {} : { [coefficient.name]: coefficient.value },
      grad_norm: read.gradNorm,
    };
    if (this.arch.batchSelection === true) metrics.topk_threshold = this.topkThreshold;
    if (sparsity) metrics.sparsity = sparsity;
    this.step += 1;
    this.tokens += req.rows;
    return metrics;
  }

  private divergence(losses: Record<string, number>, gradNorm: number): UserError {
    const badParams = this.nonFiniteParams();
    const lossText = Object.entries(losses)
      .map(([n, v]) => `${n}=${v}`)
      .join(', ');
    const what =
      badParams.length > 0
        ? `parameter${badParams.length > 1 ? 's' : ''} ${badParams.join(', ')} contain NaN/inf`
        : Object.values(losses).some((v) => !Number.isFinite(v))
          ? `the loss is not finite (${lossText})`
          : `the gradient norm is ${gradNorm} (${lossText})`;
    return new UserError(
      `step ${this.step}: SAE '${this.name}' diverged: ${what}. Its parameters are kept from the last good step ` +
        `(${this.step - 1}); try a lower lr (now ${this.cfg.lr}) or check the activations.`,
    );
  }

  /** Host copies of the training parameters. */
  hostParams(): Record<string, HostTensor> {
    return this.engine.hostParams();
  }

  /** Host copies of Adam's moments. */
  hostMoments(which: 'm' | 'v'): Record<string, HostTensor> {
    return this.engine.hostMoments(which);
  }

  get paramNames(): ParamName[] {
    return this.engine.paramNames;
  }

  /** The weights to save: normalisation folded in, SAELens names and layout. */
  inferenceWeights(params = this.hostParams()): InferenceWeights {
    return inferenceWeights({
      cfg: this.cfg,
      params,
      topkThreshold: this.topkThreshold,
      scaleIn: this.scaleIn,
      scaleOut: this.scaleOut,
    });
  }

  /** Names of training parameters holding NaN or inf. */
  nonFiniteParams(params = this.hostParams()): string[] {
    return Object.entries(params)
      .filter(([, t]) => hasNonFinite(t.data) >= 0)
      .map(([n]) => n);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.engine.dispose();
  }
}
