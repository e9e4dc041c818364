import { OnnxSaeStep } from '../../engine/onnx/onnx-sae-step.js';
import { defaultOnnxDevice } from '../../engine/onnx/session-options.js';
import { UserError } from '../../pipeline/errors.js';
import type { SaeTrainingConfig } from '../config.js';
import type { TopKPath } from '../train-step.js';
import type { HostTensor } from '../fold.js';
import type { StepEngine, StepEngineName } from './step-engine.js';
import { TfjsStepEngine } from './tfjs-step.js';

export interface StepEngineOptions {
  /** onnx: the topk family's sparse or dense step (default `auto`, train-step.ts `sparseStepApplies`). */
  topkPath?: TopKPath;
}

/** The step engine `name` over initial parameter values (copied). */
export function createStepEngine(
  name: StepEngineName,
  cfg: SaeTrainingConfig,
  values: Record<string, HostTensor>,
  options: StepEngineOptions = {},
): StepEngine {
  if (name === 'tfjs' && defaultOnnxDevice() === 'cuda')
    throw new UserError('--backend cuda runs the onnx engine only: add --engine onnx');
  return name === 'onnx' ? new OnnxSaeStep(cfg, values, options) : new TfjsStepEngine(cfg, values);
}
