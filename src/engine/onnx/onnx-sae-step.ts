/**
 * Runs SAE training steps (sae-step-graph.ts) on onnxruntime-node. Parameters and Adam moments live in
 * two sets of host buffers: a step reads the current set (onnxruntime reads them in place) and its outputs
 * land in the other (the binding copies them there after the run), and `commit` swaps the sets, so a step
 * whose readback is not finite is dropped by simply not committing.
 *
 * Chunks (sae-step-loop.ts) run up to `maxChunkSteps` steps in one session run and return the state after
 * the last; committing fewer steps than were computed (a later step diverged) runs the chunk again with a
 * shorter trip count from the same state, which reproduces those steps exactly.
 */
import type * as ort from 'onnxruntime-node';
import { loadOrt } from './ort.js';
import type { SaeTrainingConfig } from '../../sae/config.js';
import { batchTopKCount } from '../../sae/architectures/batchtopk.js';
import { architectureOf } from '../../sae/architectures/registry.js';
import { auxKBase } from '../../sae/architectures/topk.js';
import type { ParamName } from '../../sae/architectures/types.js';
import type { ComputedStep, StepEngine, StepRequest } from '../../sae/engines/step-engine.js';
import type { HostTensor } from '../../sae/fold.js';
import { sparseStepApplies } from '../../sae/train-step.js';
import type { TopKPath } from '../../sae/train-step.js';
import { transposeMatrix } from '../../util/transpose.js';
import { buildSaeStepGraph, stepHasAuxK, stepParamShapes, stepStateKeys } from './sae-step-graph.js';
import type { SaeStepGraph } from './sae-step-graph.js';
import { buildSaeStepLoop } from './sae-step-loop.js';
import type { SaeStepLoopGraph } from './sae-step-loop.js';
import { encodeOnnxModel } from './onnx-proto.js';
import { onnxSessionOptions } from './session-options.js';
import type { OnnxExecution } from './session-options.js';

type Buffers = Record<string, Float32Array>;

interface Compiled<G> {
  graph: G;
  session: ort.InferenceSession;
}

interface PendingChunk {
  loop: Compiled<SaeStepLoopGraph>;
  feeds: Record<string, ort.Tensor>;
  steps: number;
  results: Record<string, ort.Tensor>;
}

/** Steps per chunk: enough to make the per-run output copy small against the arithmetic. */
export const ONNX_CHUNK_STEPS = 8;

export interface OnnxStepOptions extends OnnxExecution {
  /** Most steps per session run (default ONNX_CHUNK_STEPS; 1 disables chunks). */
  chunkSteps?: number;
  /**
   * The topk family's sparse or dense step (default `auto`: train-step.ts `sparseStepApplies`; the
   * environment variable SAEFLOW_TOPK_PATH overrides it, for benchmarks). Results agree to float rounding.
   */
  topkPath?: TopKPath;
}

function topkPathOf(options: OnnxStepOptions): TopKPath {
  const env = process.env.SAEFLOW_TOPK_PATH;
  if (env === 'auto' || env === 'sparse' || env === 'dense') return env;
  if (env !== undefined && env !== '')
    throw new Error(`SAEFLOW_TOPK_PATH must be auto, sparse or dense, got '${env}'`);
  return options.topkPath ?? 'auto';
}

export class OnnxSaeStep implements StepEngine {
  readonly name = 'onnx' as const;
  private current: Buffers = {};
  private next: Buffers = {};
  private readonly shapes: Map<ParamName, number[]>;
  private readonly sessions = new Map<boolean, Promise<Compiled<SaeStepGraph>>>();
  private readonly loops = new Map<boolean, Promise<Compiled<SaeStepLoopGraph>>>();
  /** Adam updates committed so far (PyTorch's `step`). */
  adamStep = 0;
  private pending = false;
  private chunk: PendingChunk | null = null;
  readonly maxChunkSteps: number;
  /** Whether the step graph is the sparse topk step (W_enc and W_dec held as rows). */
  readonly sparse: boolean;

  constructor(
    readonly cfg: SaeTrainingConfig,
    params: Readonly<Record<string, HostTensor>>,
    private readonly execution: OnnxStepOptions = {},
  ) {
    this.maxChunkSteps = execution.chunkSteps ?? ONNX_CHUNK_STEPS;
    if (!Number.isInteger(this.maxChunkSteps) || this.maxChunkSteps < 1)
      throw new Error(`OnnxSaeStep: chunkSteps must be a positive integer, got ${execution.chunkSteps}`);
    this.sparse = sparseStepApplies(cfg, 'onnx', topkPathOf(execution));
    this.shapes = new Map(stepParamShapes(cfg, this.sparse));
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
   * Whether parameter `name` is held transposed against the trainer's layout (W_enc [d_in, d_sae], W_dec
   * [d_sae, width]): the dense step's W_dec [width, d_sae], the sparse step's W_enc [d_sae, d_in]
   * (stepParamShapes says why).
   */
  private transposed(name: string): boolean {
    return name === (this.sparse ? 'W_enc' : 'W_dec');
  }

  /** The trainer's shape of parameter `name`. */
  private hostShape(name: string): number[] {
    const width = this.cfg.d_out ?? this.cfg.d_in;
    if (name === 'W_enc') return [this.cfg.d_in, this.cfg.d_sae];
    if (name === 'W_dec') return [this.cfg.d_sae, width];
    return [...this.shapes.get(name as ParamName)!];
  }

  /** A copy of `data` (a parameter or moment of parameter `name`, in the trainer's layout) in the graph's. */
  private toGraphLayout(name: string, data: Float32Array): Float32Array {
    const [rows, cols] = this.hostShape(name);
    return this.transposed(name) ? transposeMatrix(data, rows!, cols!) : Float32Array.from(data);
  }

  private fromGraphLayout(name: string, data: Float32Array): HostTensor {
    const shape = this.hostShape(name);
    if (this.transposed(name)) return { shape, data: transposeMatrix(data, shape[1]!, shape[0]!) };
    return { shape, data: Float32Array.from(data) };
  }

  /** Overwrites a parameter or moment (`key` = `W_enc`, `m.W_enc`, ...) of parameter `name`. */
  private set(key: string, name: ParamName, data: Float32Array): void {
    const v = this.current[key];
    if (v === undefined) throw new Error(`OnnxSaeStep: no tensor ${key}`);
    if (data.length !== v.length)
      throw new Error(`OnnxSaeStep: ${key} needs ${v.length} values, got ${data.length}`);
    v.set(this.toGraphLayout(name, data));
  }

  private compile<G extends SaeStepGraph>(
    cache: Map<boolean, Promise<Compiled<G>>>,
    auxK: boolean,
    build: (auxK: boolean) => G,
  ): Promise<Compiled<G>> {
    let c = cache.get(auxK);
    if (c === undefined) {
      const graph = build(auxK);
      c = loadOrt()
        .then((runtime) =>
          runtime.InferenceSession.create(encodeOnnxModel(graph.model), onnxSessionOptions(this.execution)),
        )
        .then((session) => ({ graph, session }));
      cache.set(auxK, c);
    }
    return c;
  }

  private compiled(auxK: boolean): Promise<Compiled<SaeStepGraph>> {
    return this.compile(this.sessions, auxK, (aux) =>
      buildSaeStepGraph(this.cfg, { auxK: aux, sparse: this.sparse }),
    );
  }

  private compiledLoop(auxK: boolean): Promise<Compiled<SaeStepLoopGraph>> {
    return this.compile(this.loops, auxK, (aux) =>
      buildSaeStepLoop(this.cfg, { auxK: aux, sparse: this.sparse }),
    );
  }

  /** Scalar inputs of the step at Adam step `t` (1-based), by graph input name. */
  private stepScalars(req: StepRequest, t: number): Record<string, number> {
    return {
      scale_in: req.scaleIn,
      scale_out: req.scaleOut,
      inv_rows: 1 / req.rows,
      coefficient: req.coefficient,
      step_size: req.lr / (1 - this.cfg.adam_beta1 ** t),
      bc2_sqrt: Math.sqrt(1 - this.cfg.adam_beta2 ** t),
    };
  }

  private keepCount(rows: number): bigint {
    return BigInt(batchTopKCount(this.cfg, rows));
  }

  private checkTarget(req: StepRequest): void {
    if (this.cfg.d_out !== null && req.y === null)
      throw new Error(`transcoder '${this.cfg.name}' needs a target batch`);
  }

  /**
   * Forward, backward and update of one batch into the spare buffers; the parameters change only on
   * `commit()`.
   */
  async compute(req: StepRequest): Promise<ComputedStep> {
    const { Tensor } = await loadOrt();
    const cfg = this.cfg;
    const aux = stepHasAuxK(cfg) && req.deadMask !== null && req.numDead > 0;
    const { graph, session } = await this.compiled(aux);
    const scalars = this.stepScalars(req, this.adamStep + 1);
    const feeds: Record<string, ort.Tensor> = {
      x: new Tensor('float32', req.x, [req.rows, cfg.d_in]),
    };
    this.checkTarget(req);
    if (cfg.d_out !== null) feeds.y = new Tensor('float32', req.y!, [req.rows, cfg.d_out]);
    if (aux) {
      const base = auxKBase(cfg);
      const bias = new Float32Array(cfg.d_sae);
      for (let j = 0; j < bias.length; j++) bias[j] = (req.deadMask![j]! - 1) * 1e30;
      feeds.dead_bias = new Tensor('float32', bias, [cfg.d_sae]);
      feeds.k_aux = new Tensor('int64', BigInt64Array.of(BigInt(Math.min(base, req.numDead))), [1]);
      scalars.aux_weight = cfg.aux_loss_coefficient * Math.min(req.numDead / base, 1);
    }
    if (architectureOf(cfg.architecture).batchSelection)
      feeds.keep = new Tensor('int64', BigInt64Array.of(this.keepCount(req.rows)), [1]);
    for (const name of graph.scalarInputs)
      feeds[name] = new Tensor('float32', Float32Array.of(scalars[name]!), []);
    const fetches: Record<string, ort.Tensor> = {};
    for (const [name, shape] of this.shapes) {
      for (const key of [name, `m.${name}`, `v.${name}`]) {
        feeds[key] = new Tensor('float32', this.current[key]!, shape);
        fetches[`next.${key}`] = new Tensor('float32', this.next[key]!, shape);
      }
    }
    const readbackLength = graph.lossNames.length + 2 + graph.statNames.length + cfg.d_sae;
    const readback = new Float32Array(readbackLength);
    fetches.readback = new Tensor('float32', readback, [readbackLength]);
    await session.run(feeds, fetches);
    this.pending = true;
    return { readback, lossNames: graph.lossNames, statNames: graph.statNames };
  }

  /**
   * Up to `maxChunkSteps` consecutive steps in one run of the Loop graph. All requests must have the same
   * number of rows. The AuxK variant runs when a feature is dead at the start or could die within the
   * chunk (steps since fired + steps - 1 > dead_feature_window); otherwise no step has a dead feature.
   */
  async computeChunk(reqs: readonly StepRequest[], sinceFired: Float64Array | null): Promise<ComputedStep[]> {
    const { Tensor } = await loadOrt();
    const cfg = this.cfg;
    const steps = reqs.length;
    if (steps < 1 || steps > this.maxChunkSteps)
      throw new Error(`OnnxSaeStep: a chunk takes 1 to ${this.maxChunkSteps} steps, got ${steps}`);
    const rows = reqs[0]!.rows;
    if (reqs.some((r) => r.rows !== rows)) throw new Error('OnnxSaeStep: chunk batches differ in rows');
    let maxSince = 0;
    if (sinceFired !== null) for (const v of sinceFired) maxSince = Math.max(maxSince, v);
    const aux = stepHasAuxK(cfg) && sinceFired !== null && maxSince + steps - 1 > cfg.dead_feature_window;
    const loop = await this.compiledLoop(aux);
    const feeds: Record<string, ort.Tensor> = {
      trip_count: new Tensor('int64', BigInt64Array.of(BigInt(steps)), []),
    };
    const stacked = (pick: (r: StepRequest) => Float32Array, width: number): Float32Array => {
      const out = new Float32Array(steps * rows * width);
      reqs.forEach((r, i) => out.set(pick(r), i * rows * width));
      return out;
    };
    const scalars = reqs.map((r, i) => this.stepScalars(r, this.adamStep + 1 + i));
    for (const input of loop.graph.perStepInputs) {
      const name = `steps.${input.name}`;
      if (input.name === 'x') {
        feeds[name] = new Tensor(
          'float32',
          stacked((r) => r.x, cfg.d_in),
          [steps, rows, cfg.d_in],
        );
      } else if (input.name === 'y') {
        reqs.forEach((r) => this.checkTarget(r));
        feeds[name] = new Tensor(
          'float32',
          stacked((r) => r.y!, cfg.d_out!),
          [steps, rows, cfg.d_out!],
        );
      } else if (input.name === 'keep') {
        const keep = new BigInt64Array(steps).fill(this.keepCount(rows));
        feeds[name] = new Tensor('int64', keep, [steps, 1]);
      } else {
        const values = Float32Array.from(scalars, (s) => {
          const v = s[input.name];
          if (v === undefined) throw new Error(`OnnxSaeStep: no value for per-step input ${input.name}`);
          return v;
        });
        feeds[name] = new Tensor('float32', values, [steps]);
      }
    }
    for (const key of loop.graph.stateKeys) {
      if (key === 'since_fired') {
        feeds['state.since_fired'] = new Tensor('float32', Float32Array.from(sinceFired!), [cfg.d_sae]);
      } else {
        feeds[`state.${key}`] = new Tensor('float32', this.current[key]!, this.shapeOfKey(key));
      }
    }
    const results = await loop.session.run(feeds);
    this.chunk = { loop, feeds, steps, results };
    const all = results['chunk.readback']!.data as Float32Array;
    const width = all.length / steps;
    return Array.from({ length: steps }, (_, i) => ({
      readback: all.subarray(i * width, (i + 1) * width),
      lossNames: loop.graph.lossNames,
      statNames: loop.graph.statNames,
    }));
  }

  async commitChunk(steps: number): Promise<void> {
    const { Tensor } = await loadOrt();
    const chunk = this.chunk;
    if (chunk === null) throw new Error('OnnxSaeStep: commitChunk without a chunk');
    this.chunk = null;
    if (!Number.isInteger(steps) || steps < 0 || steps > chunk.steps)
      throw new Error(`OnnxSaeStep: cannot commit ${steps} of ${chunk.steps} steps`);
    if (steps === 0) return;
    let results = chunk.results;
    if (steps < chunk.steps) {
      const feeds = {
        ...chunk.feeds,
        trip_count: new Tensor('int64', BigInt64Array.of(BigInt(steps)), []),
      };
      results = await chunk.loop.session.run(feeds);
    }
    for (const key of stepStateKeys(this.paramNames)) {
      // Fresh arrays the binding made for this run: they become the current state as they are.
      this.current[key] = results[`chunk.${key}`]!.data as Float32Array;
    }
    this.adamStep += steps;
  }

  private shapeOfKey(key: string): number[] {
    return this.shapes.get(key.replace(/^[mv]\./, '') as ParamName)!;
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
    const all: Promise<Compiled<SaeStepGraph>>[] = [...this.sessions.values(), ...this.loops.values()];
    this.sessions.clear();
    this.loops.clear();
    this.chunk = null;
    for (const s of all) void s.then((c) => c.session.release()).catch(() => undefined);
  }
}
