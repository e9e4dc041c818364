/**
 * One SAE training step (src/sae/train-step.ts) as an ONNX graph: the step's single definition run once
 * with `OnnxOps`. Parameters and Adam moments are graph inputs and their updated values graph outputs, so
 * one session run is one optimiser step with no host round trip in between; the caller keeps the old
 * values until it has checked the readback (losses and gradient norm finite) and only then swaps.
 *
 * Inputs:  x [B, d_in] raw, y [B, d_out] raw (transcoders), scalars scale_in, scale_out, inv_rows (1/B),
 *          coefficient, step_size (lr / (1 - β1^t)), bc2_sqrt (√(1 - β2^t)); AuxK: dead_bias [d_sae]
 *          (0 for dead features, -1e30 for live), k_aux int64 [1], aux_weight; batch selection: keep
 *          int64 [1] (k·B); then every parameter P and its moments m.P, v.P.
 * Outputs: next.P, next.m.P, next.v.P for every parameter, and `readback` [n + d_sae].
 */
import { OnnxOps } from '../../ops/onnx-ops.js';
import { architectureOf } from '../../sae/architectures/registry.js';
import type { ParamName } from '../../sae/architectures/types.js';
import type { SaeTrainingConfig } from '../../sae/config.js';
import type { AdamState } from '../../sae/optim/adam.js';
import { saeStep, stepParamShapes } from '../../sae/train-step.js';
import type { StepInputs } from '../../sae/train-step.js';
import { TensorElemType } from './onnx-proto.js';
import type { OnnxModel } from './onnx-proto.js';

export { stepParamShapes } from '../../sae/train-step.js';

export interface SaeStepGraphOptions {
  /** Include the AuxK loss (a step with dead features), for architectures that have one. */
  auxK: boolean;
  /** The sparse topk step (parameters in its rows layout, train-step.ts `stepParamShapes`). */
  sparse?: boolean;
}

export interface SaeStepGraph {
  model: OnnxModel;
  paramNames: ParamName[];
  lossNames: string[];
  statNames: string[];
  /** Scalar float inputs the caller feeds each step (besides x, y and the parameters). */
  scalarInputs: string[];
}

/** Parameters then first then second moments: the order of the state inputs and `next.` outputs. */
export function stepStateKeys(paramNames: readonly ParamName[]): string[] {
  return ['', 'm.', 'v.'].flatMap((prefix) => paramNames.map((n) => `${prefix}${n}`));
}

/** Whether a step of this architecture with dead features has an AuxK term. */
export function stepHasAuxK(cfg: SaeTrainingConfig): boolean {
  return architectureOf(cfg.architecture).auxK === true && cfg.aux_loss_coefficient > 0;
}

export function buildSaeStepGraph(cfg: SaeTrainingConfig, options: SaeStepGraphOptions): SaeStepGraph {
  const o = new OnnxOps(undefined, 'step');
  const arch = architectureOf(cfg.architecture);
  const dOut = cfg.d_out ?? cfg.d_in;
  const sparse = options.sparse === true;
  const shapes = stepParamShapes(cfg, sparse);
  const scalarInputs = ['scale_in', 'scale_out', 'inv_rows', 'coefficient', 'step_size', 'bc2_sqrt'];
  const scalar = (name: string): string => o.input(name, []);
  const inp: StepInputs<string> = {
    x: o.input('x', ['batch', cfg.d_in]),
    ...(cfg.d_out === null ? {} : { y: o.input('y', ['batch', dOut]) }),
    scaleIn: scalar('scale_in'),
    scaleOut: scalar('scale_out'),
    invRows: scalar('inv_rows'),
    coefficient: scalar('coefficient'),
    ...(sparse ? { sparse } : {}),
  };
  const adam = { stepSize: scalar('step_size'), bc2Sqrt: scalar('bc2_sqrt') };
  if (options.auxK && stepHasAuxK(cfg)) {
    inp.aux = {
      deadBias: o.input('dead_bias', [cfg.d_sae]),
      kAux: o.input('k_aux', [1], TensorElemType.INT64),
      weight: scalar('aux_weight'),
    };
    scalarInputs.push('aux_weight');
  }
  if (arch.batchSelection) inp.keep = o.input('keep', [1], TensorElemType.INT64);
  const state: Record<string, AdamState<string>> = {};
  for (const [name, dims] of shapes) state[name] = { param: o.input(name, dims), m: '', v: '' };
  for (const [name, dims] of shapes) state[name]!.m = o.input(`m.${name}`, dims);
  for (const [name, dims] of shapes) state[name]!.v = o.input(`v.${name}`, dims);

  const step = saeStep(o, cfg, state, inp, adam);

  for (const [name, dims] of shapes) o.output(step.next[name]!.param, `next.${name}`, dims);
  for (const [name, dims] of shapes) o.output(step.next[name]!.m, `next.m.${name}`, dims);
  for (const [name, dims] of shapes) o.output(step.next[name]!.v, `next.v.${name}`, dims);
  const readbackLength = step.lossNames.length + 2 + step.statNames.length + cfg.d_sae;
  o.output(step.readback, 'readback', [readbackLength]);
  return {
    model: o.model(`sae_step_${cfg.architecture}`),
    paramNames: shapes.map(([n]) => n),
    lossNames: step.lossNames,
    statNames: step.statNames,
    scalarInputs,
  };
}
