/**
 * A few well-known SAE releases, with the facts SAELens's `pretrained_saes.yaml` (6.18) records for them:
 * the hub repository, where each SAE lives in it, the model, and the config overrides the release needs
 * (gpt2-small-res-jb was trained on TransformerLens's centred GPT-2, hence `center_writing_weights`).
 * `--sae RELEASE/SAE_ID` resolves through this table; any other `org/repo/folder` is looked up on the hub
 * directly with its format detected from the files.
 */
import type { WeightProcessing } from '../model/process-weights.js';
import type { SaeFormat } from './types.js';

export interface SaeReleaseEntry {
  id: string;
  /** Folder inside the repository. */
  path: string;
  /** SAELens's per-SAE `norm_scaling_factor` (for `expected_average_only_in` SAEs). */
  normScalingFactor?: number;
}

export interface SaeRelease {
  name: string;
  repoId: string;
  format: Exclude<SaeFormat, 'saelens-legacy'>;
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

const layers = (n: number) => Array.from({ length: n }, (_, i) => i);

export const SAE_RELEASES: readonly SaeRelease[] = [
  {
    name: 'gpt2-small-res-jb',
    repoId: 'jbloom/GPT2-Small-SAEs-Reformatted',
    format: 'saelens',
    model: 'gpt2-small',
    processing: 'center_writing_weights',
    configOverrides: { model_from_pretrained_kwargs: { center_writing_weights: true } },
    saes: [
      ...layers(12).map((l) => ({ id: `blocks.${l}.hook_resid_pre`, path: `blocks.${l}.hook_resid_pre` })),
      { id: 'blocks.11.hook_resid_post', path: 'blocks.11.hook_resid_post' },
    ],
    idExample: 'blocks.8.hook_resid_pre',
    description: "Joseph Bloom's GPT-2 small residual-stream SAEs (24576 features, pre-6.0 SAELens configs)",
  },
  {
    name: 'gpt2-small-resid-post-v5-128k',
    repoId: 'jbloom/GPT2-Small-OAI-v5-128k-resid-post-SAEs',
    format: 'saelens',
    model: 'gpt2-small',
    processing: 'none',
    configOverrides: { dataset_path: 'Skylion007/openwebtext' },
    saes: layers(12).map((l) => ({ id: `blocks.${l}.hook_resid_post`, path: `v5_128k_layer_${l}` })),
    idExample: 'blocks.8.hook_resid_post',
    description: "OpenAI's GPT-2 small TopK residual SAEs (v5, 128k features), reformatted for SAELens",
  },
  {
    name: 'gemma-scope-2b-pt-res',
    repoId: 'google/gemma-scope-2b-pt-res',
    format: 'gemma-scope',
    model: 'gemma-2-2b',
    processing: 'none',
    idPattern: /^(layer_\d+|embedding)\/width_[0-9a-z]+\/average_l0_\d+$/,
    idExample: 'layer_12/width_16k/average_l0_82',
    description: 'Gemma Scope residual-stream JumpReLU SAEs for Gemma 2 2B',
  },
  {
    name: 'gemma-scope-2b-pt-transcoders',
    repoId: 'google/gemma-scope-2b-pt-transcoders',
    format: 'gemma-scope',
    model: 'gemma-2-2b',
    processing: 'none',
    idPattern: /^layer_\d+\/width_[0-9a-z]+\/average_l0_\d+$/,
    idExample: 'layer_2/width_16k/average_l0_9',
    description: 'Gemma Scope JumpReLU MLP transcoders for Gemma 2 2B',
  },
  {
    name: 'pythia-70m-sparsify-32k',
    repoId: 'EleutherAI/sae-pythia-70m-32k',
    format: 'sparsify',
    model: 'pythia-70m',
    processing: 'none',
    idPattern: /^(layers\.\d+|embed_tokens)$/,
    idExample: 'layers.1',
    description:
      "EleutherAI's sparsify TopK residual SAEs for Pythia 70M (32k latents, one folder per layer)",
  },
];

export function findRelease(name: string): SaeRelease | undefined {
  return SAE_RELEASES.find((r) => r.name === name);
}

/** The release's entry for an SAE id, or undefined when the release has no such SAE. */
export function releaseEntry(release: SaeRelease, saeId: string): SaeReleaseEntry | undefined {
  const listed = release.saes?.find((s) => s.id === saeId);
  if (listed) return listed;
  if (release.idPattern?.test(saeId)) return { id: saeId, path: saeId };
  return undefined;
}
