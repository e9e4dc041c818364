/**
 * Loads the model for an evaluation on the chosen engine, keeping on the host the few weights the feature
 * dashboards need (unembedding, ln_final scale, W_O / W_out of the layers the SAEs write at); with tfjs the
 * rest of the host copy is dropped once the model has uploaded it (onnxruntime keeps it to build graphs).
 */
import { Gpt2Onnx } from '../engine/onnx/gpt2-onnx.js';
import { Gpt2Model, loadGpt2Weights, readGpt2Config } from '../model/index.js';
import type { Gpt2Config, WeightProcessing } from '../model/index.js';
import { resolveModelSource } from '../stages/model/index.js';
import type { ResolvedModelSource } from '../stages/model/index.js';
import type { EvalEngine, EvalEngineName } from './eval-engine.js';
import { unembedWeightsOf } from './logit-effects.js';
import type { UnembedWeights } from './logit-effects.js';
import { OnnxEvalEngine } from './onnx-eval-engine.js';
import { TfjsEvalEngine } from './tfjs-eval-engine.js';

export interface ModelDescription {
  source: ResolvedModelSource;
  config: Gpt2Config;
}

export interface EvalModel {
  model: EvalEngine;
  unembed: UnembedWeights;
}

/** Finds the model and reads its config (cheap: SAEs are checked against it before weights are loaded). */
export async function describeEvalModel(spec: string): Promise<ModelDescription> {
  const source = await resolveModelSource(spec);
  return { source, config: await readGpt2Config(source.dir) };
}

export async function loadEvalModel(
  described: ModelDescription,
  processing: WeightProcessing,
  dashboardLayers: Iterable<number>,
  engine: EvalEngineName = 'tfjs',
): Promise<EvalModel> {
  const { source, config } = described;
  const weights = await loadGpt2Weights(source.dir, config);
  const model =
    engine === 'onnx'
      ? new OnnxEvalEngine(new Gpt2Onnx(config, weights, { processing }))
      : new TfjsEvalEngine(Gpt2Model.create(config, weights, { processing }));
  return { model, unembed: unembedWeightsOf(weights, config, dashboardLayers) };
}
