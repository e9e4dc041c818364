/**
 * Runs SAE training steps (sae-step-graph.ts) on onnxruntime-node. Parameters and Adam moments live in
 * two sets of host buffers: a step reads the current set (onnxruntime reads them in place) and its outputs
 * land in the other (the binding copies them there after the run), and `commit` swaps the sets, so a step
 * whose readback is not finite is dropped by simply not committing.
 */
import * as ort from 'onnxruntime-node';
import type { SaeTrainingConfig } from '../../sae/config.js';
import { batchTopKCount } from '../../sae/architectures/batchtopk.js';
import { auxKBase } from '../../sae/architectures/topk.js';
import type { ParamName } from '../../sae/architectures/types.js';
import type { ComputedStep, StepEngine, StepRequest } from '../../sae/engines/step-engine.js';
import type { HostTensor } from '../../sae/fold.js';
import { transposeMatrix } from '../../util/transpose.js';
import { buildSaeStepGraph, stepParamShapes } from './sae-step-graph.js';
import type { SaeStepGraph } from './sae-step-graph.js';
import { encodeOnnxModel } from './onnx-proto.js';
import { onnxSessionOptions } from './session-options.js';
import type { OnnxExecution } from './session-options.js';

type Buffers = Record<string, Float32Array>;

interface Compiled {
  graph: SaeStepGraph;
  session: ort.InferenceSession;
}

export class OnnxSaeStep implements StepEngine {
  readonly name = 'onnx' as const;
  private current: Buffers = {};
  private next: Buffers = {};
  private readonly shapes: Map<ParamName, number[]>;
  private readonly sessions = new Map<boolean, Promise<Compiled>>();
  /** Adam updates committed so far (PyTorch's `step`). */
  adamStep = 0;
  private pending = false;

  constructor(
    readonly cfg: SaeTrainingConfig,
    params: Readonly<Record<string, HostTensor>>,
    private readonly execution: OnnxExecution = {},
  ) {
    this.shapes = new Map(stepParamShapes(cfg));
    for (const [name, shape] of this.shapes) {
      const size = shape.reduce((a, b) => a * b, 1);
      const value = params[name]?.data;
      if (value === undefined || value.length !== size)
        throw new Error(`OnnxSaeStep: parameter ${name} missing or not of size ${size}`);
      this.current[name] = this.toGraphLayout(name, value);
      this.current[`m.${name}`] = new Float32Array(size);
      this.current[`v.${name}`] = new Float32Array(size);
      for (const key of [name, `m.${name}`, `v.${name}`]) this.next[key] = new Float32Array(size);
    }
  }

  get paramNames(): ParamName[] {
    return [...this.shapes.keys()];
  }

  /**
   * A copy of `data` (a parameter or moment of parameter `name`, in the trainer's layout) in the graph's:
   * W_enc [d_in, d_sae] becomes [d_sae, d_in].
   */
  private toGraphLayout(name: string, data: Float32Array): Float32Array {
    return name === 'W_enc' ? transposeMatrix(data, this.cfg.d_in, this.cfg.d_sae) : Float32Array.from(data);
  }

  private fromGraphLayout(name: string, data: Float32Array): HostTensor {
    if (name === 'W_enc')
      return {
        shape: [this.cfg.d_in, this.cfg.d_sae],
        data: transposeMatrix(data, this.cfg.d_sae, this.cfg.d_in),
      };
    return { shape: [...this.shapes.get(name as ParamName)!], data: Float32Array.from(data) };
  }

  /** Overwrites a parameter or moment (`key` = `W_enc`, `m.W_enc`, ...) of parameter `name`. */
  private set(key: string, name: ParamName, data: Float32Array): void {
    const v = this.current[key];
    if (v === undefined) throw new Error(`OnnxSaeStep: no tensor ${key}`);
    if (data.length !== v.length)
      throw new Error(`OnnxSaeStep: ${key} needs ${v.length} values, got ${data.length}`);
    v.set(this.toGraphLayout(name, data));
  }

  private compiled(auxK: boolean): Promise<Compiled> {
    let c = this.sessions.get(auxK);
    if (c === undefined) {
      const graph = buildSaeStepGraph(this.cfg, { auxK });
      c = ort.InferenceSession.create(encodeOnnxModel(graph.model), onnxSessionOptions(this.execution)).then(
        (session) => ({ graph, session }),
      );
      this.sessions.set(auxK, c);
    }
    return c;
  }

  /**
   * Forward, backward and update of one batch into the spare buffers; the parameters change only on
   * `commit()`.
   */
  async compute(req: StepRequest): Promise<ComputedStep> {
    const cfg = this.cfg;
    const aux =
      (cfg.architecture === 'topk' || cfg.architecture === 'batchtopk') &&
      req.deadMask !== null &&
      req.numDead > 0 &&
      cfg.aux_loss_coefficient > 0;
    const { graph, session } = await this.compiled(aux);
    const t = this.adamStep + 1;
    const scalars: Record<string, number> = {
      scale_in: req.scaleIn,
      scale_out: req.scaleOut,
      inv_rows: 1 / req.rows,
      coefficient: req.coefficient,
      step_size: req.lr / (1 - cfg.adam_beta1 ** t),
      bc2_sqrt: Math.sqrt(1 - cfg.adam_beta2 ** t),
    };
    const feeds: Record<string, ort.Tensor> = {
      x: new ort.Tensor('float32', req.x, [req.rows, cfg.d_in]),
    };
    if (cfg.d_out !== null) {
      if (req.y === null) throw new Error(`transcoder '${cfg.name}' needs a target batch`);
      feeds.y = new ort.Tensor('float32', req.y, [req.rows, cfg.d_out]);
    }
    if (aux) {
      const base = auxKBase(cfg);
      const bias = new Float32Array(cfg.d_sae);
      for (let j = 0; j < bias.length; j++) bias[j] = (req.deadMask![j]! - 1) * 1e30;
      feeds.dead_bias = new ort.Tensor('float32', bias, [cfg.d_sae]);
      feeds.k_aux = new ort.Tensor('int64', BigInt64Array.of(BigInt(Math.min(base, req.numDead))), [1]);
      scalars.aux_weight = cfg.aux_loss_coefficient * Math.min(req.numDead / base, 1);
    }
    if (cfg.architecture === 'batchtopk') {
      const keep = Math.min(batchTopKCount(cfg, req.rows), req.rows * cfg.d_sae);
      feeds.keep = new ort.Tensor('int64', BigInt64Array.of(BigInt(keep)), [1]);
    }
    for (const name of graph.scalarInputs)
      feeds[name] = new ort.Tensor('float32', Float32Array.of(scalars[name]!), []);
    const fetches: Record<string, ort.Tensor> = {};
    for (const [name, shape] of this.shapes) {
      for (const key of [name, `m.${name}`, `v.${name}`]) {
        feeds[key] = new ort.Tensor('float32', this.current[key]!, shape);
        fetches[`next.${key}`] = new ort.Tensor('float32', this.next[key]!, shape);
      }
    }
    const readbackLength = graph.lossNames.length + 2 + graph.statNames.length + cfg.d_sae;
    const readback = new Float32Array(readbackLength);
    fetches.readback = new ort.Tensor('float32', readback, [readbackLength]);
    await session.run(feeds, fetches);
    this.pending = true;
    return { readback, lossNames: graph.lossNames, statNames: graph.statNames };
  }

  /** Makes the computed step's parameters and moments current (clipping happened in the graph). */
  commit(): void {
    if (!this.pending) throw new Error('OnnxSaeStep: commit without a step');
    [this.current, this.next] = [this.next, this.current];
    this.adamStep += 1;
    this.pending = false;
  }

  /** Drops the computed step's update (divergence). */
  discard(): void {
    this.pending = false;
  }

  hostParams(): Record<string, HostTensor> {
    const out: Record<string, HostTensor> = {};
    for (const name of this.shapes.keys()) out[name] = this.fromGraphLayout(name, this.current[name]!);
    return out;
  }

  hostMoments(which: 'm' | 'v'): Record<string, HostTensor> {
    const out: Record<string, HostTensor> = {};
    for (const name of this.shapes.keys())
      out[name] = this.fromGraphLayout(name, this.current[`${which}.${name}`]!);
    return out;
  }

  setParam(name: ParamName, data: Float32Array): void {
    this.set(name, name, data);
  }

  setMoment(which: 'm' | 'v', name: ParamName, data: Float32Array): void {
    this.set(`${which}.${name}`, name, data);
  }

  /** Releases the sessions (in the background: nothing waits on a released session). */
  dispose(): void {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of all) void s.then((c) => c.session.release()).catch(() => undefined);
  }
}
