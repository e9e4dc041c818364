/**
 * A Hugging Face `tokenizer.json` run by @huggingface/tokenizers, the pure-JavaScript implementation that
 * transformers.js uses (docs/tokenizers.md says why this one).
 */
import type { Tokenizer as HfLibraryTokenizer } from '@huggingface/tokenizers';
import type { Tokenizer } from './tokenizer.js';

export interface HfTokenizerSpec {
  readonly identity: string;
  readonly description: string;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly padId: number | null;
  readonly specialIds: readonly number[];
  readonly prependBos: boolean;
  readonly piecesKeepIds: boolean;
}

/** One more than the largest id of the vocabulary, added tokens included. */
export function vocabularySize(library: HfLibraryTokenizer): number {
  let max = -1;
  for (const id of library.get_vocab(true).values()) if (id > max) max = id;
  return max + 1;
}

/** Ids of the text alone: special tokens written literally in it are recognised, none are added. */
export function encodeWithoutSpecialTokens(library: HfLibraryTokenizer, text: string): Int32Array {
  return Int32Array.from(library.encode(text, { add_special_tokens: false }).ids);
}

export class HfTokenizer implements Tokenizer {
  readonly identity: string;
  readonly description: string;
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly padId: number | null;
  readonly specialIds: readonly number[];
  readonly prependBos: boolean;
  readonly piecesKeepIds: boolean;
  private readonly tokenizer: HfLibraryTokenizer;

  constructor(library: HfLibraryTokenizer, spec: HfTokenizerSpec) {
    this.tokenizer = library;
    this.identity = spec.identity;
    this.description = spec.description;
    this.bosId = spec.bosId;
    this.eosId = spec.eosId;
    this.padId = spec.padId;
    this.specialIds = spec.specialIds;
    this.prependBos = spec.prependBos;
    this.piecesKeepIds = spec.piecesKeepIds;
    this.vocabSize = vocabularySize(library);
  }

  encode(text: string): Int32Array {
    return encodeWithoutSpecialTokens(this.tokenizer, text);
  }

  decode(ids: ArrayLike<number>): string {
    const list = Array.from(ids);
    for (const id of list) {
      if (
        !Number.isInteger(id) ||
        id < 0 ||
        id >= this.vocabSize ||
        this.tokenizer.id_to_token(id) === undefined
      ) {
        throw new RangeError(`token id ${id} is not in the vocabulary of ${this.description}`);
      }
    }
    return this.tokenizer.decode(list);
  }

  decodeToken(id: number): string {
    if (!Number.isInteger(id) || id < 0 || this.tokenizer.id_to_token(id) === undefined) return `<${id}>`;
    return this.tokenizer.decode([id]);
  }
}
