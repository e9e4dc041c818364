/**
 * The TensorFlow.js step engine: the architectures' hand-written forward and backward passes on tfjs
 * tensors, Adam on tfjs tensors, and row chunks (gradient accumulation) for batches above
 * `max_rows_per_chunk`, which bound the [rows, d_sae] intermediates on the 4 GB wasm heap.
 */
import * as tf from '@tensorflow/tfjs-core';
import { maxRowsPerChunk } from '../config.js';
import type { SaeTrainingConfig } from '../config.js';
import { ARCHITECTURE_MODULES } from '../architectures/index.js';
import { columnSum, rowNorms } from '../architectures/common.js';
import type { ArchitectureModule, Grads, ParamName, Params } from '../architectures/types.js';
import type { HostTensor } from '../fold.js';
import { paramsToTensors } from '../init.js';
import { Adam, clipScale } from '../optim/adam.js';
import type { ComputedStep, StepEngine, StepRequest } from './step-engine.js';

/** Gradients, and the readback [losses..., total variance, Σ grad², stats..., firing counts per feature]. */
interface GradientPass {
  grads: Record<string, tf.Tensor>;
  readback: tf.Tensor;
  lossNames: string[];
  statNames: string[];
}

function toHost(t: tf.Tensor): HostTensor {
  return { shape: [...t.shape], data: Float32Array.from(t.dataSync() as Float32Array) };
}

export class TfjsStepEngine implements StepEngine {
  readonly name = 'tfjs' as const;
  readonly maxChunkSteps = 1;
  readonly module: ArchitectureModule;
  params: Params;
  readonly adam: Adam;
  private pending: { grads: Record<string, tf.Tensor>; lr: number } | null = null;

  constructor(
    readonly cfg: SaeTrainingConfig,
    values: Record<string, HostTensor>,
  ) {
    this.module = ARCHITECTURE_MODULES[cfg.architecture];
    this.params = paramsToTensors(values);
    this.adam = new Adam(this.params, cfg.adam_beta1, cfg.adam_beta2);
  }

  get paramNames(): ParamName[] {
    return Object.keys(this.params) as ParamName[];
  }

  get adamStep(): number {
    return this.adam.step;
  }

  set adamStep(step: number) {
    this.adam.step = step;
  }

  compute(req: StepRequest): Promise<ComputedStep> {
    this.discard();
    const chunk = maxRowsPerChunk(this.cfg);
    const pass =
      req.rows > chunk
        ? this.chunkedGradients(req.x, req.y, req.rows, chunk, req)
        : this.wholeBatchGradients(req.x, req.y, req.rows, req);
    const readback = Float32Array.from(pass.readback.dataSync() as Float32Array);
    pass.readback.dispose();
    this.pending = { grads: pass.grads, lr: req.lr };
    return Promise.resolve({ readback, lossNames: pass.lossNames, statNames: pass.statNames });
  }

  commit(gradNorm: number): void {
    if (this.pending === null) throw new Error('TfjsStepEngine: commit without a computed step');
    const { grads, lr } = this.pending;
    this.pending = null;
    this.params = this.adam.update(
      this.params,
      grads as Grads,
      lr,
      clipScale(gradNorm, this.cfg.max_grad_norm),
    );
    for (const t of Object.values(grads)) t.dispose();
    if (this.cfg.normalize_sae_decoder) {
      const w = this.params.W_dec as tf.Tensor2D;
      this.replaceParam(
        'W_dec',
        tf.tidy(() => tf.div(w, tf.reshape(rowNorms(w), [-1, 1]))),
      );
    }
  }

  discard(): void {
    if (this.pending === null) return;
    for (const t of Object.values(this.pending.grads)) t.dispose();
    this.pending = null;
  }

  hostParams(): Record<string, HostTensor> {
    const out: Record<string, HostTensor> = {};
    for (const [name, t] of Object.entries(this.params)) out[name] = toHost(t);
    return out;
  }

  hostMoments(which: 'm' | 'v'): Record<string, HostTensor> {
    const out: Record<string, HostTensor> = {};
    for (const [name, t] of Object.entries(this.adam[which])) out[name] = toHost(t);
    return out;
  }

  setParam(name: ParamName, data: Float32Array): void {
    const old = this.params[name];
    if (old === undefined) throw new Error(`TfjsStepEngine: no parameter ${name}`);
    this.replaceParam(name, tf.tensor(data, old.shape, 'float32'));
  }

  setMoment(which: 'm' | 'v', name: ParamName, data: Float32Array): void {
    const store = this.adam[which];
    const old = store[name];
    if (old === undefined) throw new Error(`TfjsStepEngine: no moment ${which}.${name}`);
    store[name] = tf.keep(tf.tensor(data, old.shape, 'float32'));
    old.dispose();
  }

  private replaceParam(name: ParamName, value: tf.Tensor): void {
    this.params[name]?.dispose();
    this.params[name] = tf.keep(value);
  }

  /** Forward + backward of the whole batch at once (what every step below `max_rows_per_chunk` runs). */
  private wholeBatchGradients(
    x: Float32Array,
    y: Float32Array | null,
    rows: number,
    step: StepRequest,
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
        deadMask: step.deadMask === null ? null : tf.tensor1d(step.deadMask),
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
    step: StepRequest,
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
    const deadMask = step.deadMask === null ? null : tf.tensor1d(step.deadMask);
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

  dispose(): void {
    this.discard();
    for (const t of Object.values(this.params)) t.dispose();
    this.adam.dispose();
  }
}

/** g - (⟨g_j, w_j⟩ / ‖w_j‖²) w_j for every row j. */
export function removeParallelComponent(g: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D {
  const coef = tf.div(tf.sum(tf.mul(g, w), 1), tf.sum(tf.square(w), 1));
  return tf.sub(g, tf.mul(w, tf.reshape(coef, [-1, 1])));
}
