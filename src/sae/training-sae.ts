/**
 * One SAE being trained: its parameters, Adam state, schedules, firing statistics and normalisation
 * factors, and the training step (SAELens's `SAETrainer._train_step` for a single SAE):
 *   1. close the feature-sampling window every `feature_sampling_window` steps;
 *   2. forward and hand-written backward of the architecture, with the dead-feature mask of this step;
 *   3. under `normalize_sae_decoder`, remove from each W_dec row's gradient its component along the row;
 *   4. read back losses, gradient norm and per-feature firing counts in one transfer; stop with a UserError
 *      before touching the parameters if anything is not finite;
 *   5. clip the global gradient norm, Adam update at this step's lr, re-project W_dec rows to unit norm;
 *   6. update firing statistics, batchtopk's threshold, step and token counters.
 */
import * as tf from '@tensorflow/tfjs-core';
import { UserError } from '../pipeline/errors.js';
import { maxRowsPerChunk, outputWidth, totalTrainingSteps } from './config.js';
import type { SaeTrainingConfig } from './config.js';
import { ARCHITECTURE_MODULES } from './architectures/index.js';
import { columnSum, rowNorms } from './architectures/common.js';
import type { ArchitectureModule, Grads, ParamName, Params } from './architectures/types.js';
import { columnMean, geometricMedian } from './b-dec-init.js';
import { FiringStats } from './firing-stats.js';
import type { SparsityReport } from './firing-stats.js';
import { inferenceWeights } from './fold.js';
import type { HostTensor, InferenceWeights } from './fold.js';
import { initialParamValues, paramsToTensors } from './init.js';
import { NormEstimate } from './norm-scaling.js';
import { Adam, clipScale } from './optim/adam.js';
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
  dead_features: number;
  /** Learning rate and sparsity coefficient used for this step. */
  lr: number;
  coefficients: Record<string, number>;
  /** Global gradient norm before clipping. */
  grad_norm: number;
  topk_threshold?: number;
  /** Present when a feature-sampling window closed at the start of this step. */
  sparsity?: SparsityReport;
}

/** Per-step values the gradient pass needs besides the batch. */
interface StepScalars {
  coefficient: number;
  deadMaskData: Float32Array | null;
  numDead: number;
  scaleIn: number;
  scaleOut: number;
}

/** Gradients, and the readback [losses..., total variance, Σ grad², stats..., firing counts per feature]. */
interface GradientPass {
  grads: Record<string, tf.Tensor>;
  readback: tf.Tensor;
  lossNames: string[];
  statNames: string[];
}

function hasNonFinite(data: Float32Array): number {
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i]!)) return i;
  return -1;
}

export class TrainingSae {
  readonly module: ArchitectureModule;
  params: Params;
  readonly adam: Adam;
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

  private constructor(
    readonly cfg: SaeTrainingConfig,
    params: Params,
    /** State of the initialisation generator after drawing; nothing random happens after that. */
    readonly rngState: number,
  ) {
    this.module = ARCHITECTURE_MODULES[cfg.architecture];
    this.params = params;
    this.adam = new Adam(params, cfg.adam_beta1, cfg.adam_beta2);
    this.stats = new FiringStats(cfg.d_sae);
    this.bDecInitialized = cfg.b_dec_init_method === 'zeros';
    const normalised = cfg.normalize_activations === 'expected_average_only_in';
    this.normIn = normalised ? new NormEstimate(cfg.d_in) : null;
    this.normOut = normalised && cfg.d_out !== null ? new NormEstimate(cfg.d_out) : null;
  }

  static create(cfg: SaeTrainingConfig): TrainingSae {
    const init = initialParamValues(cfg);
    return new TrainingSae(cfg, paramsToTensors(init.values), init.rngState);
  }

  /** Builds an SAE from saved host parameters (resumption); Adam and statistics are restored by the caller. */
  static fromHostParams(
    cfg: SaeTrainingConfig,
    values: Record<string, HostTensor>,
    rngState: number,
  ): TrainingSae {
    return new TrainingSae(cfg, paramsToTensors(values), rngState);
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

  private replaceParam(name: ParamName, value: tf.Tensor): void {
    this.params[name]?.dispose();
    this.params[name] = tf.keep(value);
  }

  private initBDec(target: Float32Array, rows: number): void {
    const width = outputWidth(this.cfg);
    const scale = this.scaleOut;
    const sample = scale === 1 ? target : Float32Array.from(target, (v) => v * scale);
    const b =
      this.cfg.b_dec_init_method === 'mean'
        ? columnMean(sample, rows, width)
        : geometricMedian(sample, rows, width);
    this.replaceParam('b_dec', tf.tensor1d(Float32Array.from(b)));
    this.bDecInitialized = true;
  }

  /**
   * One optimiser step on `rows` tokens: x [rows, d_in] and, for transcoders, the target y [rows, d_out]
   * (raw, un-normalised activations). Throws a UserError, leaving the parameters as they were, when the
   * loss or the gradients are not finite.
   */
  trainStep(x: Float32Array, y: Float32Array | null, rows: number): SaeStepMetrics {
    if (this.disposed) throw new Error(`SAE '${this.name}' was disposed`);
    const cfg = this.cfg;
    const transcoder = cfg.d_out !== null;
    if (transcoder && y === null) throw new Error(`transcoder '${this.name}' needs a target batch`);
    if (!this.bDecInitialized) this.initBDec(transcoder ? y! : x, rows);

    let sparsity: SparsityReport | undefined;
    if ((this.step + 1) % cfg.feature_sampling_window === 0) sparsity = this.stats.closeWindow();

    const lr = learningRateAt(cfg, this.step);
    const coefficient = sparsityCoefficient(cfg, this.step);
    const usesDeadMask = cfg.architecture === 'topk' || cfg.architecture === 'batchtopk';
    const numDead = usesDeadMask ? this.stats.deadCount(cfg.dead_feature_window) : 0;
    const deadMaskData = numDead > 0 ? this.stats.deadMask(cfg.dead_feature_window) : null;
    const scaleIn = this.scaleIn;
    const scaleOut = this.scaleOut;

    const step: StepScalars = {
      coefficient: coefficient?.value ?? 0,
      deadMaskData,
      numDead,
      scaleIn,
      scaleOut,
    };
    const { grads, readback, lossNames, statNames } =
      rows > maxRowsPerChunk(cfg)
        ? this.chunkedGradients(x, y, rows, maxRowsPerChunk(cfg), step)
        : this.wholeBatchGradients(x, y, rows, step);
    const values = readback.dataSync() as Float32Array;
    readback.dispose();

    const losses: Record<string, number> = {};
    lossNames.forEach((n, i) => (losses[n] = values[i]!));
    let idx = lossNames.length;
    const totalVariance = values[idx++]!;
    const gradNorm = Math.sqrt(values[idx++]!);
    const stats: Record<string, number> = {};
    for (const n of statNames) stats[n] = values[idx++]!;
    const fired = values.subarray(idx);
    const loss = Object.values(losses).reduce((a, b) => a + b, 0);

    if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
      for (const t of Object.values(grads)) t.dispose();
      throw this.divergence(losses, gradNorm);
    }

    const scale = clipScale(gradNorm, cfg.max_grad_norm);
    this.params = this.adam.update(this.params, grads as Grads, lr, scale);
    for (const t of Object.values(grads)) t.dispose();
    if (cfg.normalize_sae_decoder) {
      const w = this.params.W_dec as tf.Tensor2D;
      this.replaceParam(
        'W_dec',
        tf.tidy(() => tf.div(w, tf.reshape(rowNorms(w), [-1, 1]))),
      );
    }

    this.stats.record(fired, rows);
    if (cfg.architecture === 'batchtopk' && stats.min_positive_act! < 1e30) {
      const rate = cfg.topk_threshold_lr;
      this.topkThreshold = (1 - rate) * this.topkThreshold + rate * stats.min_positive_act!;
    }
    let l0 = 0;
    for (let j = 0; j < fired.length; j++) l0 += fired[j]!;
    const metrics: SaeStepMetrics = {
      sae: this.name,
      step: this.step,
      tokens: this.tokens + rows,
      loss,
      losses,
      mse: losses.mse_loss!,
      l0: l0 / rows,
      explained_variance: 1 - losses.mse_loss! / totalVariance,
      dead_features: this.stats.deadCount(cfg.dead_feature_window),
      lr,
      coefficients: coefficient === null ? {} : { [coefficient.name]: coefficient.value },
      grad_norm: gradNorm,
    };
    if (cfg.architecture === 'batchtopk') metrics.topk_threshold = this.topkThreshold;
    if (sparsity) metrics.sparsity = sparsity;
    this.step += 1;
    this.tokens += rows;
    return metrics;
  }

  /** Forward + backward of the whole batch at once (what every step below `max_rows_per_chunk` runs). */
  private wholeBatchGradients(
    x: Float32Array,
    y: Float32Array | null,
    rows: number,
    step: StepScalars,
  ): GradientPass {
    const cfg = this.cfg;
    const transcoder = cfg.d_out !== null;
    let names = { lossNames: [] as string[], statNames: [] as string[] };
    const out = tf.tidy(() => {
      const xRaw = tf.tensor2d(x, [rows, cfg.d_in]);
      const xs = step.scaleIn === 1 ? xRaw : tf.mul(xRaw, step.scaleIn);
      let target: tf.Tensor2D = xs as tf.Tensor2D;
      if (transcoder) {
        const yRaw = tf.tensor2d(y!, [rows, cfg.d_out!]);
        target = (step.scaleOut === 1 ? yRaw : tf.mul(yRaw, step.scaleOut)) as tf.Tensor2D;
      }
      const input = {
        x: xs as tf.Tensor2D,
        target,
        coefficient: step.coefficient,
        deadMask: step.deadMaskData === null ? null : tf.tensor1d(step.deadMaskData),
        numDead: step.numDead,
      };
      const fwd = this.module.forward(this.params, input, cfg);
      const g: Grads = this.module.backward(this.params, input, fwd, cfg);
      if (cfg.normalize_sae_decoder)
        g.W_dec = removeParallelComponent(g.W_dec as tf.Tensor2D, this.params.W_dec as tf.Tensor2D);
      const gradSq = tf.addN(Object.values(g).map((t) => tf.sum(tf.square(t!))));
      const fired = columnSum(tf.step(fwd.featureActs) as tf.Tensor2D);
      const centred = tf.sub(target, tf.mean(target, 0));
      const totalVariance = tf.div(tf.sum(tf.square(centred)), rows);
      const lossNames = Object.keys(fwd.losses);
      const statNames = Object.keys(fwd.stats ?? {});
      const scalars = [
        ...lossNames.map((n) => fwd.losses[n]!),
        totalVariance,
        gradSq,
        ...statNames.map((n) => fwd.stats![n]!),
      ];
      names = { lossNames, statNames };
      return { grads: g as Record<string, tf.Tensor>, readback: tf.concat([tf.stack(scalars), fired]) };
    });
    return { ...out, ...names };
  }

  /**
   * Gradient accumulation for a batch above `max_rows_per_chunk` rows: forward + backward per row chunk,
   * each chunk's losses and gradients (means over its rows) weighted by chunk rows / batch rows, so their
   * sum is the whole batch's mean up to float rounding. Firing counts add up, stats take their minimum,
   * and the explained-variance denominator is centred on the whole batch's mean. Returns the readback in
   * the unchunked layout.
   */
  private chunkedGradients(
    x: Float32Array,
    y: Float32Array | null,
    rows: number,
    chunkRows: number,
    step: StepScalars,
  ): GradientPass {
    const cfg = this.cfg;
    const transcoder = cfg.d_out !== null;
    // Even chunks: ceil(rows / chunks) <= chunkRows.
    const count = Math.ceil(rows / chunkRows);
    const size = Math.ceil(rows / count);
    const bounds: [number, number][] = [];
    for (let start = 0; start < rows; start += size) bounds.push([start, Math.min(size, rows - start)]);

    const whole = tf.tidy(() => {
      const xRaw = tf.tensor2d(x, [rows, cfg.d_in]);
      const xs = (step.scaleIn === 1 ? xRaw : tf.mul(xRaw, step.scaleIn)) as tf.Tensor2D;
      let target = xs;
      if (transcoder) {
        const yRaw = tf.tensor2d(y!, [rows, cfg.d_out!]);
        target = (step.scaleOut === 1 ? yRaw : tf.mul(yRaw, step.scaleOut)) as tf.Tensor2D;
      }
      return { xs, target, targetMean: tf.mean(target, 0) };
    });
    const deadMask = step.deadMaskData === null ? null : tf.tensor1d(step.deadMaskData);
    const kept: tf.Tensor[] = [whole.xs, whole.target, whole.targetMean];
    if (deadMask !== null) kept.push(deadMask);
    let acc: Record<string, tf.Tensor> | null = null;
    try {
      let batchThreshold: tf.Tensor | undefined;
      if (this.module.batchThreshold) {
        const xChunks = bounds.map(([start, n]) => tf.slice2d(whole.xs, [start, 0], [n, -1]));
        try {
          batchThreshold = this.module.batchThreshold(this.params, xChunks, cfg);
        } finally {
          for (const t of xChunks) t.dispose();
        }
        kept.push(batchThreshold);
      }
      let lossNames: string[] = [];
      let statNames: string[] = [];
      for (const [start, n] of bounds) {
        const previous: Record<string, tf.Tensor> | null = acc;
        acc = tf.tidy(() => {
          const xChunk = tf.slice2d(whole.xs, [start, 0], [n, -1]);
          const target = transcoder ? tf.slice2d(whole.target, [start, 0], [n, -1]) : xChunk;
          const input = {
            x: xChunk,
            target,
            coefficient: step.coefficient,
            deadMask,
            numDead: step.numDead,
            ...(batchThreshold === undefined ? {} : { batchThreshold }),
          };
          const fwd = this.module.forward(this.params, input, cfg);
          const g: Grads = this.module.backward(this.params, input, fwd, cfg);
          lossNames = Object.keys(fwd.losses);
          statNames = Object.keys(fwd.stats ?? {});
          const weight = n / rows;
          const next: Record<string, tf.Tensor> = {};
          for (const [name, t] of Object.entries(g)) {
            const part = tf.mul(t!, weight);
            next[`grad:${name}`] = previous === null ? part : tf.add(previous[`grad:${name}`]!, part);
          }
          const sum = (key: string, t: tf.Tensor): void => {
            next[key] = previous === null ? t : tf.add(previous[key]!, t);
          };
          for (const name of lossNames) sum(`loss:${name}`, tf.mul(fwd.losses[name]!, weight));
          for (const name of statNames) {
            const v = fwd.stats![name]!;
            next[`stat:${name}`] = previous === null ? v : tf.minimum(previous[`stat:${name}`]!, v);
          }
          sum('fired', columnSum(tf.step(fwd.featureActs) as tf.Tensor2D));
          sum('variance', tf.sum(tf.square(tf.sub(target, whole.targetMean))));
          return next;
        });
        if (previous !== null) for (const t of Object.values(previous)) t.dispose();
      }
      const total: Record<string, tf.Tensor> = acc!;
      const result = tf.tidy(() => {
        const g: Record<string, tf.Tensor> = {};
        for (const key of Object.keys(total)) {
          if (key.startsWith('grad:')) g[key.slice(5)] = tf.clone(total[key]!);
        }
        if (cfg.normalize_sae_decoder)
          g.W_dec = removeParallelComponent(g.W_dec as tf.Tensor2D, this.params.W_dec as tf.Tensor2D);
        const gradSq = tf.addN(Object.values(g).map((t) => tf.sum(tf.square(t))));
        const scalars = [
          ...lossNames.map((n) => total[`loss:${n}`]!),
          tf.div(total.variance!, rows),
          gradSq,
          ...statNames.map((n) => total[`stat:${n}`]!),
        ];
        return { grads: g, readback: tf.concat([tf.stack(scalars), total.fired!]) };
      });
      return { ...result, lossNames, statNames };
    } finally {
      if (acc !== null) for (const t of Object.values(acc as Record<string, tf.Tensor>)) t.dispose();
      for (const t of kept) t.dispose();
    }
  }

  private divergence(losses: Record<string, number>, gradNorm: number): UserError {
    const badParams = Object.entries(this.params)
      .filter(([, t]) => hasNonFinite(t.dataSync() as Float32Array) >= 0)
      .map(([n]) => n);
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
    const out: Record<string, HostTensor> = {};
    for (const [name, t] of Object.entries(this.params)) {
      out[name] = { shape: [...t.shape], data: Float32Array.from(t.dataSync() as Float32Array) };
    }
    return out;
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
    for (const t of Object.values(this.params)) t.dispose();
    this.adam.dispose();
  }
}

/** g - (⟨g_j, w_j⟩ / ‖w_j‖²) w_j for every row j. */
export function removeParallelComponent(g: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D {
  const coef = tf.div(tf.sum(tf.mul(g, w), 1), tf.sum(tf.square(w), 1));
  return tf.sub(g, tf.mul(w, tf.reshape(coef, [-1, 1])));
}
