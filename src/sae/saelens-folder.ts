/**
 * SAELens folders: `cfg.json`, `sae_weights.safetensors` and `sparsity.safetensors`, in SAELens 6.x's
 * layout (what `SAE.save_model` writes and `SAE.load_from_disk` reads). `metadata.sae_lens_version` names
 * that layout version: SAELens reads configs without it (or older than 6.0) as its legacy flat layout.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { readSafetensors, tensorToFloat32, writeSafetensors } from '../io/safetensors.js';
import type { Tensor } from '../io/safetensors.js';
import { UserError } from '../pipeline/errors.js';
import { writeDirAtomic } from './atomic-dir.js';
import type { SaeTrainingConfig } from './config.js';
import { encoderFor } from './architectures/registry.js';
import type { HostTensor, InferenceWeights } from './fold.js';
import { knownSavedArchitectures, parseSavedArchitecture } from './saved-architecture.js';
import type { SavedArchitecture } from './saved-architecture.js';

export const SAE_CFG_FILENAME = 'cfg.json';
export const SAE_WEIGHTS_FILENAME = 'sae_weights.safetensors';
export const SPARSITY_FILENAME = 'sparsity.safetensors';
/** The SAELens release whose folder layout we write. */
export const SAELENS_LAYOUT_VERSION = '6.18.0';
export const SAEFLOW_VERSION = '0.1.0';

export const INFERENCE_NORMALIZATIONS = [
  'none',
  'expected_average_only_in',
  'constant_norm_rescale',
  'layer_norm',
] as const;
export type InferenceNormalization = (typeof INFERENCE_NORMALIZATIONS)[number];

/** A parsed cfg.json (SAELens `SAEConfig.to_dict()`); unknown keys are kept. */
export interface SaeFolderConfig {
  architecture: string;
  d_in: number;
  d_sae: number;
  d_out?: number;
  dtype: string;
  device: string;
  apply_b_dec_to_input: boolean;
  normalize_activations: InferenceNormalization;
  reshape_activations: 'none' | 'hook_z';
  metadata: Record<string, unknown>;
  k?: number;
  rescale_acts_by_decoder_norm?: boolean;
  [key: string]: unknown;
}

export interface SaeFolder {
  config: SaeFolderConfig;
  kind: SavedArchitecture;
  tensors: Record<string, HostTensor>;
  /** log10 feature density, when sparsity.safetensors is present. */
  sparsity: Float32Array | null;
}

/** cfg.json for an SAE trained with `cfg` and saved as `architecture` (normalisation already folded). */
export function saelensConfig(cfg: SaeTrainingConfig, architecture: string): SaeFolderConfig {
  const out: SaeFolderConfig = {
    d_in: cfg.d_in,
    d_sae: cfg.d_sae,
    dtype: 'float32',
    device: 'cpu',
    apply_b_dec_to_input: cfg.apply_b_dec_to_input,
    normalize_activations: 'none',
    reshape_activations: cfg.hook_name.endsWith('hook_z') ? 'hook_z' : 'none',
    metadata: {
      sae_lens_version: SAELENS_LAYOUT_VERSION,
      saeflow_version: SAEFLOW_VERSION,
      hook_name: cfg.hook_name,
      ...(cfg.hook_name_out !== null ? { hook_name_out: cfg.hook_name_out } : {}),
      ...cfg.metadata,
    },
    architecture,
  };
  if (cfg.d_out !== null) out.d_out = cfg.d_out;
  if (architecture.startsWith('topk')) {
    out.k = cfg.k;
    out.rescale_acts_by_decoder_norm = cfg.rescale_acts_by_decoder_norm;
  }
  return out;
}

function toSafetensors(tensors: Record<string, HostTensor>): Record<string, Tensor> {
  return Object.fromEntries(
    Object.entries(tensors).map(([n, t]) => [n, { dtype: 'F32' as const, shape: t.shape, data: t.data }]),
  );
}

/** Writes the three files into an existing directory. */
export async function writeSaeFolderFiles(
  dir: string,
  config: SaeFolderConfig,
  weights: InferenceWeights,
  sparsity: Float32Array | null,
): Promise<void> {
  await writeFile(path.join(dir, SAE_CFG_FILENAME), `${JSON.stringify(config, null, 2)}\n`);
  await writeSafetensors(path.join(dir, SAE_WEIGHTS_FILENAME), toSafetensors(weights.tensors));
  if (sparsity !== null) {
    await writeSafetensors(path.join(dir, SPARSITY_FILENAME), {
      sparsity: { dtype: 'F32', shape: [sparsity.length], data: sparsity },
    });
  }
}

/** Writes an SAELens folder atomically (temporary sibling directory, then rename). */
export async function writeSaeFolder(
  dir: string,
  config: SaeFolderConfig,
  weights: InferenceWeights,
  sparsity: Float32Array | null = null,
): Promise<void> {
  await writeDirAtomic(dir, (tmp) => writeSaeFolderFiles(tmp, config, weights, sparsity));
}

export function expectedShapes(config: SaeFolderConfig, kind: SavedArchitecture): Record<string, number[]> {
  const { d_in: dIn, d_sae: S } = config;
  const dOut = config.d_out ?? dIn;
  const shapes: Record<string, number[]> = { W_enc: [dIn, S], W_dec: [S, dOut], b_dec: [dOut] };
  for (const name of encoderFor(kind.encoder).tensors) shapes[name] = [S];
  if (kind.skip) shapes.W_skip = [dOut, dIn];
  return shapes;
}

export function checkConfig(
  raw: unknown,
  file: string,
): { config: SaeFolderConfig; kind: SavedArchitecture } {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new UserError(`${file}: expected a JSON object`);
  }
  const c = raw as Record<string, unknown>;
  const architecture = c.architecture ?? 'standard';
  const kind = typeof architecture === 'string' ? parseSavedArchitecture(architecture) : undefined;
  if (kind === undefined) {
    throw new UserError(
      `${file}: architecture ${JSON.stringify(architecture)} is not supported (known: ${knownSavedArchitectures().join(', ')})`,
    );
  }
  const positiveInt = (key: string, required: boolean): void => {
    const v = c[key];
    if (v === undefined && !required) return;
    if (!Number.isSafeInteger(v) || (v as number) < 1) {
      throw new UserError(`${file}: '${key}' must be a positive integer, got ${JSON.stringify(v)}`);
    }
  };
  positiveInt('d_in', true);
  positiveInt('d_sae', true);
  positiveInt('d_out', kind.transcoder);
  if (kind.encoder === 'topk') positiveInt('k', true);
  const normalize = c.normalize_activations ?? 'none';
  if (!INFERENCE_NORMALIZATIONS.includes(normalize as InferenceNormalization)) {
    throw new UserError(
      `${file}: 'normalize_activations' must be one of ${INFERENCE_NORMALIZATIONS.join(', ')}, got ${JSON.stringify(normalize)}`,
    );
  }
  for (const key of ['apply_b_dec_to_input', 'rescale_acts_by_decoder_norm']) {
    if (c[key] !== undefined && typeof c[key] !== 'boolean') {
      throw new UserError(`${file}: '${key}' must be true or false, got ${JSON.stringify(c[key])}`);
    }
  }
  const metadata = c.metadata ?? {};
  if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) {
    throw new UserError(`${file}: 'metadata' must be an object`);
  }
  const config: SaeFolderConfig = {
    ...c,
    architecture: architecture as string,
    d_in: c.d_in as number,
    d_sae: c.d_sae as number,
    dtype: typeof c.dtype === 'string' ? c.dtype : 'float32',
    device: typeof c.device === 'string' ? c.device : 'cpu',
    apply_b_dec_to_input: (c.apply_b_dec_to_input as boolean | undefined) ?? !kind.transcoder,
    normalize_activations: normalize as InferenceNormalization,
    reshape_activations: c.reshape_activations === 'hook_z' ? 'hook_z' : 'none',
    metadata: metadata as Record<string, unknown>,
  };
  if (config.apply_b_dec_to_input && config.d_out !== undefined && config.d_out !== config.d_in) {
    throw new UserError(
      `${file}: 'apply_b_dec_to_input' is true but d_out (${config.d_out}) differs from d_in (${config.d_in})`,
    );
  }
  return { config, kind };
}

/** Reads and validates an SAELens folder; weights are widened to float32 whatever their stored dtype. */
export async function readSaeFolder(dir: string): Promise<SaeFolder> {
  const cfgPath = path.join(dir, SAE_CFG_FILENAME);
  let text: string;
  try {
    text = await readFile(cfgPath, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR')
      throw new UserError(`not an SAE folder: ${cfgPath} is missing`);
    throw e;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${cfgPath}: invalid JSON (${(e as Error).message})`);
  }
  const { config, kind } = checkConfig(raw, cfgPath);
  const weightsPath = path.join(dir, SAE_WEIGHTS_FILENAME);
  const shapes = expectedShapes(config, kind);
  const { tensors: stored } = await readSafetensors(weightsPath, { names: Object.keys(shapes) });
  const tensors: Record<string, HostTensor> = {};
  for (const [name, shape] of Object.entries(shapes)) {
    const t = stored.get(name)!;
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new UserError(
        `${weightsPath}: tensor '${name}' has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}] from ${SAE_CFG_FILENAME}`,
      );
    }
    const data = tensorToFloat32(t, name);
    tensors[name] = { shape, data: data === t.data ? data : Float32Array.from(data) };
  }
  let sparsity: Float32Array | null = null;
  const sparsityPath = path.join(dir, SPARSITY_FILENAME);
  try {
    const { tensors: s } = await readSafetensors(sparsityPath, { names: ['sparsity'] });
    const t = s.get('sparsity')!;
    if (t.shape.length !== 1 || t.shape[0] !== config.d_sae) {
      throw new UserError(
        `${sparsityPath}: tensor 'sparsity' has shape [${t.shape.join(', ')}], expected [${config.d_sae}]`,
      );
    }
    sparsity = tensorToFloat32(t, 'sparsity');
  } catch (e) {
    if (!(e instanceof UserError && e.message.startsWith('safetensors file not found'))) throw e;
  }
  return { config, kind, tensors, sparsity };
}
