import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../pipeline/errors.js';

export const ACTIVATION_FUNCTIONS = ['gelu_new', 'gelu', 'relu'] as const;
export type ActivationFunction = (typeof ACTIVATION_FUNCTIONS)[number];

/** The shape-defining part of a Hugging Face GPT-2 `config.json`, with TransformerLens-style derived sizes. */
export interface Gpt2Config {
  nLayer: number;
  nHead: number;
  /** d_model. */
  nEmbd: number;
  /** n_ctx: the longest sequence the position embedding covers. */
  nPositions: number;
  vocabSize: number;
  layerNormEpsilon: number;
  activationFunction: ActivationFunction;
  /** d_head = n_embd / n_head. */
  dHead: number;
  /** d_mlp = n_inner, or 4 * n_embd when n_inner is null. */
  dMlp: number;
}

/**
 * HF spells some activations differently from what they compute: `gelu_pytorch_tanh` is the same tanh
 * approximation as `gelu_new`.
 */
const ACTIVATION_ALIASES: Record<string, ActivationFunction> = {
  gelu_new: 'gelu_new',
  gelu_pytorch_tanh: 'gelu_new',
  gelu: 'gelu',
  relu: 'relu',
};

const GPT2_ARCHITECTURES = new Set(['GPT2LMHeadModel', 'GPT2Model']);

function positiveInt(json: Record<string, unknown>, key: string, file: string): number {
  const v = json[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new UserError(`${file}: field "${key}" must be a positive integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** Validates a parsed GPT-2 `config.json`; `file` names it in error messages. */
export function parseGpt2Config(json: unknown, file: string): Gpt2Config {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new UserError(`${file}: expected a JSON object`);
  }
  const j = json as Record<string, unknown>;
  const modelType = j.model_type;
  const architectures = Array.isArray(j.architectures) ? (j.architectures as unknown[]) : undefined;
  const archOk = architectures === undefined || architectures.every((a) => GPT2_ARCHITECTURES.has(String(a)));
  if (modelType !== 'gpt2' || !archOk) {
    throw new UserError(
      `${file}: unknown architecture (model_type ${JSON.stringify(modelType)}, architectures ` +
        `${JSON.stringify(j.architectures)}); only GPT-2 (model_type "gpt2", GPT2LMHeadModel) is supported`,
    );
  }

  const nLayer = positiveInt(j, 'n_layer', file);
  const nHead = positiveInt(j, 'n_head', file);
  const nEmbd = positiveInt(j, 'n_embd', file);
  const nPositions = positiveInt(j, 'n_positions', file);
  const vocabSize = positiveInt(j, 'vocab_size', file);
  if (nEmbd % nHead !== 0) {
    throw new UserError(`${file}: n_embd (${nEmbd}) is not a multiple of n_head (${nHead})`);
  }
  const dMlp = j.n_inner === undefined || j.n_inner === null ? 4 * nEmbd : positiveInt(j, 'n_inner', file);

  const eps = j.layer_norm_epsilon ?? 1e-5;
  if (typeof eps !== 'number' || !(eps > 0)) {
    throw new UserError(
      `${file}: field "layer_norm_epsilon" must be a positive number, got ${JSON.stringify(eps)}`,
    );
  }

  const act = j.activation_function ?? 'gelu_new';
  const activationFunction = typeof act === 'string' ? ACTIVATION_ALIASES[act] : undefined;
  if (activationFunction === undefined) {
    throw new UserError(
      `${file}: field "activation_function" ${JSON.stringify(act)} is not supported ` +
        `(supported: ${Object.keys(ACTIVATION_ALIASES).join(', ')})`,
    );
  }

  // Variants of the attention that this forward does not implement; refuse rather than compute wrongly.
  const unsupported: [string, unknown][] = [
    ['scale_attn_weights', true],
    ['scale_attn_by_inverse_layer_idx', false],
    ['add_cross_attention', false],
  ];
  for (const [key, wanted] of unsupported) {
    if (j[key] !== undefined && j[key] !== wanted) {
      throw new UserError(
        `${file}: field "${key}" = ${JSON.stringify(j[key])} is not supported (only ${wanted})`,
      );
    }
  }

  return {
    nLayer,
    nHead,
    nEmbd,
    nPositions,
    vocabSize,
    layerNormEpsilon: eps,
    activationFunction,
    dHead: nEmbd / nHead,
    dMlp,
  };
}

/** Reads `<dir>/config.json`. */
export async function readGpt2Config(dir: string): Promise<Gpt2Config> {
  const file = path.join(dir, 'config.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new UserError(`cannot read model config ${file}: ${(e as Error).message}`, { cause: e });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${file}: invalid JSON: ${(e as Error).message}`, { cause: e });
  }
  return parseGpt2Config(json, file);
}
