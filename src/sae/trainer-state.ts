/**
 * Everything beyond the SAELens folder that a resumed run needs to continue bit-identically: the raw
 * (unfolded) training parameters, Adam's moments and step, the firing statistics, counters, batchtopk's
 * threshold, the normalisation estimates and the initialisation generator's state. One safetensors file
 * per SAE (`trainer_state.safetensors`): tensors for the arrays, a JSON document in the metadata for the
 * rest (JSON numbers round-trip float64 exactly).
 */
import path from 'node:path';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import type { Tensor } from '../io/safetensors.js';
import { UserError } from '../pipeline/errors.js';
import type { ParamName } from './architectures/types.js';
import { resolveSaeTrainingConfig } from './config.js';
import type { SaeTrainingConfig } from './config.js';
import type { StepEngineName } from './engines/step-engine.js';
import type { HostTensor } from './fold.js';
import { TrainingSae } from './training-sae.js';

export const TRAINER_STATE_FILENAME = 'trainer_state.safetensors';
const META_KEY = 'saeflow_trainer_state';
const FORMAT_VERSION = 1;

interface StateDocument {
  format_version: number;
  config: SaeTrainingConfig;
  step: number;
  tokens: number;
  adam_step: number;
  topk_threshold: number;
  b_dec_initialized: boolean;
  rng_state: number;
  norm_in: { sum: number; batches: number } | null;
  norm_out: { sum: number; batches: number } | null;
  window_tokens: number;
  last_window_tokens: number;
  total_tokens: number;
}

const FIRING_ARRAYS = ['since_fired', 'window_counts', 'last_window_counts', 'total_counts'] as const;
const FIRING_FIELDS = {
  since_fired: 'sinceFired',
  window_counts: 'windowCounts',
  last_window_counts: 'lastWindowCounts',
  total_counts: 'totalCounts',
} as const;

/** Writes `sae`'s state; `params` are host copies already checked to be finite. */
export async function writeTrainerState(
  dir: string,
  sae: TrainingSae,
  params: Record<string, HostTensor>,
): Promise<void> {
  const tensors: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(params)) tensors[`param.${name}`] = { dtype: 'F32', ...t };
  for (const which of ['m', 'v'] as const) {
    for (const [name, t] of Object.entries(sae.hostMoments(which)))
      tensors[`adam.${which}.${name}`] = { dtype: 'F32', ...t };
  }
  for (const key of FIRING_ARRAYS) {
    const data = sae.stats[FIRING_FIELDS[key]];
    tensors[`firing.${key}`] = { dtype: 'F64', shape: [data.length], data: Float64Array.from(data) };
  }
  const doc: StateDocument = {
    format_version: FORMAT_VERSION,
    config: sae.cfg,
    step: sae.step,
    tokens: sae.tokens,
    adam_step: sae.engine.adamStep,
    topk_threshold: sae.topkThreshold,
    b_dec_initialized: sae.bDecInitialized,
    rng_state: sae.rngState,
    norm_in: sae.normIn?.toJSON() ?? null,
    norm_out: sae.normOut?.toJSON() ?? null,
    window_tokens: sae.stats.windowTokens,
    last_window_tokens: sae.stats.lastWindowTokens,
    total_tokens: sae.stats.totalTokens,
  };
  await writeSafetensors(path.join(dir, TRAINER_STATE_FILENAME), tensors, {
    [META_KEY]: JSON.stringify(doc),
  });
}

function describeDifference(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) !== JSON.stringify(b);
}

/**
 * Restores an SAE from `dir`. When `expected` is given (the config the caller would train with), every
 * field must match the saved one; a difference is a UserError naming the field.
 */
export async function readTrainerState(
  dir: string,
  expected?: SaeTrainingConfig,
  engine: StepEngineName = 'tfjs',
): Promise<TrainingSae> {
  const file = path.join(dir, TRAINER_STATE_FILENAME);
  const { metadata, tensors } = await readSafetensors(file);
  const raw = metadata[META_KEY];
  if (raw === undefined)
    throw new UserError(`${file}: not a saeflow trainer state (no '${META_KEY}' metadata)`);
  let doc: StateDocument;
  try {
    doc = JSON.parse(raw) as StateDocument;
  } catch (e) {
    throw new UserError(`${file}: invalid '${META_KEY}' metadata (${(e as Error).message})`);
  }
  if (doc.format_version !== FORMAT_VERSION) {
    throw new UserError(
      `${file}: trainer state format ${doc.format_version} is not supported (expected ${FORMAT_VERSION})`,
    );
  }
  const cfg = resolveSaeTrainingConfig(doc.config, `${file}: config`);
  if (expected) {
    for (const key of Object.keys(cfg) as (keyof SaeTrainingConfig)[]) {
      if (describeDifference(cfg[key], expected[key])) {
        throw new UserError(
          `cannot resume SAE '${cfg.name}' from ${dir}: option '${key}' was ${JSON.stringify(cfg[key])} and is now ${JSON.stringify(expected[key])}`,
        );
      }
    }
  }
  const get = (name: string, dtype: 'F32' | 'F64'): Tensor => {
    const t = tensors.get(name);
    if (!t) throw new UserError(`${file}: tensor '${name}' is missing`);
    if (t.dtype !== dtype) throw new UserError(`${file}: tensor '${name}' is ${t.dtype}, expected ${dtype}`);
    return t;
  };
  const params: Record<string, HostTensor> = {};
  const paramNames = [...tensors.keys()]
    .filter((n) => n.startsWith('param.'))
    .map((n) => n.slice('param.'.length));
  for (const name of paramNames) {
    const t = get(`param.${name}`, 'F32');
    params[name] = { shape: t.shape, data: t.data as Float32Array };
  }
  const sae = TrainingSae.fromHostParams(cfg, params, doc.rng_state, engine);
  const expectedNames = [...sae.paramNames].sort();
  if (JSON.stringify(expectedNames) !== JSON.stringify(paramNames.sort())) {
    sae.dispose();
    throw new UserError(
      `${file}: parameters [${paramNames.join(', ')}] do not match architecture ${cfg.architecture} ([${expectedNames.join(', ')}])`,
    );
  }
  for (const name of paramNames as ParamName[]) {
    const shape = params[name]!.shape;
    for (const which of ['m', 'v'] as const) {
      const t = get(`adam.${which}.${name}`, 'F32');
      if (JSON.stringify(t.shape) !== JSON.stringify(shape)) {
        sae.dispose();
        throw new UserError(
          `${file}: tensor 'adam.${which}.${name}' has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`,
        );
      }
      sae.engine.setMoment(which, name, t.data as Float32Array);
    }
  }
  sae.engine.adamStep = doc.adam_step;
  for (const key of FIRING_ARRAYS) {
    const t = get(`firing.${key}`, 'F64');
    if (t.data.length !== cfg.d_sae) {
      sae.dispose();
      throw new UserError(
        `${file}: tensor 'firing.${key}' has ${t.data.length} entries, expected d_sae = ${cfg.d_sae}`,
      );
    }
    sae.stats[FIRING_FIELDS[key]].set(t.data as Float64Array);
  }
  sae.stats.windowTokens = doc.window_tokens;
  sae.stats.lastWindowTokens = doc.last_window_tokens;
  sae.stats.totalTokens = doc.total_tokens;
  sae.step = doc.step;
  sae.tokens = doc.tokens;
  sae.topkThreshold = doc.topk_threshold;
  sae.bDecInitialized = doc.b_dec_initialized;
  if (doc.norm_in) sae.normIn?.restore(doc.norm_in);
  if (doc.norm_out) sae.normOut?.restore(doc.norm_out);
  return sae;
}
