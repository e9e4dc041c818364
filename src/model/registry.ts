/**
 * The model families saeflow can load, keyed by Hugging Face's `model_type`, and loading a model from a
 * folder through them. Adding a family is one file in families/ and one line in FAMILIES.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { WeightFile } from '../io/weight-file.js';
import { UserError } from '../pipeline/errors.js';
import { Checkpoint } from './checkpoint.js';
import type { ModelConfig } from './config.js';
import { Model } from './family.js';
import type { ModelFamily } from './family.js';
import { gemma2Family, gemmaFamily } from './families/gemma.js';
import { gpt2Family } from './families/gpt2.js';
import { gptNeoxFamily } from './families/gpt-neox.js';
import { llamaFamily, mistralFamily, qwen2Family } from './families/llama.js';
import { parseWeightProcessing } from './process-weights.js';
import type { WeightProcessing } from './process-weights.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- each family has its own weights type
const FAMILIES: readonly ModelFamily<any>[] = [
  gpt2Family,
  llamaFamily,
  mistralFamily,
  qwen2Family,
  gemmaFamily,
  gemma2Family,
  gptNeoxFamily,
];

/** The family registered under `name` (`ModelConfig.family`). */
export function familyByName(name: string): ModelFamily<unknown> {
  const f = FAMILIES.find((x) => x.name === name);
  if (f === undefined) throw new Error(`no model family named ${name}`);
  return f as ModelFamily<unknown>;
}

function supported(): string {
  return FAMILIES.map((f) => `${f.modelTypes.join('/')} (${f.architectures.join(', ')})`).join('; ');
}

/** The family of a parsed config.json, by `model_type` and `architectures`; UserError naming `file` if none. */
export function familyOf(json: Record<string, unknown>, file: string): ModelFamily<unknown> {
  const modelType = json.model_type;
  const architectures = Array.isArray(json.architectures) ? (json.architectures as unknown[]) : undefined;
  const family = FAMILIES.find(
    (f) =>
      typeof modelType === 'string' &&
      f.modelTypes.includes(modelType) &&
      (architectures === undefined || architectures.every((a) => f.architectures.includes(String(a)))),
  );
  if (family === undefined) {
    throw new UserError(
      `${file}: unknown architecture (model_type ${JSON.stringify(modelType)}, architectures ` +
        `${JSON.stringify(json.architectures)}); supported: ${supported()}`,
    );
  }
  return family as ModelFamily<unknown>;
}

/** Validates a parsed config.json with its family's mapping; `file` names it in error messages. */
export function parseModelConfig(json: unknown, file: string): ModelConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new UserError(`${file}: expected a JSON object`);
  }
  const j = json as Record<string, unknown>;
  return familyOf(j, file).parseConfig(j, file);
}

/** Reads `<dir>/config.json`. */
export async function readModelConfig(dir: string): Promise<ModelConfig> {
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
  return parseModelConfig(json, file);
}

export interface LoadModelOptions {
  /** Default `none`: Hugging Face's numbers exactly. */
  processing?: WeightProcessing;
  /** An already read config (skips reading config.json again). */
  config?: ModelConfig;
  /**
   * Where the weights go (docs/large-models.md): `memory`, a temporary weight `file` that onnxruntime maps
   * (families that do not support it keep memory), or `auto` (default): a file when the checkpoint takes
   * more than `weightFileAbove` bytes as float32.
   */
  weightStorage?: 'auto' | 'memory' | 'file';
  /** Default WEIGHT_FILE_ABOVE. */
  weightFileAbove?: number;
}

/**
 * 1 GiB of float32 weights: above it, a copy per onnxruntime session (what in-memory weights cost) starts
 * to matter on a 24 GB machine, and at 2 GiB an ONNX protobuf cannot hold them at all.
 */
export const WEIGHT_FILE_ABOVE = 2 ** 30;

/** Loads a model's config and weights from a Hugging Face folder, with weight processing applied. */
export async function loadModel(dir: string, options: LoadModelOptions = {}): Promise<Model> {
  const processing = parseWeightProcessing(options.processing ?? 'none');
  const config = options.config ?? (await readModelConfig(dir));
  const family = familyByName(config.family);
  if (!family.processings.includes(processing)) {
    throw new UserError(
      `weight processing '${processing}' is not offered for ${family.name} models (offered: ${family.processings.join(', ')})`,
    );
  }
  const storage = options.weightStorage ?? 'auto';
  const toFile =
    storage === 'file' ||
    (storage === 'auto' &&
      (await Checkpoint.open(dir)).float32Bytes > (options.weightFileAbove ?? WEIGHT_FILE_ABOVE));
  if (!toFile) return Model.bind(family, config, await family.loadWeights(dir, config), processing);
  const file = await WeightFile.create();
  try {
    const weights = await family.loadWeights(dir, config, file);
    await file.close();
    // A family that keeps its weights in memory left the file empty.
    if (file.bytes === 0) file.remove();
    return Model.bind(family, config, weights, processing);
  } catch (e) {
    await file.close().catch(() => undefined);
    file.remove();
    throw e;
  }
}
