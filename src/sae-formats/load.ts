/**
 * One entry point for every published SAE: resolve the reference (local, release, hub), detect the layout,
 * load it into the in-memory SAE, and record what its release says about how to use it.
 */
import path from 'node:path';
import { Sae } from '../sae/sae.js';
import type { DetectedSae } from './detect.js';
import { loadGemmaScope } from './gemma-scope.js';
import type { SaeRelease } from './releases.js';
import { resolveSae } from './resolve.js';
import type { ResolveSaeOptions } from './resolve.js';
import { loadSaelensFolder, METADATA_KEYS } from './saelens.js';
import { loadSparsify } from './sparsify.js';
import { requiredProcessingOf } from './types.js';
import type { LoadedSae } from './types.js';

export interface LoadDetectedOptions {
  /** Text to infer Gemma Scope's model and hook from (default: the file's path). */
  location?: string;
  /** Hook to record (overrides what the files say or imply). */
  hookName?: string;
  /** Release config overrides. */
  overrides?: Record<string, unknown>;
  normScalingFactor?: number;
}

/** Loads a detected local SAE folder or file. */
export async function loadDetectedSae(
  detected: DetectedSae,
  options: LoadDetectedOptions = {},
): Promise<LoadedSae> {
  let loaded: LoadedSae;
  switch (detected.format) {
    case 'saelens':
      loaded = await loadSaelensFolder(detected.path, {
        overrides: options.overrides,
        normScalingFactor: options.normScalingFactor,
      });
      break;
    case 'gemma-scope':
      loaded = await loadGemmaScope(detected.path, {
        location: options.location,
        hookName: options.hookName,
      });
      break;
    case 'sparsify':
      loaded = await loadSparsify(detected.path, { hookName: options.hookName });
      break;
  }
  if (options.hookName !== undefined && loaded.config.metadata.hook_name !== options.hookName) {
    if (loaded.config.metadata.hook_name !== undefined) {
      loaded.notes.push(`hook ${String(loaded.config.metadata.hook_name)} replaced by ${options.hookName}`);
    }
    loaded.config.metadata.hook_name = options.hookName;
    loaded.config.reshape_activations = options.hookName.endsWith('hook_z') ? 'hook_z' : 'none';
  }
  return loaded;
}

/** Release facts for formats without a config of their own (SAELens folders take them as overrides). */
function applyRelease(loaded: LoadedSae, release: SaeRelease): void {
  const meta = loaded.config.metadata;
  if (loaded.format !== 'saelens' && loaded.format !== 'saelens-legacy') {
    for (const [key, value] of Object.entries(release.configOverrides ?? {})) {
      if ((METADATA_KEYS as readonly string[]).includes(key)) meta[key] = value;
    }
  }
  if (meta.model_name === undefined) meta.model_name = release.model;
  if (release.processing === 'center_writing_weights') {
    const kwargs =
      typeof meta.model_from_pretrained_kwargs === 'object' ? meta.model_from_pretrained_kwargs : {};
    meta.model_from_pretrained_kwargs = { ...kwargs, center_writing_weights: true };
  }
  loaded.requiredProcessing = requiredProcessingOf(loaded.config);
}

export interface LoadSaeOptions extends ResolveSaeOptions {
  hookName?: string;
  /**
   * Text to infer a Gemma Scope SAE's model and hooks from (`google/gemma-scope-2b-pt-res/layer_3/...`), for
   * a local copy whose path does not name the repository (default: the hub folder, or the local path).
   */
  location?: string;
}

/**
 * Loads an SAE from a local folder/file, `RELEASE/SAE_ID` or `ORG/REPO/FOLDER` (see `resolveSae`), in any
 * supported layout, into the in-memory SAE with float32 weights.
 */
export async function loadSae(ref: string, options: LoadSaeOptions = {}): Promise<LoadedSae> {
  const resolved = await resolveSae(ref, options);
  const location =
    options.location ??
    (resolved.hub ? `${resolved.hub.repoId}/${resolved.hub.path}` : path.resolve(resolved.detected.path));
  const loaded = await loadDetectedSae(resolved.detected, {
    location,
    hookName: options.hookName,
    overrides: resolved.release?.configOverrides,
    normScalingFactor: resolved.entry?.normScalingFactor,
  });
  if (resolved.release) applyRelease(loaded, resolved.release);
  if (resolved.hub) loaded.release = resolved.hub;
  return loaded;
}

/** The inference SAE (tfjs tensors on the active backend) of a loaded one; dispose it when done. */
export function toSae(loaded: LoadedSae): Sae {
  return Sae.fromTensors(loaded.config, loaded.kind, loaded.tensors, loaded.sparsity);
}
