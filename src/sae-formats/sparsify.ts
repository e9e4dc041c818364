/**
 * EleutherAI sparsify: one folder per hookpoint (`layers.6/`, `h.3.mlp/`) holding `cfg.json` (SparseCoderConfig
 * plus `d_in`) and `sae.safetensors` with `encoder.weight` [num_latents, d_in], `encoder.bias`, `W_dec`
 * [num_latents, d_in], `b_dec` [d_in] and, with `skip_connection`, `W_skip` [d_in, d_in] (applied as
 * x W_skipᵀ, SAELens's layout). Encoding is relu(x W_encᵀ + b) then top-k, after subtracting b_dec unless
 * the coder is a transcoder (`transcode`), so it loads as a SAELens topk SAE without decoder-norm rescaling.
 * The run's `config.json` one level up, when present, gives the model, dataset and context length.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { readSafetensors } from '../io/safetensors.js';
import { UserError } from '../pipeline/errors.js';
import type { HostTensor } from '../sae/fold.js';
import type { SaeFolderConfig } from '../sae/saelens-folder.js';
import { parseSavedArchitecture, savedArchitectureName } from '../sae/saved-architecture.js';
import { checkFinite, hostTensor, requiredProcessingOf, transposed } from './types.js';
import type { LoadedSae } from './types.js';

export const SPARSIFY_CFG_FILENAME = 'cfg.json';
export const SPARSIFY_WEIGHTS_FILENAME = 'sae.safetensors';

export interface HookpointHooks {
  hook_name?: string;
  hook_name_out?: string;
}

/**
 * TransformerLens hooks of a sparsify hookpoint (a Hugging Face module name). An SAE reads the module's
 * output; a transcoder maps the module's input to its output.
 */
export function hooksForHookpoint(hookpoint: string, transcode: boolean): HookpointHooks {
  const name = hookpoint.replace(/^(base_model\.model\.|model\.|transformer\.|gpt_neox\.)/, '');
  let m: RegExpExecArray | null;
  const b = (layer: string, site: string) => `blocks.${layer}.${site}`;
  if ((m = /^(?:h|layers)\.(\d+)$/.exec(name))) {
    return transcode
      ? { hook_name: b(m[1]!, 'hook_resid_pre'), hook_name_out: b(m[1]!, 'hook_resid_post') }
      : { hook_name: b(m[1]!, 'hook_resid_post') };
  }
  if ((m = /^(?:h|layers)\.(\d+)\.mlp$/.exec(name))) {
    return transcode
      ? { hook_name: b(m[1]!, 'ln2.hook_normalized'), hook_name_out: b(m[1]!, 'hook_mlp_out') }
      : { hook_name: b(m[1]!, 'hook_mlp_out') };
  }
  if ((m = /^(?:h|layers)\.(\d+)\.(?:attn|self_attn|attention)$/.exec(name))) {
    return transcode
      ? { hook_name: b(m[1]!, 'ln1.hook_normalized'), hook_name_out: b(m[1]!, 'hook_attn_out') }
      : { hook_name: b(m[1]!, 'hook_attn_out') };
  }
  if ((m = /^h\.(\d+)\.mlp\.act$/.exec(name))) {
    return transcode
      ? { hook_name: b(m[1]!, 'mlp.hook_pre'), hook_name_out: b(m[1]!, 'mlp.hook_post') }
      : { hook_name: b(m[1]!, 'mlp.hook_post') };
  }
  if ((m = /^h\.(\d+)\.ln_([12])$/.exec(name)) && !transcode) {
    return { hook_name: b(m[1]!, `ln${m[2]}.hook_normalized`) };
  }
  if (/^(?:wte|embed_tokens|embed_in)$/.test(name) && !transcode) return { hook_name: 'hook_embed' };
  return {};
}

async function readJsonObject(file: string, required: boolean): Promise<Record<string, unknown> | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (!required && (code === 'ENOENT' || code === 'ENOTDIR')) return undefined;
    if (code === 'ENOENT' || code === 'ENOTDIR')
      throw new UserError(`not a sparsify folder: ${file} is missing`);
    throw e;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${file}: invalid JSON (${(e as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new UserError(`${file}: expected a JSON object`);
  }
  return raw as Record<string, unknown>;
}

interface SparsifyConfig {
  dIn: number;
  numLatents: number;
  k: number;
  transcode: boolean;
  skip: boolean;
}

function parseConfig(c: Record<string, unknown>, file: string): SparsifyConfig {
  const int = (key: string, min: number, fallback?: number): number => {
    const v = c[key] ?? fallback;
    if (!Number.isSafeInteger(v) || (v as number) < min) {
      throw new UserError(`${file}: '${key}' must be an integer >= ${min}, got ${JSON.stringify(c[key])}`);
    }
    return v as number;
  };
  const bool = (key: string): boolean => {
    const v = c[key] ?? false;
    if (typeof v !== 'boolean')
      throw new UserError(`${file}: '${key}' must be true or false, got ${JSON.stringify(v)}`);
    return v;
  };
  const activation = c.activation ?? 'topk';
  if (activation !== 'topk') {
    throw new UserError(`${file}: 'activation' ${JSON.stringify(activation)} is not supported (only topk)`);
  }
  if (c.signed === true) throw new UserError(`${file}: 'signed' top-k coders are not supported`);
  const dIn = int('d_in', 1);
  const numLatents = int('num_latents', 0, 0);
  const numLatentsResolved = numLatents > 0 ? numLatents : dIn * int('expansion_factor', 1, 32);
  const k = int('k', 1, 32);
  if (k > numLatentsResolved) {
    throw new UserError(`${file}: 'k' (${k}) exceeds the number of latents (${numLatentsResolved})`);
  }
  return {
    dIn,
    numLatents: numLatentsResolved,
    k,
    transcode: bool('transcode'),
    skip: bool('skip_connection'),
  };
}

export interface SparsifyOptions {
  /** Hook to record when the folder name is not a hookpoint we recognise. */
  hookName?: string;
}

/** Loads one sparsify hookpoint folder. */
export async function loadSparsify(dir: string, options: SparsifyOptions = {}): Promise<LoadedSae> {
  const cfgPath = path.join(dir, SPARSIFY_CFG_FILENAME);
  const cfg = parseConfig((await readJsonObject(cfgPath, true))!, cfgPath);
  const runPath = path.join(path.dirname(path.resolve(dir)), 'config.json');
  const run = await readJsonObject(runPath, false).catch(() => undefined);

  const weightsPath = path.join(dir, SPARSIFY_WEIGHTS_FILENAME);
  const names = ['encoder.weight', 'encoder.bias', 'W_dec', 'b_dec', ...(cfg.skip ? ['W_skip'] : [])];
  const { tensors: stored } = await readSafetensors(weightsPath, { names });
  const n = cfg.numLatents;
  const d = cfg.dIn;
  const fromCfg = `from ${SPARSIFY_CFG_FILENAME} (d_in ${d}, ${n} latents)`;
  const tensors: Record<string, HostTensor> = {
    W_enc: transposed(
      hostTensor(stored.get('encoder.weight')!, [n, d], weightsPath, 'encoder.weight', fromCfg),
    ),
    b_enc: hostTensor(stored.get('encoder.bias')!, [n], weightsPath, 'encoder.bias', fromCfg),
    W_dec: hostTensor(stored.get('W_dec')!, [n, d], weightsPath, 'W_dec', fromCfg),
    b_dec: hostTensor(stored.get('b_dec')!, [d], weightsPath, 'b_dec', fromCfg),
  };
  if (cfg.skip) tensors.W_skip = hostTensor(stored.get('W_skip')!, [d, d], weightsPath, 'W_skip', fromCfg);
  checkFinite(tensors, weightsPath);

  const hookpoint = path.basename(path.resolve(dir));
  const hooks = hooksForHookpoint(hookpoint, cfg.transcode);
  const notes = ['encoder.weight [num_latents, d_in] transposed to W_enc [d_in, d_sae]'];
  const hookName = options.hookName ?? hooks.hook_name;
  if (hookName === undefined)
    notes.push(`hookpoint '${hookpoint}' not recognised; pass a hook name to record one`);
  const metadata: Record<string, unknown> = { sparsify_hookpoint: hookpoint };
  if (typeof run?.model === 'string') metadata.model_name = run.model;
  if (hookName !== undefined) metadata.hook_name = hookName;
  if (hooks.hook_name_out !== undefined) metadata.hook_name_out = hooks.hook_name_out;
  if (typeof run?.dataset === 'string') metadata.dataset_path = run.dataset;
  if (Number.isSafeInteger(run?.ctx_len)) metadata.context_size = run!.ctx_len;

  // A skip connection only exists in SAELens's transcoder forms, whose d_out here equals d_in.
  const transcoderForm = cfg.transcode || cfg.skip;
  const architecture = savedArchitectureName({ encoder: 'topk', transcoder: transcoderForm, skip: cfg.skip });
  const config: SaeFolderConfig = {
    architecture,
    d_in: d,
    d_sae: n,
    ...(transcoderForm ? { d_out: d } : {}),
    dtype: 'float32',
    device: 'cpu',
    apply_b_dec_to_input: !cfg.transcode,
    normalize_activations: 'none',
    reshape_activations: 'none',
    metadata,
    k: cfg.k,
    rescale_acts_by_decoder_norm: false,
  };
  const dtype = stored.get('encoder.weight')!.dtype;
  if (dtype !== 'F32') notes.push(`weights widened from ${dtype} to float32`);
  return {
    config,
    kind: parseSavedArchitecture(architecture)!,
    tensors,
    sparsity: null,
    format: 'sparsify',
    source: dir,
    requiredProcessing: requiredProcessingOf(config),
    notes,
  };
}
