import { OnnxSaeStep } from '../../engine/onnx/onnx-sae-step.js';
import type { SaeTrainingConfig } from '../config.js';
import type { HostTensor } from '../fold.js';
import type { StepEngine, StepEngineName } from './step-engine.js';
import { TfjsStepEngine } from './tfjs-step.js';

/** The step engine `name` over initial parameter values (copied). */
export function createStepEngine(
  name: StepEngineName,
  cfg: SaeTrainingConfig,
  values: Record<string, HostTensor>,
): StepEngine {
  return name === 'onnx' ? new OnnxSaeStep(cfg, values) : new TfjsStepEngine(cfg, values);
}
