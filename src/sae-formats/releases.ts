/**
 * The SAE releases `--sae RELEASE/SAE_ID` resolves: every release of SAELens's `pretrained_saes.yaml`
 * (saelens-releases.json, generated from it by tools/saelens-releases/generate.ts; its `source` names the SAELens
 * commit), plus what saeflow adds: releases SAELens does not list (EleutherAI's sparsify SAEs) and, for Gemma
 * Scope, every `layer_N/width_W/average_l0_K` folder of the repository rather than only the ones SAELens lists.
 * Any other `org/repo/folder` is looked up on the hub directly with its format detected from the files.
 */
import { readFileSync } from 'node:fs';
import type { WeightProcessing } from '../model/process-weights.js';
import type { SaeFormat } from './types.js';

export interface SaeReleaseEntry {
  id: string;
  /** Folder (or file) inside the repository. */
  path: string;
  /** SAELens's per-SAE `norm_scaling_factor` (for `expected_average_only_in` SAEs). */
  normScalingFactor?: number;
}

export interface SaeRelease {
  name: string;
  repoId: string;
  /** The file format saeflow reads the release's SAEs as; null when it has no reader for them. */
  format: Exclude<SaeFormat, 'saelens-legacy'> | null;
  /** SAELens's `conversion_func` for the release (null: SAELens's own format). */
  conversion: string | null;
  /** Model the SAEs were trained on (SAELens's name). */
  model: string;
  /** Weight processing the model must be loaded with. */
  processing: WeightProcessing;
  /** SAELens `config_overrides`, applied to every SAE's config. */
  configOverrides?: Record<string, unknown>;
  /** The SAEs: listed, or any id matching `idPattern` (path = id) for releases too large to list. */
  saes?: SaeReleaseEntry[];
  idPattern?: RegExp;
  /** e.g. `layer_12/width_16k/average_l0_82`, shown in errors. */
  idExample: string;
  description: string;
}

interface GeneratedRelease {
  repo_id: string;
  model: string;
  conversion_func: string | null;
  config_overrides?: Record<string, unknown>;
  saes: Array<[string, string?, number?]>;
}

interface Generated {
  source: { file: string; from: string; generator: string };
  releases: Record<string, GeneratedRelease>;
}

const GENERATED = JSON.parse(
  readFileSync(new URL('./saelens-releases.json', import.meta.url), 'utf8'),
) as Generated;

/** Where the release list came from: SAELens's file, repository and commit. */
export const RELEASES_SOURCE = GENERATED.source;

/** SAELens's conversion functions whose files saeflow reads, and the format it reads them as. */
const READABLE: Record<string, Exclude<SaeFormat, 'saelens-legacy'>> = {
  gemma_2: 'gemma-scope',
  gemma_2_transcoder: 'gemma-scope',
};

const DESCRIPTIONS: Record<string, string> = {
  'gpt2-small-res-jb':
    "Joseph Bloom's GPT-2 small residual-stream SAEs (24576 features, pre-6.0 SAELens configs)",
  'gpt2-small-resid-post-v5-128k':
    "OpenAI's GPT-2 small TopK residual SAEs (v5, 128k features), reformatted for SAELens",
  'gemma-scope-2b-pt-res': 'Gemma Scope residual-stream JumpReLU SAEs for Gemma 2 2B',
  'gemma-scope-2b-pt-transcoders': 'Gemma Scope JumpReLU MLP transcoders for Gemma 2 2B',
};

/** Examples shown in errors where the first SAE listed would be a poor one. */
const EXAMPLES: Record<string, string> = {
  'gpt2-small-res-jb': 'blocks.8.hook_resid_pre',
  'gpt2-small-resid-post-v5-128k': 'blocks.8.hook_resid_post',
  'gemma-scope-2b-pt-res': 'layer_12/width_16k/average_l0_82',
  'gemma-scope-2b-pt-transcoders': 'layer_2/width_16k/average_l0_9',
};

/** Gemma Scope repositories hold an SAE for every (layer, width, L0) trained; SAELens lists some of them. */
const GEMMA_SCOPE_IDS = /^(layer_\d+|embedding)\/width_[0-9a-z]+\/average_l0_\d+$/;

function fromGenerated(name: string, r: GeneratedRelease): SaeRelease {
  const kwargs = r.config_overrides?.model_from_pretrained_kwargs as Record<string, unknown> | undefined;
  const format = r.conversion_func === null ? 'saelens' : (READABLE[r.conversion_func] ?? null);
  const saes = r.saes.map(([id, path, norm]) => ({
    id,
    path: path ?? id,
    ...(norm !== undefined ? { normScalingFactor: norm } : {}),
  }));
  return {
    name,
    repoId: r.repo_id,
    format,
    conversion: r.conversion_func,
    model: r.model,
    processing: kwargs?.center_writing_weights === true ? 'center_writing_weights' : 'none',
    ...(r.config_overrides ? { configOverrides: r.config_overrides } : {}),
    saes,
    ...(format === 'gemma-scope' && !name.endsWith('-canonical') ? { idPattern: GEMMA_SCOPE_IDS } : {}),
    idExample: EXAMPLES[name] ?? saes[0]?.id ?? '',
    description: DESCRIPTIONS[name] ?? `${r.model} SAEs from ${r.repo_id}`,
  };
}

export const SAE_RELEASES: readonly SaeRelease[] = [
  ...Object.entries(GENERATED.releases).map(([name, r]) => fromGenerated(name, r)),
  {
    name: 'pythia-70m-sparsify-32k',
    repoId: 'EleutherAI/sae-pythia-70m-32k',
    format: 'sparsify',
    conversion: null,
    model: 'pythia-70m',
    processing: 'none',
    idPattern: /^(layers\.\d+|embed_tokens)$/,
    idExample: 'layers.1',
    description:
      "EleutherAI's sparsify TopK residual SAEs for Pythia 70M (32k latents, one folder per layer; not in SAELens's list)",
  },
];

const BY_NAME = new Map(SAE_RELEASES.map((r) => [r.name, r]));

export function findRelease(name: string): SaeRelease | undefined {
  return BY_NAME.get(name);
}

/** The release's entry for an SAE id, or undefined when the release has no such SAE. */
export function releaseEntry(release: SaeRelease, saeId: string): SaeReleaseEntry | undefined {
  const listed = release.saes?.find((s) => s.id === saeId);
  if (listed) return listed;
  if (release.idPattern?.test(saeId)) return { id: saeId, path: saeId };
  return undefined;
}
