export type { SpecialIds, Tokenizer } from './tokenizer.js';
export { transformerLensSpecialIds } from './tokenizer.js';
export {
  GPT2_BOS_ID,
  GPT2_END_OF_TEXT,
  GPT2_EOS_ID,
  GPT2_TOKENIZER_IDENTITY,
  GPT2_VOCAB_SIZE,
  decodeGpt2,
  encodeGpt2,
  gpt2Tokenizer,
} from './gpt2.js';
export { HfTokenizer } from './hf-tokenizer.js';
export { loadTokenizer, TOKENIZER_FILE, TOKENIZER_FILES } from './load-tokenizer.js';
export type { LoadTokenizerOptions } from './load-tokenizer.js';
export { defaultPrependBos } from './prepend-bos.js';
export { resolveSpecialTokens } from './special-tokens.js';
