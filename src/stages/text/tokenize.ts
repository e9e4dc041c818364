import { map } from 'rxjs';
import { decode, encode } from 'gpt-tokenizer/encoding/r50k_base';
import { defineStage, type Stage } from '../../pipeline/stage.js';
import { isTokenDocument, type Document, type TokenDocument } from './types.js';

/** `<|endoftext|>`: GPT-2's only special token, used as BOS, EOS and document separator. */
export const GPT2_BOS_ID = 50256;
export const GPT2_EOS_ID = GPT2_BOS_ID;
export const GPT2_VOCAB_SIZE = 50257;
export const GPT2_END_OF_TEXT = '<|endoftext|>';

/**
 * GPT-2 byte-level BPE (the r50k_base ranks, which are OpenAI's `gpt2` ids).
 *
 * The literal text `<|endoftext|>` inside a document becomes the special id 50256. That is what
 * Hugging Face's GPT2TokenizerFast does (it is a registered added token, split out of the text before
 * BPE), hence what TransformerLens's `to_tokens` and therefore SAELens feed the model; following it
 * keeps our windows identical to SAELens's on the same text. tiktoken-style libraries instead refuse the
 * text or spell it out as `<`, `|`, `endo`, ... .
 *
 * We split on the literal ourselves instead of passing `allowedSpecial` to gpt-tokenizer: in
 * gpt-tokenizer 4.0.0 the special-token search uses a sticky regex, so a special token is only
 * recognised at the very start of the text (or right after another one); `a<|endoftext|>b` would be
 * encoded as plain text. Each piece between separators is encoded independently, as HF does.
 */
export function encodeGpt2(text: string): Int32Array {
  if (!text.includes(GPT2_END_OF_TEXT)) return Int32Array.from(encode(text));
  const ids: number[] = [];
  const pieces = text.split(GPT2_END_OF_TEXT);
  pieces.forEach((piece, i) => {
    if (i > 0) ids.push(GPT2_BOS_ID);
    if (piece.length > 0) for (const id of encode(piece)) ids.push(id);
  });
  return Int32Array.from(ids);
}

/** Token ids back to text; 50256 becomes `<|endoftext|>`. Throws a RangeError on an id outside the vocabulary. */
export function decodeGpt2(ids: ArrayLike<number> | Iterable<number>): string {
  const list = Array.from(ids as ArrayLike<number>);
  for (const id of list) {
    if (!Number.isInteger(id) || id < 0 || id >= GPT2_VOCAB_SIZE) {
      throw new RangeError(`token id ${id} is outside the GPT-2 vocabulary [0, ${GPT2_VOCAB_SIZE})`);
    }
  }
  return decode(list);
}

/**
 * Stage: text documents -> token documents (GPT-2 BPE, no BOS added: packing decides where BOS goes).
 * Documents that are already tokenized pass through unchanged.
 */
export function tokenize(): Stage<Document, TokenDocument> {
  return defineStage(
    'tokenize',
    map((doc: Document): TokenDocument => {
      if (isTokenDocument(doc)) return doc;
      const { text, ...rest } = doc;
      return { ...rest, tokens: encodeGpt2(text) };
    }),
  );
}
