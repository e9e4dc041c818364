/**
 * SAELens folders: `cfg.json` + `sae_weights.safetensors` (+ `sparsity.safetensors`), in SAELens 6's layout
 * (`metadata.sae_lens_version` >= 6) or any earlier one. Earlier configs are flat and are mapped the way
 * SAELens's `handle_pre_6_0_config` does: `hook_point` -> `hook_name`, `hook_point_head_index` ->
 * `hook_head_index`, `activation_fn_str` -> `activation_fn` (`topk` with `activation_fn_kwargs.k` means the
 * topk architecture), boolean `normalize_activations` -> `none` / `expected_average_only_in`, and defaults
 * `apply_b_dec_to_input: true`, `architecture: standard`; the model/dataset keys move into `metadata`.
 * A `scaling_factor` tensor of ones is dropped; any other is folded into W_dec (SAELens's fine-tuning
 * scaling multiplies feature activations before decoding). An `expected_average_only_in` SAE whose scaling
 * factor is known (`norm_scaling_factor`, from the config or its release) gets it folded into its weights.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { readSafetensors, readSafetensorsHeader, tensorToFloat32 } from '../io/safetensors.js';
import { UserError } from '../pipeline/errors.js';
import type { HostTensor } from '../sae/fold.js';
import {
  checkConfig,
  expectedShapes,
  SAE_CFG_FILENAME,
  SAE_WEIGHTS_FILENAME,
  SPARSITY_FILENAME,
} from '../sae/saelens-folder.js';
import type { SaeFolderConfig } from '../sae/saelens-folder.js';
import { checkFinite, hostTensor, requiredProcessingOf } from './types.js';
import type { LoadedSae } from './types.js';

/** Keys SAELens keeps in `metadata` (its LLM_METADATA_KEYS). */
export const METADATA_KEYS = [
  'model_name',
  'hook_name',
  'model_class_name',
  'hook_head_index',
  'model_from_pretrained_kwargs',
  'prepend_bos',
  'exclude_special_tokens',
  'neuronpedia_id',
  'context_size',
  'seqpos_slice',
  'dataset_path',
  'sae_lens_version',
  'sae_lens_training_version',
  'hook_name_out',
  'hook_head_index_out',
] as const;

const LEGACY_RENAMES: Readonly<Record<string, string>> = {
  hook_point: 'hook_name',
  hook_point_head_index: 'hook_head_index',
  activation_fn_str: 'activation_fn',
};

export interface SaelensLoadOptions {
  /** Release-level config overrides (SAELens's `config_overrides`), applied before anything else. */
  overrides?: Record<string, unknown>;
  /** Folds `expected_average_only_in` normalisation (SAELens's per-SAE `norm_scaling_factor`). */
  normScalingFactor?: number;
}

async function readJson(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new UserError(`not an SAE folder: ${file} is missing`);
    throw e;
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new UserError(`${file}: invalid JSON (${(e as Error).message})`);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The SAELens version a config was written by, or undefined for configs that predate the field. */
export function saelensVersionOf(cfg: Record<string, unknown>): string | undefined {
  const top = cfg.sae_lens_version;
  if (typeof top === 'string' && top !== '') return top;
  const meta = cfg.metadata;
  if (isObject(meta) && typeof meta.sae_lens_version === 'string' && meta.sae_lens_version !== '') {
    return meta.sae_lens_version;
  }
  return undefined;
}

/** SAELens reads configs without a version, or older than 6.0 (6.0.0-rc.0 included as 6), as legacy. */
export function isLegacySaelensConfig(cfg: Record<string, unknown>): boolean {
  const version = saelensVersionOf(cfg);
  if (version === undefined) return true;
  const major = Number(/^v?(\d+)/.exec(version)?.[1]);
  return !Number.isFinite(major) || major < 6;
}

/** Maps a pre-6.0 flat config to SAELens 6's layout (see the module comment), naming any bad field. */
export function legacyToV6Config(raw: Record<string, unknown>, file: string): Record<string, unknown> {
  const c: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw)) c[LEGACY_RENAMES[k] ?? k] = v;
  let architecture = c.architecture ?? 'standard';
  if (typeof architecture !== 'string') {
    throw new UserError(`${file}: 'architecture' must be a string, got ${JSON.stringify(architecture)}`);
  }
  const activation = c.activation_fn ?? 'relu';
  const kwargs = isObject(c.activation_fn_kwargs) ? c.activation_fn_kwargs : {};
  let k: unknown;
  if (activation === 'topk') {
    k = kwargs.k;
    if (!Number.isSafeInteger(k) || (k as number) < 1) {
      throw new UserError(
        `${file}: 'activation_fn_str' is 'topk' but 'activation_fn_kwargs.k' is ${JSON.stringify(k)} (expected a positive integer)`,
      );
    }
    architecture = 'topk';
  } else if (architecture === 'standard' && activation !== 'relu') {
    throw new UserError(
      `${file}: 'activation_fn_str' ${JSON.stringify(activation)} is not supported (relu, or topk with activation_fn_kwargs.k)`,
    );
  }
  let normalize = c.normalize_activations;
  if (typeof normalize === 'boolean') normalize = normalize ? 'expected_average_only_in' : 'none';
  if (normalize === null || normalize === undefined) normalize = 'none';
  const hookName = typeof c.hook_name === 'string' ? c.hook_name : '';
  const metadata: Record<string, unknown> = isObject(c.metadata) ? { ...c.metadata } : {};
  for (const key of METADATA_KEYS)
    if (c[key] !== undefined && metadata[key] === undefined) metadata[key] = c[key];
  const out: Record<string, unknown> = {
    architecture,
    d_in: c.d_in,
    d_sae: c.d_sae,
    dtype: typeof c.dtype === 'string' ? c.dtype.replace(/^torch\./, '') : 'float32',
    apply_b_dec_to_input: c.apply_b_dec_to_input ?? true,
    normalize_activations: normalize,
    reshape_activations: c.reshape_activations ?? (hookName.includes('hook_z') ? 'hook_z' : 'none'),
    metadata,
  };
  if (c.d_out !== undefined) out.d_out = c.d_out;
  if (k !== undefined) out.k = k;
  for (const key of ['finetuning_scaling_factor', 'norm_scaling_factor', 'rescale_acts_by_decoder_norm']) {
    if (c[key] !== undefined) out[key] = c[key];
  }
  return out;
}

/** Applies release overrides: metadata keys go to `metadata`, the rest to the top level. */
function applyOverrides(
  raw: Record<string, unknown>,
  overrides: Record<string, unknown>,
): Record<string, unknown> {
  const out = { ...raw };
  const legacy = isLegacySaelensConfig(raw);
  const metadata = isObject(raw.metadata) ? { ...raw.metadata } : undefined;
  for (const [key, value] of Object.entries(overrides)) {
    // Legacy configs are flat until converted; 6.x ones keep these keys in metadata.
    if (!legacy && metadata && (METADATA_KEYS as readonly string[]).includes(key)) metadata[key] = value;
    else out[key] = value;
  }
  if (metadata) out.metadata = metadata;
  return out;
}

function foldFinetuningScale(
  tensors: Record<string, HostTensor>,
  scale: HostTensor,
  config: SaeFolderConfig,
  file: string,
  notes: string[],
): void {
  if (scale.data.every((v) => v === 1)) {
    notes.push('dropped a scaling_factor of ones');
    return;
  }
  if (config.finetuning_scaling_factor !== true) {
    throw new UserError(
      `${file}: tensor 'scaling_factor' is not all ones but cfg.json's 'finetuning_scaling_factor' is not true`,
    );
  }
  const wDec = tensors.W_dec!;
  const [S, dOut] = wDec.shape as [number, number];
  for (let j = 0; j < S; j++) {
    for (let c = 0; c < dOut; c++) wDec.data[j * dOut + c] = wDec.data[j * dOut + c]! * scale.data[j]!;
  }
  notes.push('folded the fine-tuning scaling_factor into W_dec');
}

/** Folds an activation-norm scaling factor: x·s in, x̂/s out (SAELens `fold_activation_norm_scaling_factor`). */
export function foldNormScalingFactor(tensors: Record<string, HostTensor>, s: number): void {
  const scale = (t: HostTensor | undefined, f: number) => {
    if (t) for (let i = 0; i < t.data.length; i++) t.data[i] = t.data[i]! * f;
  };
  scale(tensors.W_enc, s);
  scale(tensors.W_dec, 1 / s);
  scale(tensors.b_dec, 1 / s);
}

async function readSparsity(dir: string, dSae: number): Promise<Float32Array | null> {
  const file = path.join(dir, SPARSITY_FILENAME);
  try {
    const { tensors } = await readSafetensors(file, { names: ['sparsity'] });
    const t = tensors.get('sparsity')!;
    if (t.shape.length !== 1 || t.shape[0] !== dSae) {
      throw new UserError(`${file}: tensor 'sparsity' has shape [${t.shape.join(', ')}], expected [${dSae}]`);
    }
    const data = tensorToFloat32(t, 'sparsity');
    return data === t.data ? Float32Array.from(data) : data;
  } catch (e) {
    if (e instanceof UserError && e.message.startsWith('safetensors file not found')) return null;
    throw e;
  }
}

/** Loads a SAELens folder of any version into the in-memory SAE. */
export async function loadSaelensFolder(dir: string, options: SaelensLoadOptions = {}): Promise<LoadedSae> {
  const cfgPath = path.join(dir, SAE_CFG_FILENAME);
  let raw = await readJson(cfgPath);
  if (!isObject(raw)) throw new UserError(`${cfgPath}: expected a JSON object`);
  if (options.overrides) raw = applyOverrides(raw, options.overrides);
  const rawCfg = raw as Record<string, unknown>;
  const legacy = isLegacySaelensConfig(rawCfg);
  const notes: string[] = [];
  if (legacy)
    notes.push(`read a pre-6.0 SAELens config (version ${saelensVersionOf(rawCfg) ?? 'unrecorded'})`);
  const { config, kind } = checkConfig(legacy ? legacyToV6Config(rawCfg, cfgPath) : rawCfg, cfgPath);

  const weightsPath = path.join(dir, SAE_WEIGHTS_FILENAME);
  const shapes = expectedShapes(config, kind);
  const header = await readSafetensorsHeader(weightsPath);
  const hasScale = Object.hasOwn(header.tensors, 'scaling_factor');
  const names = [...Object.keys(shapes), ...(hasScale ? ['scaling_factor'] : [])];
  const { tensors: stored } = await readSafetensors(weightsPath, { names });
  const tensors: Record<string, HostTensor> = {};
  for (const [name, shape] of Object.entries(shapes)) {
    tensors[name] = hostTensor(stored.get(name)!, shape, weightsPath, name, `from ${SAE_CFG_FILENAME}`);
  }
  checkFinite(tensors, weightsPath);
  if (hasScale) {
    const scale = hostTensor(stored.get('scaling_factor')!, [config.d_sae], weightsPath, 'scaling_factor');
    foldFinetuningScale(tensors, scale, config, weightsPath, notes);
  }
  delete config.finetuning_scaling_factor;

  const s = options.normScalingFactor ?? config.norm_scaling_factor;
  if (config.normalize_activations === 'expected_average_only_in' && s !== undefined) {
    if (typeof s !== 'number' || !Number.isFinite(s) || s <= 0) {
      throw new UserError(
        `${cfgPath}: 'norm_scaling_factor' must be a positive number, got ${JSON.stringify(s)}`,
      );
    }
    foldNormScalingFactor(tensors, s);
    config.normalize_activations = 'none';
    notes.push(`folded the activation norm scaling factor ${s} into the weights`);
  }
  delete config.norm_scaling_factor;
  if (config.dtype !== 'float32') notes.push(`weights widened from ${config.dtype} to float32`);
  // Both describe the loaded copy: float32 weights in host memory (the trainer's 'mps'/'cuda' is history).
  config.dtype = 'float32';
  config.device = 'cpu';

  return {
    config,
    kind,
    tensors,
    sparsity: await readSparsity(dir, config.d_sae),
    format: legacy ? 'saelens-legacy' : 'saelens',
    source: dir,
    requiredProcessing: requiredProcessingOf(config),
    notes,
  };
}
