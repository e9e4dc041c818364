/**
 * Which SAEs an evaluation covers and how each one meets the model: finding SAELens folders from the `sae`
 * option, reading them, and checking their hooks and widths against the model before any token is run.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { ModelConfig, HookPoint } from '../model/index.js';
import { hookShape, parseHookName } from '../model/index.js';
import { UserError } from '../pipeline/errors.js';
import type { HostTensor } from '../sae/fold.js';
import { Sae } from '../sae/sae.js';
import { SAE_CFG_FILENAME } from '../sae/saelens-folder.js';
import { loadSae } from '../sae-formats/load.js';
import type { LoadSaeOptions } from '../sae-formats/load.js';
import type { SaeFolderConfig } from '../sae/saelens-folder.js';
import type { SavedArchitecture } from '../sae/saved-architecture.js';
import { weightStatistics } from './weight-stats.js';
import type { WeightStatistics } from './weight-stats.js';
import { naturalCompare } from '../util/natural-compare.js';

export interface SaeLocation {
  /** Unique within the evaluation: the folder's name, with `-2`, `-3`... added on a clash. */
  name: string;
  /** The folder's own name (a trainer writes metrics under it). */
  folderName: string;
  /** Absolute path of the folder. */
  path: string;
}

export interface EvalTarget extends SaeLocation {
  config: SaeFolderConfig;
  kind: SavedArchitecture;
  sae: Sae;
  /** The hook the SAE reads. */
  hookIn: HookPoint;
  /** The hook it reconstructs and replaces: hookIn for an SAE, the output hook for a transcoder. */
  hookOut: HookPoint;
  transcoder: boolean;
  /** Sweep group: the layer number, or the hook name outside the blocks. */
  group: string;
  weightStats: WeightStatistics;
  /** W_dec on the host [d_sae, d_out], for the dashboards' logit effects. */
  decoder: HostTensor;
  /** Every weight on the host, as saved (the onnx engine builds the SAE into its graph from them). */
  tensors: Readonly<Record<string, HostTensor>>;
  /** The file or folder the weights were read from (for a release or hub SAE, inside the HF cache). */
  source: string;
}

const isDir = (p: string): boolean => existsSync(p) && statSync(p).isDirectory();
// A folder in any format src/sae-formats reads: SAELens/sparsify (cfg.json) or Gemma Scope (params.npz).
const isSaeFolder = (p: string): boolean =>
  existsSync(path.join(p, SAE_CFG_FILENAME)) || existsSync(path.join(p, 'params.npz'));

function subFolders(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && !e.name.includes('.tmp-') && !e.name.includes('.old-'))
    .map((e) => path.join(dir, e.name))
    .filter(isSaeFolder)
    .sort(naturalCompare);
}

/**
 * Expands the `sae` option: each entry is an SAE folder (it has cfg.json), or a directory whose
 * sub-directories are SAE folders (a trainer's `saes/` or `checkpoint/`), or a training run directory
 * (its `saes/` holds them). Missing paths and directories without SAEs are UserErrors naming the entry.
 */
export function findSaeFolders(entries: readonly string[], cwd = process.cwd()): SaeLocation[] {
  if (entries.length === 0) {
    throw new UserError('--sae: give at least one SAE folder (or a directory of SAE folders)');
  }
  const found: string[] = [];
  const refs: string[] = [];
  for (const entry of entries) {
    const abs = path.resolve(cwd, entry);
    if (!existsSync(abs)) {
      // Not a local path: a release (`gpt2-small-res-jb/blocks.8.hook_resid_pre`) or a hub repo folder,
      // resolved by loadSae through the Hugging Face cache or hub.
      if (entry.includes('/') && !entry.startsWith('.') && !path.isAbsolute(entry)) {
        refs.push(entry);
        continue;
      }
      throw new UserError(`--sae ${entry}: no such SAE folder (${abs} does not exist)`);
    }
    if (!isDir(abs)) {
      found.push(abs); // a weights file (params.npz, sae_weights.safetensors) stands for its SAE
      continue;
    }
    if (isSaeFolder(abs)) {
      found.push(abs);
      continue;
    }
    let inside = subFolders(abs);
    if (inside.length === 0 && isDir(path.join(abs, 'saes'))) inside = subFolders(path.join(abs, 'saes'));
    if (inside.length === 0) {
      throw new UserError(
        `--sae ${entry}: not an SAE folder (no ${SAE_CFG_FILENAME}) and no sub-directory of it is one`,
      );
    }
    found.push(...inside);
  }
  const unique = [...new Set([...found, ...refs])];
  const used = new Map<string, number>();
  return unique.map((p) => {
    const folderName = path.basename(p).replace(/\.(npz|safetensors)$/, '');
    const n = (used.get(folderName) ?? 0) + 1;
    used.set(folderName, n);
    return { name: n === 1 ? folderName : `${folderName}-${n}`, folderName, path: p };
  });
}

/** Width of a hook's activation per token (heads flattened for q/k/v/z, as SAELens does). */
export function hookWidth(config: ModelConfig, hook: HookPoint): number {
  return hookShape(config, hook.site, 1, 1)
    .slice(2)
    .reduce((a, b) => a * b, 1);
}

function metadataField(config: SaeFolderConfig, key: string): unknown {
  return config.metadata[key] ?? config[key];
}

/**
 * Reads one SAE folder and checks it against the model: its hook(s) must exist, a transcoder's output hook
 * must come after its input hook, and d_in / d_out must equal the hook widths. Failures are UserErrors
 * naming the SAE, its cfg.json and the field.
 */
export async function loadEvalTarget(
  location: SaeLocation,
  model: { config: ModelConfig; name: string },
  loadOptions: LoadSaeOptions = {},
): Promise<EvalTarget> {
  // Any published format (SAELens, Gemma Scope, sparsify, a release), converted to the SAELens layout.
  const folder = await loadSae(location.path, loadOptions);
  const { config, kind } = folder;
  const cfgPath = path.join(location.path, SAE_CFG_FILENAME);
  const where = `SAE '${location.name}' (${cfgPath})`;

  const headIndex = metadataField(config, 'hook_head_index');
  if (headIndex !== undefined && headIndex !== null) {
    throw new UserError(
      `${where}: hook_head_index ${JSON.stringify(headIndex)} (single-head SAEs) is not supported`,
    );
  }
  const hook = (field: string): HookPoint => {
    const name = metadataField(config, field);
    if (typeof name !== 'string' || name === '') {
      throw new UserError(`${where}: ${field} is missing (expected metadata.${field} naming a model hook)`);
    }
    try {
      return parseHookName(model.config, name);
    } catch (e) {
      if (e instanceof UserError) {
        throw new UserError(
          `${where}: ${field} '${name}' is not a hook of the model ${model.name}: ${e.message}`,
        );
      }
      throw e;
    }
  };
  const checkWidth = (h: HookPoint, field: 'd_in' | 'd_out', value: number, hookField: string): void => {
    const width = hookWidth(model.config, h);
    if (width !== value) {
      throw new UserError(
        `${where}: ${field} is ${value} but ${hookField} '${h.name}' has width ${width} in the model ${model.name}`,
      );
    }
  };

  const hookIn = hook('hook_name');
  checkWidth(hookIn, 'd_in', config.d_in, 'hook_name');
  let hookOut = hookIn;
  if (kind.transcoder) {
    hookOut = hook('hook_name_out');
    if (hookOut.order <= hookIn.order) {
      throw new UserError(
        `${where}: hook_name_out '${hookOut.name}' must come after hook_name '${hookIn.name}' in the forward pass`,
      );
    }
    checkWidth(hookOut, 'd_out', config.d_out ?? config.d_in, 'hook_name_out');
  }
  const sae = Sae.fromTensors(config, kind, folder.tensors, folder.sparsity);
  return {
    ...location,
    config,
    kind,
    sae,
    hookIn,
    hookOut,
    transcoder: kind.transcoder,
    group: hookIn.layer === null ? hookIn.name : String(hookIn.layer),
    weightStats: weightStatistics(folder.tensors),
    decoder: folder.tensors.W_dec!,
    tensors: folder.tensors,
    source: folder.source,
  };
}

/** The model an SAE says it was trained on (cfg metadata `model_name`), if any. */
export function saeModelName(target: EvalTarget): string | null {
  const name = metadataField(target.config, 'model_name');
  return typeof name === 'string' ? name : null;
}

/** Loads every SAE; if one fails, those already loaded are released before the error propagates. */
export async function loadEvalTargets(
  locations: readonly SaeLocation[],
  model: { config: ModelConfig; name: string },
  loadOptions: (location: SaeLocation) => LoadSaeOptions = () => ({}),
): Promise<EvalTarget[]> {
  const targets: EvalTarget[] = [];
  try {
    for (const location of locations)
      targets.push(await loadEvalTarget(location, model, loadOptions(location)));
  } catch (e) {
    for (const t of targets) t.sae.dispose();
    throw e;
  }
  return targets;
}

/** A value every SAE that sets it agrees on in its cfg metadata (`context_size`, ...), or null. */
export function sharedMetadata(targets: readonly EvalTarget[], key: string): unknown {
  const values = targets
    .map((t) => metadataField(t.config, key))
    .filter((v) => v !== undefined && v !== null);
  if (values.length === 0) return null;
  return values.every((v) => v === values[0]) ? values[0] : null;
}
