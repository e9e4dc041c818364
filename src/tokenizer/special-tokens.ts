/**
 * A model folder's special token ids, from the files transformers reads them from: special_tokens_map.json,
 * then tokenizer_config.json (tokens by text), then config.json (`bos_token_id`, ... by id).
 */
import { UserError } from '../pipeline/errors.js';

/** A parsed JSON file, or null when the folder does not have it. */
export interface JsonFile {
  readonly path: string;
  readonly json: Record<string, unknown> | null;
}

export interface SpecialTokenFiles {
  readonly specialTokensMap: JsonFile;
  readonly tokenizerConfig: JsonFile;
  readonly modelConfig: JsonFile;
}

export interface ResolvedSpecialTokens {
  bos: number | null;
  eos: number | null;
  pad: number | null;
  unk: number | null;
  /** Every special id SAELens's `get_special_token_ids` would list (see `specialIdSet`). */
  all: number[];
}

type TokenToId = (token: string) => number | undefined;

/** `"<s>"`, or an AddedToken object as tokenizer_config.json writes it (`{"content": "<s>", ...}`). */
function tokenText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { content?: unknown }).content === 'string'
  ) {
    return (value as { content: string }).content;
  }
  return undefined;
}

function tokenId(file: JsonFile, field: string, value: unknown, toId: TokenToId): number | null {
  if (value === null) return null;
  const text = tokenText(value);
  if (text === undefined) {
    throw new UserError(
      `${file.path}: ${field} must be a token string, an object with "content", or null; got ${JSON.stringify(value)}`,
    );
  }
  const id = toId(text);
  if (id === undefined) {
    throw new UserError(`${file.path}: ${field} ${JSON.stringify(text)} is not a token of the tokenizer`);
  }
  return id;
}

function configId(file: JsonFile, field: string, value: unknown, vocabSize: number): number | null {
  if (value === null) return null;
  // Llama 3.1 and others list several end-of-sequence ids; the first is the tokenizer's EOS.
  const first = Array.isArray(value) ? (value[0] as unknown) : value;
  if (typeof first !== 'number' || !Number.isInteger(first) || first < 0 || first >= vocabSize) {
    throw new UserError(
      `${file.path}: ${field} must be a token id in [0, ${vocabSize}) (or a list of them) or null; got ${JSON.stringify(value)}`,
    );
  }
  return first;
}

type SpecialName = 'bos' | 'eos' | 'pad' | 'unk' | 'sep' | 'cls' | 'mask';

function resolveOne(
  name: SpecialName,
  files: SpecialTokenFiles,
  toId: TokenToId,
  vocabSize: number,
): number | null {
  const key = `${name}_token`;
  // transformers lets special_tokens_map.json override tokenizer_config.json.
  for (const file of [files.specialTokensMap, files.tokenizerConfig]) {
    if (file.json && key in file.json) return tokenId(file, key, file.json[key], toId);
  }
  const idKey = `${name}_token_id`;
  const config = files.modelConfig;
  if (config.json && idKey in config.json) return configId(config, idKey, config.json[idKey], vocabSize);
  return null;
}

function additionalTokens(file: JsonFile, toId: TokenToId): number[] {
  const list = file.json?.additional_special_tokens;
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) {
    throw new UserError(
      `${file.path}: additional_special_tokens must be a list, got ${JSON.stringify(list)}`,
    );
  }
  return list.flatMap((t, i) => {
    const id = tokenId(file, `additional_special_tokens[${i}]`, t, toId);
    return id === null ? [] : [id];
  });
}

/**
 * BOS/EOS/pad/unk ids, and the set SAELens excludes with `exclude_special_tokens`: `get_special_token_ids`
 * takes every `*_token_id` of TransformerLens's tokenizer (whose missing BOS and pad are EOS) plus the
 * special tokens map, additional tokens included.
 */
export function resolveSpecialTokens(
  files: SpecialTokenFiles,
  toId: TokenToId,
  vocabSize: number,
): ResolvedSpecialTokens {
  const bos = resolveOne('bos', files, toId, vocabSize);
  const eos = resolveOne('eos', files, toId, vocabSize);
  const pad = resolveOne('pad', files, toId, vocabSize);
  const unk = resolveOne('unk', files, toId, vocabSize);
  const others = (['sep', 'cls', 'mask'] as const).map((n) => resolveOne(n, files, toId, vocabSize));
  const all = new Set<number>();
  for (const id of [bos ?? eos, eos, pad ?? eos, unk, ...others]) if (id !== null) all.add(id);
  for (const file of [files.specialTokensMap, files.tokenizerConfig]) {
    for (const id of additionalTokens(file, toId)) all.add(id);
  }
  return { bos, eos, pad, unk, all: [...all].sort((a, b) => a - b) };
}
