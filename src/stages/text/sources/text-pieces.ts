/**
 * Long documents are read and tokenized in pieces, so memory does not grow with a document's size and a
 * stop request is honoured between pieces. A piece ends only where the tokenizer gives the same ids as on
 * the whole text.
 *
 * The boundary rule: cut just before a space (U+0020) that has a letter or digit on both sides (`a b`,
 * `a 1`, `1 b`). The pre-tokenizer regexes of GPT-2 (`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+|
 * ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`, r50k_base's), Llama 3 and Qwen2 (`(?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|
 * \p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`) have no look-behind, and no alternative
 * matches across such a place except as its first character: the chunk before it ends at the letter or digit
 * either way, and the chunk after it starts with that space either way (` ?\p{L}+`, ` ?\p{N}+`, or `\s+`
 * before a digit in Llama 3's). Byte-level BPE merges never cross chunks, so the ids of the pieces,
 * concatenated, are the ids of the whole text. (A wider rule, any whitespace between non-whitespace, holds
 * for GPT-2 but not for Llama 3's `[^\s\p{L}\p{N}]+[\r\n]*`, which keeps `.\n` together.) Other tokenizers
 * are checked when loaded (src/tokenizer/pieces-keep-ids.ts). A text with no such place in `HARD_LIMIT`
 * characters (one enormous word, or no letters) is cut at that length, and only there could ids differ;
 * `test/text-streaming.test.ts` and `test/tokenizers.test.ts` check equality on the embedded corpora.
 */
export const PIECE_CHARS = 16 * 1024;
export const HARD_LIMIT = 1024 * 1024;

const LETTER_OR_DIGIT = /[\p{L}\p{N}]/u;

const isLetterOrDigit = (text: string, i: number) => LETTER_OR_DIGIT.test(text[i] as string);

const isBoundary = (text: string, i: number) =>
  text.charCodeAt(i) === 0x20 && isLetterOrDigit(text, i - 1) && isLetterOrDigit(text, i + 1);

/**
 * Where to end the first piece of `text`: the last safe boundary at or before `max` characters, else the
 * first one after it, else none (-1). A boundary `i` is where the next piece starts.
 */
export function safeCut(text: string, max: number): number {
  const last = text.length - 2;
  for (let i = Math.min(max, last); i > 0; i--) if (isBoundary(text, i)) return i;
  for (let i = max + 1; i <= last; i++) if (isBoundary(text, i)) return i;
  return -1;
}

/** A cut at `at` or just before it that does not split a surrogate pair. */
function hardCut(text: string, at: number): number {
  const code = text.charCodeAt(at - 1);
  return code >= 0xd800 && code <= 0xdbff ? at - 1 : at;
}

/**
 * Splits a stream of text chunks (one document) into pieces of at most `pieceChars` characters at safe
 * boundaries; the pieces concatenate to the input.
 */
export async function* textPieces(
  chunks: AsyncIterable<string> | Iterable<string>,
  pieceChars = PIECE_CHARS,
): AsyncGenerator<string> {
  let buffer = '';
  for await (const chunk of chunks) {
    buffer += chunk;
    while (buffer.length > pieceChars + 1) {
      let cut = safeCut(buffer, pieceChars);
      if (cut < 0) {
        if (buffer.length < HARD_LIMIT) break;
        cut = hardCut(buffer, HARD_LIMIT);
      }
      yield buffer.slice(0, cut);
      buffer = buffer.slice(cut);
    }
  }
  while (buffer.length > pieceChars) {
    const cut = safeCut(buffer, pieceChars);
    if (cut < 0) break;
    yield buffer.slice(0, cut);
    buffer = buffer.slice(cut);
  }
  yield buffer;
}
