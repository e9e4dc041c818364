/**
 * The tokenizer of a model folder: GPT-2's own BPE for GPT-2 models, the folder's tokenizer.json otherwise,
 * with BOS/EOS from its tokenizer files and config.json and TransformerLens's prepend_bos for the family.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Tokenizer as HfLibraryTokenizer } from '@huggingface/tokenizers';
import { UserError } from '../pipeline/errors.js';
import { GPT2_VOCAB_SIZE, gpt2Tokenizer } from './gpt2.js';
import { encodeWithoutSpecialTokens, HfTokenizer, vocabularySize } from './hf-tokenizer.js';
import { piecesKeepIds } from './pieces-keep-ids.js';
import { defaultPrependBos } from './prepend-bos.js';
import { resolveSpecialTokens, type JsonFile } from './special-tokens.js';
import type { Tokenizer } from './tokenizer.js';

export const TOKENIZER_FILE = 'tokenizer.json';
export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';
export const SPECIAL_TOKENS_MAP_FILE = 'special_tokens_map.json';
/** What a folder needs besides config.json for `loadTokenizer`, when its model is not GPT-2's. */
export const TOKENIZER_FILES = [TOKENIZER_FILE, TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE] as const;

async function readBytes(file: string): Promise<Buffer | null> {
  try {
    return await readFile(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new UserError(`cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
}

function parseObject(file: string, bytes: Buffer): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new UserError(`${file}: invalid JSON: ${(e as Error).message}`, { cause: e });
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new UserError(`${file}: expected a JSON object`);
  }
  return json as Record<string, unknown>;
}

async function readJsonFile(dir: string, name: string): Promise<JsonFile> {
  const file = path.join(dir, name);
  const bytes = await readBytes(file);
  return { path: file, json: bytes === null ? null : parseObject(file, bytes) };
}

export interface LoadTokenizerOptions {
  /** Hugging Face `model_type` to take the family defaults from, instead of config.json's. */
  modelType?: string;
}

/**
 * GPT-2 models keep gpt-tokenizer's r50k ids (bit-exact with GPT2TokenizerFast, and what every cache and
 * test so far was made with) unless the folder brings a tokenizer.json for a vocabulary that is not GPT-2's.
 */
function usesGpt2Bpe(modelType: string, vocabSize: unknown, hasTokenizerJson: boolean): boolean {
  if (modelType !== 'gpt2') return false;
  return !hasTokenizerJson || vocabSize === undefined || vocabSize === GPT2_VOCAB_SIZE;
}

export async function loadTokenizer(
  modelDir: string,
  options: LoadTokenizerOptions = {},
): Promise<Tokenizer> {
  const config = await readJsonFile(modelDir, 'config.json');
  if (config.json === null) throw new UserError(`model directory ${modelDir} lacks config.json`);
  const modelType = options.modelType ?? config.json.model_type;
  if (typeof modelType !== 'string') {
    throw new UserError(
      `${config.path}: model_type must be a string naming the model family, got ${JSON.stringify(modelType)}`,
    );
  }
  const tokenizerFile = path.join(modelDir, TOKENIZER_FILE);
  const bytes = await readBytes(tokenizerFile);
  if (usesGpt2Bpe(modelType, config.json.vocab_size, bytes !== null)) return gpt2Tokenizer;
  if (bytes === null) {
    throw new UserError(
      `model directory ${modelDir} lacks ${TOKENIZER_FILE}: a ${modelType} model is tokenized with its own tokenizer.json`,
    );
  }
  const tokenizerJson = parseObject(tokenizerFile, bytes);
  const tokenizerConfig = await readJsonFile(modelDir, TOKENIZER_CONFIG_FILE);
  const specialTokensMap = await readJsonFile(modelDir, SPECIAL_TOKENS_MAP_FILE);
  let library: HfLibraryTokenizer;
  try {
    library = new HfLibraryTokenizer(tokenizerJson, tokenizerConfig.json ?? {});
  } catch (e) {
    throw new UserError(`${tokenizerFile}: cannot build the tokenizer: ${(e as Error).message}`, {
      cause: e,
    });
  }
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const special = resolveSpecialTokens(
    { specialTokensMap, tokenizerConfig, modelConfig: config },
    (t) => library.token_to_id(t),
    vocabularySize(library),
  );
  return new HfTokenizer(library, {
    identity: `${TOKENIZER_FILE} sha256:${sha256}`,
    description: `${tokenizerFile} (sha256 ${sha256.slice(0, 12)})`,
    bosId: special.bos,
    eosId: special.eos,
    padId: special.pad,
    specialIds: special.all,
    prependBos: defaultPrependBos(modelType),
    piecesKeepIds: piecesKeepIds(tokenizerJson, (t) => encodeWithoutSpecialTokens(library, t)),
  });
}
