/**
 * Gemma Scope (google/gemma-scope-*): one folder per SAE (`layer_12/width_16k/average_l0_82/`) holding
 * `params.npz` (or the same tensors as safetensors) with `W_enc` [d_in, d_sae], `W_dec` [d_sae, d_out],
 * `b_enc`, `b_dec` and `threshold`: JumpReLU SAEs (transcoders in the `-transcoders` repositories) that
 * do not subtract b_dec from the input. There is no config file: the widths come from the shapes, and the
 * model and hook from the repository name and folder, as SAELens infers them (`-res` -> resid_post, `-mlp`
 * -> mlp_out, `-att` -> attn.hook_z, transcoders ln2.hook_normalized -> mlp_out; the `embedding` SAEs read
 * hook_embed and were trained on embeddings scaled by sqrt(d_model), which is folded into W_enc/W_dec).
 */
import path from 'node:path';
import { readSafetensors } from '../io/safetensors.js';
import type { Tensor } from '../io/safetensors.js';
import { UserError } from '../pipeline/errors.js';
import type { HostTensor } from '../sae/fold.js';
import type { SaeFolderConfig } from '../sae/saelens-folder.js';
import { parseSavedArchitecture } from '../sae/saved-architecture.js';
import { readNpz } from './npz.js';
import { checkFinite, hostTensor, requiredProcessingOf } from './types.js';
import type { LoadedSae } from './types.js';

export const GEMMA_SCOPE_FILES = ['params.npz', 'params.safetensors'] as const;

const TENSORS = ['W_enc', 'W_dec', 'b_enc', 'b_dec', 'threshold'] as const;

export interface GemmaScopeSite {
  model?: string;
  hook_name?: string;
  hook_name_out?: string;
  transcoder: boolean;
  embedding: boolean;
  layer?: number;
}

/**
 * What a Gemma Scope location says about its SAE: `where` is any text holding the repository name and the
 * folder (a hub `repo/path`, or a path into the Hugging Face cache, whose folder names carry the repo id).
 */
export function gemmaScopeSite(where: string): GemmaScopeSite {
  const text = where.replaceAll('\\', '/');
  const repo = /gemma-scope-(2b|9b|27b)-(pt|it)-(res|mlp|att|transcoders)(?![a-z])/.exec(text);
  const layerMatch = /(?:^|\/)layer_(\d+)(?:\/|$)/.exec(text);
  const embedding = /(?:^|\/)embedding(?:\/|$)/.test(text);
  const layer = layerMatch ? Number(layerMatch[1]) : undefined;
  const site: GemmaScopeSite = { transcoder: repo?.[3] === 'transcoders', embedding, layer };
  if (repo) site.model = `gemma-2-${repo[1]}${repo[2] === 'it' ? '-it' : ''}`;
  switch (repo?.[3]) {
    case 'res':
      if (embedding) site.hook_name = 'hook_embed';
      else if (layer !== undefined) site.hook_name = `blocks.${layer}.hook_resid_post`;
      break;
    case 'mlp':
      if (layer !== undefined) site.hook_name = `blocks.${layer}.hook_mlp_out`;
      break;
    case 'att':
      if (layer !== undefined) site.hook_name = `blocks.${layer}.attn.hook_z`;
      break;
    case 'transcoders':
      if (layer !== undefined) {
        site.hook_name = `blocks.${layer}.ln2.hook_normalized`;
        site.hook_name_out = `blocks.${layer}.hook_mlp_out`;
      }
      break;
  }
  return site;
}

async function readTensors(file: string): Promise<Map<string, Tensor>> {
  if (file.endsWith('.npz')) return readNpz(file);
  if (file.endsWith('.safetensors')) return (await readSafetensors(file)).tensors;
  throw new UserError(`${file}: expected a Gemma Scope params.npz or .safetensors file`);
}

export interface GemmaScopeOptions {
  /** Text to infer the model and hook from, when the file's own path does not carry the repository name. */
  location?: string;
  /** Hook to record when neither location nor path tells it. */
  hookName?: string;
}

/** Loads a Gemma Scope `params.npz` / `.safetensors` file. */
export async function loadGemmaScope(file: string, options: GemmaScopeOptions = {}): Promise<LoadedSae> {
  const stored = await readTensors(file);
  // Some conversions use lower-case `w_enc`/`w_dec` (SAELens renames them the same way).
  const byName = new Map<string, Tensor>();
  for (const [name, t] of stored) byName.set(name.startsWith('w_') ? `W_${name.slice(2)}` : name, t);
  const missing = TENSORS.filter((n) => !byName.has(n));
  if (missing.length > 0) {
    throw new UserError(
      `${file}: missing Gemma Scope tensor${missing.length > 1 ? 's' : ''} ${missing.map((n) => `'${n}'`).join(', ')} (file has: ${[...stored.keys()].join(', ') || 'nothing'})`,
    );
  }
  const wEnc = byName.get('W_enc')!;
  const wDec = byName.get('W_dec')!;
  if (wEnc.shape.length !== 2) {
    throw new UserError(`${file}: tensor 'W_enc' must be 2-D [d_in, d_sae], got [${wEnc.shape.join(', ')}]`);
  }
  const [dIn, dSae] = wEnc.shape as [number, number];
  if (wDec.shape.length !== 2 || wDec.shape[0] !== dSae) {
    throw new UserError(
      `${file}: tensor 'W_dec' has shape [${wDec.shape.join(', ')}], expected [${dSae}, d_out] from W_enc [${dIn}, ${dSae}]`,
    );
  }
  const dOut = wDec.shape[1]!;
  const why = `from W_enc [${dIn}, ${dSae}] and W_dec [${dSae}, ${dOut}]`;
  const tensors: Record<string, HostTensor> = {
    W_enc: hostTensor(wEnc, [dIn, dSae], file, 'W_enc'),
    W_dec: hostTensor(wDec, [dSae, dOut], file, 'W_dec'),
    b_enc: hostTensor(byName.get('b_enc')!, [dSae], file, 'b_enc', why),
    b_dec: hostTensor(byName.get('b_dec')!, [dOut], file, 'b_dec', why),
    threshold: hostTensor(byName.get('threshold')!, [dSae], file, 'threshold', why),
  };
  checkFinite(tensors, file);
  const scale = byName.get('scaling_factor');
  const notes: string[] = [];
  if (scale) {
    const s = hostTensor(scale, [dSae], file, 'scaling_factor', why);
    if (!s.data.every((v) => v === 1)) {
      throw new UserError(
        `${file}: tensor 'scaling_factor' is not all ones; fine-tuned Gemma Scope SAEs are not supported`,
      );
    }
    notes.push('dropped a scaling_factor of ones');
  }

  const site = gemmaScopeSite(options.location ?? path.resolve(file));
  const transcoder = site.transcoder || dOut !== dIn;
  if (site.embedding) {
    // Trained on embeddings multiplied by sqrt(d_model) (Gemma's embedding scale): fold it in.
    const r = Math.sqrt(dIn);
    for (let i = 0; i < tensors.W_enc!.data.length; i++) tensors.W_enc!.data[i] = tensors.W_enc!.data[i]! / r;
    for (let i = 0; i < tensors.W_dec!.data.length; i++) tensors.W_dec!.data[i] = tensors.W_dec!.data[i]! * r;
    notes.push(`embedding SAE: W_enc divided and W_dec multiplied by sqrt(d_in) = ${r}`);
  }
  const hookName = options.hookName ?? site.hook_name;
  if (hookName === undefined)
    notes.push('hook not recognised from the location; pass a hook name to record one');
  const metadata: Record<string, unknown> = {};
  if (site.model) metadata.model_name = site.model;
  if (hookName !== undefined) metadata.hook_name = hookName;
  if (transcoder && site.hook_name_out) metadata.hook_name_out = site.hook_name_out;
  if (site.model) {
    // Gemma Scope's training data, as SAELens records it.
    Object.assign(metadata, {
      prepend_bos: true,
      dataset_path: 'monology/pile-uncopyrighted',
      context_size: 1024,
    });
  }
  const architecture = transcoder ? 'jumprelu_transcoder' : 'jumprelu';
  const config: SaeFolderConfig = {
    architecture,
    d_in: dIn,
    d_sae: dSae,
    ...(transcoder ? { d_out: dOut } : {}),
    dtype: 'float32',
    device: 'cpu',
    apply_b_dec_to_input: false,
    normalize_activations: 'none',
    reshape_activations: hookName?.endsWith('hook_z') ? 'hook_z' : 'none',
    metadata,
  };
  return {
    config,
    kind: parseSavedArchitecture(architecture)!,
    tensors,
    sparsity: null,
    format: 'gemma-scope',
    source: file,
    requiredProcessing: requiredProcessingOf(config),
    notes,
  };
}
