/**
 * The TensorFlow.js step engine: the step of src/sae/train-step.ts run eagerly with `TfjsOps`, the same
 * definition the onnx engine builds into a graph. A batch above `max_rows_per_chunk` rows is processed in
 * row chunks whose gradients are summed before the one update (gradient accumulation), which bounds the
 * [rows, d_sae] intermediates on the 4 GB wasm heap; each chunk's terms are already weighted by the whole
 * batch's 1/rows, so their sum is the batch's mean up to float rounding.
 *
 * `compute` runs forward, backward and the update into new tensors and keeps them pending; `commit` makes
 * them current and `discard` drops them, as the onnx engine swaps its buffers.
 */
import * as tf from '@tensorflow/tfjs-core';
import { TfjsOps } from '../../ops/tfjs-ops.js';
import { transposeMatrix } from '../../util/transpose.js';
import { batchTopKCount } from '../architectures/batchtopk.js';
import { architectureOf } from '../architectures/registry.js';
import { auxKBase } from '../architectures/topk.js';
import type { ParamName, ParamValues } from '../architectures/types.js';
import { maxRowsPerChunk } from '../config.js';
import type { SaeTrainingConfig } from '../config.js';
import type { HostTensor } from '../host-tensor.js';
import { adamStepScalars } from '../optim/adam.js';
import type { AdamState } from '../optim/adam.js';
import { gradientSquares, readbackOf, stepGradients, stepParamShapes, stepUpdate } from '../train-step.js';
import type { GradientPass, StepInputs } from '../train-step.js';
import type { ComputedStep, StepEngine, StepRequest } from './step-engine.js';

type State = Record<string, AdamState<tf.Tensor>>;

/** A gradient pass as a flat record of tensors (what tf.tidy can carry out of a chunk). */
type FlatPass = Record<string, tf.Tensor>;

function flatten(pass: GradientPass<tf.Tensor>): FlatPass {
  const out: FlatPass = { fired: pass.fired, variance: pass.variance };
  for (const [n, t] of pass.losses) out[`loss:${n}`] = t;
  for (const [n, t] of pass.stats) out[`stat:${n}`] = t;
  for (const [n, t] of Object.entries(pass.grads)) out[`grad:${n}`] = t;
  return out;
}

function disposeState(s: State | null): void {
  if (s === null) return;
  for (const st of Object.values(s)) for (const t of [st.param, st.m, st.v]) t.dispose();
}

export class TfjsStepEngine implements StepEngine {
  readonly name = 'tfjs' as const;
  readonly maxChunkSteps = 1;
  adamStep = 0;
  private readonly o = new TfjsOps();
  private readonly shapes: Map<ParamName, number[]>;
  private state: State = {};
  private pending: State | null = null;

  constructor(
    readonly cfg: SaeTrainingConfig,
    values: Record<string, HostTensor>,
  ) {
    this.shapes = new Map(stepParamShapes(cfg));
    for (const [name, shape] of this.shapes) {
      const v = values[name];
      const size = shape.reduce((a, b) => a * b, 1);
      if (v === undefined || v.data.length !== size)
        throw new Error(`TfjsStepEngine: parameter ${name} missing or not of size ${size}`);
      this.state[name] = {
        param: tf.keep(tf.tensor(this.toStepLayout(name, v.data), shape, 'float32')),
        m: tf.keep(tf.zeros(shape)),
        v: tf.keep(tf.zeros(shape)),
      };
    }
  }

  get paramNames(): ParamName[] {
    return [...this.shapes.keys()];
  }

  /** W_dec is held as [width, d_sae] in the step (train-step.ts), [d_sae, width] on the host. */
  private toStepLayout(name: string, data: Float32Array): Float32Array {
    const width = this.cfg.d_out ?? this.cfg.d_in;
    return name === 'W_dec' ? transposeMatrix(data, this.cfg.d_sae, width) : Float32Array.from(data);
  }

  private toHost(name: string, t: tf.Tensor): HostTensor {
    const data = Float32Array.from(t.dataSync() as Float32Array);
    const width = this.cfg.d_out ?? this.cfg.d_in;
    if (name === 'W_dec')
      return { shape: [this.cfg.d_sae, width], data: transposeMatrix(data, width, this.cfg.d_sae) };
    return { shape: [...t.shape], data };
  }

  compute(req: StepRequest): Promise<ComputedStep> {
    this.discard();
    const cfg = this.cfg;
    if (cfg.d_out !== null && req.y === null)
      throw new Error(`transcoder '${cfg.name}' needs a target batch`);
    const names = this.paramNames;
    const { stepSize, bc2Sqrt } = adamStepScalars(req.lr, this.adamStep + 1, {
      beta1: cfg.adam_beta1,
      beta2: cfg.adam_beta2,
      maxGradNorm: cfg.max_grad_norm,
    });
    const params: ParamValues<tf.Tensor> = {};
    for (const n of names) params[n] = this.state[n]!.param;
    const scalars = this.stepScalars(req);
    let total: FlatPass | null = null;
    let lossNames: string[] = [];
    let statNames: string[] = [];
    try {
      const chunkRows = maxRowsPerChunk(cfg);
      const collect = (pass: GradientPass<tf.Tensor>): FlatPass => {
        lossNames = pass.losses.map(([n]) => n);
        statNames = pass.stats.map(([n]) => n);
        return flatten(pass);
      };
      if (req.rows <= chunkRows) {
        total = tf.tidy(() =>
          collect(stepGradients(this.o, cfg, params, this.inputs(req, scalars, 0, req.rows))),
        );
      } else {
        total = this.accumulate(req, params, scalars, chunkRows, collect);
      }
      const whole = total;
      const result = tf.tidy(() => {
        const grads: ParamValues<tf.Tensor> = {};
        for (const n of names) grads[n] = whole[`grad:${n}`]!;
        const gradSq = gradientSquares(this.o, grads, names);
        const next = stepUpdate(this.o, cfg, this.state, grads, gradSq, {
          stepSize: tf.scalar(stepSize),
          bc2Sqrt: tf.scalar(bc2Sqrt),
        });
        const pass = {
          losses: lossNames.map((n) => [n, whole[`loss:${n}`]!] as [string, tf.Tensor]),
          stats: statNames.map((n) => [n, whole[`stat:${n}`]!] as [string, tf.Tensor]),
          fired: whole.fired!,
          variance: whole.variance!,
        };
        const flat: Record<string, tf.Tensor> = { readback: readbackOf(this.o, pass, gradSq) };
        for (const [n, st] of Object.entries(next))
          Object.assign(flat, { [`p:${n}`]: st.param, [`m:${n}`]: st.m, [`v:${n}`]: st.v });
        return flat;
      });
      const readback = Float32Array.from(result.readback!.dataSync() as Float32Array);
      result.readback!.dispose();
      const pending: State = {};
      for (const n of names)
        pending[n] = { param: result[`p:${n}`]!, m: result[`m:${n}`]!, v: result[`v:${n}`]! };
      this.pending = pending;
      return Promise.resolve({ readback, lossNames, statNames });
    } finally {
      if (total !== null) for (const t of Object.values(total)) t.dispose();
      tf.dispose([scalars.scaleIn, scalars.scaleOut, scalars.invRows, scalars.coefficient]);
      if (scalars.aux !== undefined) tf.dispose([scalars.aux.deadBias, scalars.aux.weight]);
    }
  }

  /** The step's scalar inputs as tensors (and AuxK's). */
  private stepScalars(req: StepRequest): Omit<StepInputs<tf.Tensor>, 'x' | 'y'> {
    const cfg = this.cfg;
    const arch = architectureOf(cfg.architecture);
    const inp: Omit<StepInputs<tf.Tensor>, 'x' | 'y'> = {
      scaleIn: tf.scalar(req.scaleIn),
      scaleOut: tf.scalar(req.scaleOut),
      invRows: tf.scalar(1 / req.rows),
      coefficient: tf.scalar(req.coefficient),
    };
    if (arch.auxK && cfg.aux_loss_coefficient > 0 && req.deadMask !== null && req.numDead > 0) {
      const base = auxKBase(cfg);
      inp.aux = {
        deadBias: tf.tidy(() => tf.mul(tf.sub(tf.tensor1d(req.deadMask!), 1), 1e30)),
        kAux: Math.min(base, req.numDead),
        weight: tf.scalar(cfg.aux_loss_coefficient * Math.min(req.numDead / base, 1)),
      };
    }
    if (arch.batchSelection) inp.keep = batchTopKCount(cfg, req.rows);
    return inp;
  }

  /** Rows [start, start + n) of the request as step inputs. */
  private inputs(
    req: StepRequest,
    scalars: Omit<StepInputs<tf.Tensor>, 'x' | 'y'>,
    start: number,
    n: number,
  ): StepInputs<tf.Tensor> {
    const cfg = this.cfg;
    const x = tf.tensor2d(req.x.subarray(start * cfg.d_in, (start + n) * cfg.d_in), [n, cfg.d_in]);
    if (cfg.d_out === null) return { ...scalars, x };
    const y = tf.tensor2d(req.y!.subarray(start * cfg.d_out, (start + n) * cfg.d_out), [n, cfg.d_out]);
    return { ...scalars, x, y };
  }

  /**
   * Gradient accumulation over even row chunks of at most `chunkRows`: losses, gradients, firing counts
   * and the variance add up, stats take their minimum; the variance is centred on the whole batch's mean
   * target and batchtopk ranks the whole batch first.
   */
  private accumulate(
    req: StepRequest,
    params: ParamValues<tf.Tensor>,
    scalars: Omit<StepInputs<tf.Tensor>, 'x' | 'y'>,
    chunkRows: number,
    collect: (pass: GradientPass<tf.Tensor>) => FlatPass,
  ): FlatPass {
    const cfg = this.cfg;
    const count = Math.ceil(req.rows / chunkRows);
    const size = Math.ceil(req.rows / count);
    const bounds: [number, number][] = [];
    for (let start = 0; start < req.rows; start += size)
      bounds.push([start, Math.min(size, req.rows - start)]);
    const arch = architectureOf(cfg.architecture);
    const shared = tf.tidy(() => {
      const whole = this.inputs(req, scalars, 0, req.rows);
      const target =
        whole.y === undefined ? tf.mul(whole.x, scalars.scaleIn) : tf.mul(whole.y, scalars.scaleOut);
      const out: Record<string, tf.Tensor> = { targetMean: tf.mean(target, 0) };
      if (arch.batchThreshold !== undefined) {
        const chunks = bounds.map(([start, n]) => ({
          x: tf.slice2d(tf.mul(whole.x, scalars.scaleIn) as tf.Tensor2D, [start, 0], [n, -1]) as tf.Tensor,
          rows: n,
        }));
        out.batchThreshold = arch.batchThreshold(this.o, params, chunks, batchTopKCount(cfg, req.rows), cfg);
      }
      return out;
    });
    let acc: FlatPass | null = null;
    try {
      for (const [start, n] of bounds) {
        const previous: FlatPass | null = acc;
        acc = tf.tidy(() => {
          const pass = collect(
            stepGradients(this.o, cfg, params, this.inputs(req, scalars, start, n), {
              targetMean: shared.targetMean!,
              ...(shared.batchThreshold === undefined ? {} : { batchThreshold: shared.batchThreshold }),
            }),
          );
          if (previous === null) return pass;
          const next: FlatPass = {};
          for (const [key, t] of Object.entries(pass))
            next[key] = key.startsWith('stat:') ? tf.minimum(previous[key]!, t) : tf.add(previous[key]!, t);
          return next;
        });
        if (previous !== null) for (const t of Object.values(previous)) t.dispose();
      }
      return acc!;
    } catch (e) {
      if (acc !== null) for (const t of Object.values(acc as FlatPass)) t.dispose();
      throw e;
    } finally {
      for (const t of Object.values(shared)) t.dispose();
    }
  }

  commit(): void {
    if (this.pending === null) throw new Error('TfjsStepEngine: commit without a computed step');
    disposeState(this.state);
    this.state = this.pending;
    this.pending = null;
    this.adamStep += 1;
  }

  discard(): void {
    disposeState(this.pending);
    this.pending = null;
  }

  hostParams(): Record<string, HostTensor> {
    const out: Record<string, HostTensor> = {};
    for (const [name, st] of Object.entries(this.state)) out[name] = this.toHost(name, st.param);
    return out;
  }

  hostMoments(which: 'm' | 'v'): Record<string, HostTensor> {
    const out: Record<string, HostTensor> = {};
    for (const [name, st] of Object.entries(this.state)) out[name] = this.toHost(name, st[which]);
    return out;
  }

  private replace(name: ParamName, which: 'param' | 'm' | 'v', data: Float32Array): void {
    const st = this.state[name];
    if (st === undefined) throw new Error(`TfjsStepEngine: no parameter ${name}`);
    const old = st[which];
    if (data.length !== old.size)
      throw new Error(`TfjsStepEngine: ${which} of ${name} needs ${old.size} values, got ${data.length}`);
    st[which] = tf.keep(tf.tensor(this.toStepLayout(name, data), old.shape, 'float32'));
    old.dispose();
  }

  setParam(name: ParamName, data: Float32Array): void {
    this.replace(name, 'param', data);
  }

  setMoment(which: 'm' | 'v', name: ParamName, data: Float32Array): void {
    this.replace(name, which, data);
  }

  dispose(): void {
    this.discard();
    disposeState(this.state);
    this.state = {};
    this.o.dispose();
  }
}
