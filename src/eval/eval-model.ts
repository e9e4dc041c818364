/**
 * Loads the model for an evaluation on the chosen engine, keeping on the host the few weights the feature
 * dashboards need (unembedding, final-norm scale, W_O / W_out of the layers the SAEs write at).
 */
import { createRunner, loadModelFor } from '../engine/engines.js';
import { readModelConfig } from '../model/index.js';
import type { ModelConfig, ModelEngineName, WeightProcessing } from '../model/index.js';
import { resolveModelSource } from '../stages/model/index.js';
import type { ResolvedModelSource } from '../stages/model/index.js';
import type { EvalEngine } from './eval-engine.js';
import type { UnembedWeights } from './logit-effects.js';
import { ModelEvalEngine } from './model-eval-engine.js';

export interface ModelDescription {
  source: ResolvedModelSource;
  config: ModelConfig;
}

export interface EvalModel {
  model: EvalEngine;
  unembed: UnembedWeights;
}

/** Finds the model and reads its config (cheap: SAEs are checked against it before weights are loaded). */
export async function describeEvalModel(spec: string): Promise<ModelDescription> {
  const source = await resolveModelSource(spec);
  return { source, config: await readModelConfig(source.dir) };
}

export async function loadEvalModel(
  described: ModelDescription,
  processing: WeightProcessing,
  dashboardLayers: Iterable<number>,
  engine: ModelEngineName = 'onnx',
): Promise<EvalModel> {
  const { source, config } = described;
  const model = await loadModelFor(source.dir, engine, { processing, config });
  const runner = await createRunner(model, engine);
  return { model: new ModelEvalEngine(runner), unembed: model.dashboardWeights(dashboardLayers) };
}
