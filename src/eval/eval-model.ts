/**
 * Loads the model for an evaluation on the chosen engine, keeping on the host the few weights the feature
 * dashboards need (unembedding, final-norm scale, W_O / W_out of the layers the SAEs write at).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { createRunner, loadModelFor } from '../engine/engines.js';
import { readModelConfig } from '../model/index.js';
import type { ModelConfig, ModelEngineName, WeightProcessing } from '../model/index.js';
import { resolveModelSource } from '../stages/model/index.js';
import type { ResolvedModelSource } from '../stages/model/index.js';
import type { EvalEngine } from './eval-engine.js';
import type { UnembedWeights } from './logit-effects.js';
import { ModelEvalEngine } from './model-eval-engine.js';
import type { SaeLocation } from './sae-targets.js';
import { SAE_CFG_FILENAME } from '../sae/saelens-folder.js';

export interface ModelDescription {
  source: ResolvedModelSource;
  config: ModelConfig;
}

export interface EvalModel {
  model: EvalEngine;
  unembed: UnembedWeights;
}

/**
 * The model `--model auto` means for these SAEs: the folder their training run loaded the model from
 * (`metadata.saeflow_model_dir` in cfg.json), when every local SAE records the same one and it still exists;
 * otherwise `auto` (GPT-2 from the cache, else the embedded model). An explicit `--model` is taken as is.
 */
export function modelSpecForSaes(spec: string, locations: readonly SaeLocation[]): string {
  if (spec !== 'auto') return spec;
  const dirs = new Set<string>();
  for (const l of locations) {
    const cfgFile = path.join(l.path, SAE_CFG_FILENAME);
    if (!existsSync(cfgFile)) return spec;
    let dir: unknown;
    try {
      dir = (JSON.parse(readFileSync(cfgFile, 'utf8')) as { metadata?: Record<string, unknown> }).metadata
        ?.saeflow_model_dir;
    } catch {
      return spec; // loading the SAE reports the broken cfg.json by name
    }
    if (typeof dir !== 'string') return spec;
    dirs.add(dir);
  }
  const [only] = dirs;
  return dirs.size === 1 && only !== undefined && existsSync(path.join(only, 'config.json')) ? only : spec;
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
