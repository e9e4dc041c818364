/**
 * Several SAE training steps in one session run: the one-step graph (sae-step-graph.ts) becomes the body
 * of an ONNX Loop whose carried values are the parameters and Adam moments. onnxruntime-node copies every
 * graph output into fresh JavaScript memory after a run (about 110 MB for d_sae 6144, ~15% of a step
 * here); with the state carried inside the Loop that copy happens once per chunk instead of once per step.
 *
 * Every other input of the step graph (the batch, the per-step scalars) becomes a `steps.` input with a
 * leading steps axis that the body indexes with the iteration number, and the body's readback becomes a
 * scan output, one row per step.
 *
 * AuxK (topk/batchtopk) needs each step's dead features, which depend on what fired in the steps before
 * it, so in the AuxK variant the body tracks them itself: it carries the steps since each feature last
 * fired (FiringStats.sinceFired, exact in float32 up to 2^24 steps), derives the dead mask, k_aux and
 * the AuxK weight from it as the trainer does, and updates it from the step's firing counts. A step with
 * no dead feature runs the AuxK term with weight 0, which adds exact zeros.
 *
 * Inputs:  trip_count int64 scalar (steps in this run, at most the length of every `steps.` input),
 *          `steps.<name>` [steps, ...] for each per-step input, `state.<key>` for each parameter and
 *          moment (values before the first step) and, AuxK only, `state.since_fired` [d_sae].
 * Outputs: `chunk.<key>` (values after the last step; AuxK: also `chunk.since_fired`) and
 *          `chunk.readback` [steps, readback length].
 */
import type { SaeTrainingConfig } from '../../sae/config.js';
import { OnnxOps } from '../../ops/onnx-ops.js';
import { auxKBase } from '../../sae/architectures/topk.js';
import { GraphBuilder } from './graph-builder.js';
import { buildSaeStepGraph, stepStateKeys } from './sae-step-graph.js';
import type { SaeStepGraph, SaeStepGraphOptions } from './sae-step-graph.js';
import { ONNX_IR_VERSION, ONNX_OPSET, TensorElemType } from './onnx-proto.js';
import type { OnnxNode, OnnxTensor, OnnxValueInfo } from './onnx-proto.js';

export interface SaeStepLoopGraph extends SaeStepGraph {
  /** Inputs of the step graph fed per step (`steps.<name>` in the Loop graph). */
  perStepInputs: OnnxValueInfo[];
  /** Loop-carried state keys in input order (parameters, moments, then `since_fired` under AuxK). */
  stateKeys: string[];
}

/** Step-graph inputs the AuxK body computes from `since_fired` instead of reading per step. */
const AUX_INPUTS = ['dead_bias', 'k_aux', 'aux_weight'];

/**
 * Nodes deriving AuxK's inputs from `since_fired` (`before`, ahead of the step) and the next
 * `since_fired` from the readback (`after`).
 */
function deadTracking(
  cfg: SaeTrainingConfig,
  readbackLength: number,
): { before: GraphBuilder; after: GraphBuilder } {
  const before = new OnnxOps(new GraphBuilder(), 'dead');
  const base = auxKBase(cfg);
  // FiringStats.deadMask: dead where sinceFired > dead_feature_window.
  const dead = before.greater('since_fired', before.scalar(cfg.dead_feature_window));
  const numDead = before.sum(dead);
  before.output(before.mul(before.sub(dead, before.scalar(1)), before.scalar(1e30)), 'dead_bias');
  const kAux = before.maximum(before.minimum(numDead, before.scalar(base)), before.scalar(1));
  const b = before.b;
  b.op(
    'Reshape',
    [
      b.op('Cast', [kAux], 'dead', undefined, { to: { kind: 'int', value: TensorElemType.INT64 } }),
      b.int64('c.shape1', [1]),
    ],
    'dead',
    'k_aux',
  );
  before.output(
    before.mul(
      before.scalar(cfg.aux_loss_coefficient),
      before.minimum(before.div(numDead, before.scalar(base)), before.scalar(1)),
    ),
    'aux_weight',
  );
  const after = new OnnxOps(new GraphBuilder(), 'dead_after');
  const fired = after.slice('readback', 0, readbackLength - cfg.d_sae, readbackLength);
  after.output(
    after.select(
      after.greater(fired, after.scalar(0)),
      after.scalar(0),
      after.add('since_fired', after.scalar(1)),
    ),
    'next.since_fired',
  );
  return { before: before.b, after: after.b };
}

/** Initializers of both builders; a name always denotes one value (`c.f0.5`, `c.shape1`), so keep the first. */
function mergeInitializers(...lists: OnnxTensor[][]): OnnxTensor[] {
  const byName = new Map<string, OnnxTensor>();
  for (const t of lists.flat()) if (!byName.has(t.name)) byName.set(t.name, t);
  return [...byName.values()];
}

export function buildSaeStepLoop(cfg: SaeTrainingConfig, options: SaeStepGraphOptions): SaeStepLoopGraph {
  const step = buildSaeStepGraph(cfg, options);
  const stepInputs = step.model.graph.inputs;
  const aux = stepInputs.some((i) => i.name === 'dead_bias');
  const stateKeys = [...stepStateKeys(step.paramNames), ...(aux ? ['since_fired'] : [])];
  const stateInputs: OnnxValueInfo[] = stateKeys.map(
    (k) =>
      stepInputs.find((i) => i.name === k) ?? {
        name: k,
        elemType: TensorElemType.FLOAT,
        dims: [cfg.d_sae],
      },
  );
  const perStepInputs = stepInputs.filter((i) => !stateKeys.includes(i.name) && !AUX_INPUTS.includes(i.name));
  const gathers: OnnxNode[] = perStepInputs.map((i) => ({
    opType: 'Gather',
    name: `loop/gather.${i.name}#Gather`,
    inputs: [`steps.${i.name}`, 'loop.iter'],
    outputs: [i.name],
    attributes: { axis: { kind: 'int', value: 0 } },
  }));
  const readback = step.model.graph.outputs.find((o) => o.name === 'readback')!;
  const tracking = aux
    ? deadTracking(cfg, readback.dims![0] as number)
    : { before: new GraphBuilder(), after: new GraphBuilder() };
  const body = {
    name: `${step.model.graph.name}_body`,
    nodes: [
      ...gathers,
      { opType: 'Identity', name: 'loop/cond#Identity', inputs: ['loop.cond'], outputs: ['loop.cond_out'] },
      ...tracking.before.nodes,
      ...step.model.graph.nodes,
      ...tracking.after.nodes,
    ],
    initializers: mergeInitializers(
      step.model.graph.initializers,
      tracking.before.initializers,
      tracking.after.initializers,
    ),
    inputs: [
      { name: 'loop.iter', elemType: TensorElemType.INT64, dims: [] },
      { name: 'loop.cond', elemType: TensorElemType.BOOL, dims: [] },
      ...stateInputs,
    ],
    outputs: [
      { name: 'loop.cond_out', elemType: TensorElemType.BOOL, dims: [] },
      ...stateInputs.map((i) => ({ ...i, name: `next.${i.name}` })),
      readback,
    ],
  };
  const inputs: OnnxValueInfo[] = [
    { name: 'trip_count', elemType: TensorElemType.INT64, dims: [] },
    ...perStepInputs.map((i) => ({ ...i, name: `steps.${i.name}`, dims: ['steps', ...i.dims!] })),
    ...stateInputs.map((i) => ({ ...i, name: `state.${i.name}` })),
  ];
  const outputs: OnnxValueInfo[] = [
    ...stateInputs.map((i) => ({ ...i, name: `chunk.${i.name}` })),
    { name: 'chunk.readback', elemType: TensorElemType.FLOAT, dims: ['steps', ...readback.dims!] },
  ];
  const loop: OnnxNode = {
    opType: 'Loop',
    name: 'steps#Loop',
    inputs: ['trip_count', '', ...stateInputs.map((i) => `state.${i.name}`)],
    outputs: outputs.map((o) => o.name),
    attributes: { body: { kind: 'graph', value: body } },
  };
  return {
    ...step,
    perStepInputs,
    stateKeys,
    model: {
      graph: { name: `${step.model.graph.name}_loop`, nodes: [loop], initializers: [], inputs, outputs },
      opset: ONNX_OPSET,
      irVersion: ONNX_IR_VERSION,
      producer: 'saeflow',
    },
  };
}
