/**
 * Loads the model for an evaluation, keeping on the host the few weights the feature dashboards need
 * (unembedding, ln_final scale, W_O / W_out of the layers the SAEs write at); the rest of the host copy is
 * dropped once the model has uploaded it.
 */
import { Gpt2Model, loadGpt2Weights, readGpt2Config } from '../model/index.js';
import type { Gpt2Config, WeightProcessing } from '../model/index.js';
import { resolveModelSource } from '../stages/model/index.js';
import type { ResolvedModelSource } from '../stages/model/index.js';
import { unembedWeightsOf } from './logit-effects.js';
import type { UnembedWeights } from './logit-effects.js';

export interface ModelDescription {
  source: ResolvedModelSource;
  config: Gpt2Config;
}

export interface EvalModel {
  model: Gpt2Model;
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
): Promise<EvalModel> {
  const { source, config } = described;
  const weights = await loadGpt2Weights(source.dir, config);
  const model = Gpt2Model.create(config, weights, { processing });
  return { model, unembed: unembedWeightsOf(weights, config, dashboardLayers) };
}
