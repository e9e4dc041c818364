import { decode, encode } from 'gpt-tokenizer/encoding/r50k_base';
import { defaultPrependBos } from './prepend-bos.js';
import type { Tokenizer } from './tokenizer.js';

/** `<|endoftext|>`: GPT-2's only special token, used as BOS, EOS and document separator. */
export const GPT2_BOS_ID = 50256;
export const GPT2_EOS_ID = GPT2_BOS_ID;
export const GPT2_VOCAB_SIZE = 50257;
export const GPT2_END_OF_TEXT = '<|endoftext|>';
/** What cache manifests have always recorded for GPT-2's BPE; kept so that older caches still match. */
export const GPT2_TOKENIZER_IDENTITY = 'gpt2';

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
 * GPT-2's tokenizer through gpt-tokenizer, whatever files a GPT-2 folder holds: it is bit-exact with
 * GPT2TokenizerFast and about 7x faster than reading tokenizer.json (docs/tokenizers.md).
 */
export const gpt2Tokenizer: Tokenizer = Object.freeze({
  identity: GPT2_TOKENIZER_IDENTITY,
  description: 'GPT-2 BPE (gpt-tokenizer r50k_base)',
  vocabSize: GPT2_VOCAB_SIZE,
  bosId: GPT2_BOS_ID,
  eosId: GPT2_EOS_ID,
  // GPT-2 has no pad token; TransformerLens pads with EOS, which `transformerLensSpecialIds` supplies.
  padId: null,
  specialIds: [GPT2_BOS_ID],
  prependBos: defaultPrependBos('gpt2'),
  // text-pieces.ts proves its boundary rule against r50k_base's pre-tokenizer regex.
  piecesKeepIds: true,
  encode: encodeGpt2,
  decode: decodeGpt2,
  decodeToken: (id: number) =>
    Number.isInteger(id) && id >= 0 && id < GPT2_VOCAB_SIZE ? decodeGpt2([id]) : `<${id}>`,
});
