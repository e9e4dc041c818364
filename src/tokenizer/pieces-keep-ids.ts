/**
 * Whether a tokenizer.json tokenizer gives the same ids on text cut into `textPieces` pieces as on the whole
 * text. A cut is made just before a space that has a letter or digit on both sides (text-pieces.ts); that is
 * safe when nothing before the model joins characters across such a space: the normalizer works per
 * character (Unicode normal forms, lowercasing), the pre-tokenizer splits there with the space starting
 * the next word (byte-level, Metaspace with `split`, whitespace splitters, the Llama 3 / Qwen2 regexes), and
 * no added token contains such a space. Prepend/Replace/Strip normalizers and pre-tokenizers we do not know
 * count as unsafe: the tokenize stage then encodes each document whole.
 */
import { safeCut } from '../stages/text/sources/text-pieces.js';

type Json = Record<string, unknown> | null | undefined;

const PER_CHARACTER_NORMALIZERS = new Set(['NFC', 'NFD', 'NFKC', 'NFKD', 'Lowercase']);
/** Pre-tokenizers that only split further or map bytes: harmless next to one that splits at the cut. */
const HARMLESS_PRE_TOKENIZERS = new Set(['ByteLevel', 'Digits', 'Punctuation', 'Split', 'Metaspace']);

function normalizerIsPerCharacter(n: Json): boolean {
  if (n === null || n === undefined) return true;
  if (n.type === 'Sequence')
    return (n.normalizers as Json[] | undefined)?.every(normalizerIsPerCharacter) ?? false;
  return PER_CHARACTER_NORMALIZERS.has(String(n.type));
}

/** Splits before every space between two letters/digits, keeping the space at the start of the next word. */
function splitsAtCuts(p: Json): boolean {
  if (!p) return false;
  switch (p.type) {
    case 'ByteLevel':
      return p.use_regex !== false;
    case 'Metaspace':
      return p.split !== false;
    case 'Whitespace':
    case 'WhitespaceSplit':
    case 'BertPreTokenizer':
      return true;
    // A regex split is checked on the probe below; with the usual `Isolated` behaviour its matches are words.
    case 'Split':
      return p.behavior === 'Isolated' || p.behavior === 'Removed';
    default:
      return false;
  }
}

function preTokenizerSplitsAtCuts(p: Json): boolean {
  if (!p) return false;
  if (p.type !== 'Sequence') return splitsAtCuts(p);
  const parts = (p.pretokenizers as Json[] | undefined) ?? [];
  return (
    parts.some(splitsAtCuts) &&
    parts.every((x) => splitsAtCuts(x) || HARMLESS_PRE_TOKENIZERS.has(String(x?.type)))
  );
}

/** Text with every kind of neighbourhood a cut can have, for the regex splits the structure cannot prove. */
const PROBE =
  "It's 42 o'clock, they'LL say: 12345 678 ab9 9ab, café naïve ÉTÉ über 東京 x\tY z\n" +
  'It ended.\nThen x,\ny.\r\nz \'s Don\'t 3.14 e.g. A1 B2 "quoted words" (parens) [x] {y} — dash – done. 😀 x 1000000 tokens y';

function cutEverywhere(text: string): string[] {
  const pieces: string[] = [];
  let rest = text;
  for (;;) {
    const cut = safeCut(rest, 1);
    if (cut < 0) break;
    pieces.push(rest.slice(0, cut));
    rest = rest.slice(cut);
  }
  pieces.push(rest);
  return pieces;
}

export function piecesKeepIds(
  tokenizerJson: Record<string, unknown>,
  encode: (text: string) => Int32Array,
): boolean {
  if (!normalizerIsPerCharacter(tokenizerJson.normalizer as Json)) return false;
  if (!preTokenizerSplitsAtCuts(tokenizerJson.pre_tokenizer as Json)) return false;
  const added = (tokenizerJson.added_tokens as Array<{ content?: unknown }> | undefined) ?? [];
  if (added.some((t) => typeof t.content === 'string' && /[\p{L}\p{N}] [\p{L}\p{N}]/u.test(t.content))) {
    return false;
  }
  const whole = encode(PROBE);
  const pieces = cutEverywhere(PROBE).map(encode);
  const joined = pieces.flatMap((p) => Array.from(p));
  return joined.length === whole.length && joined.every((id, i) => id === whole[i]);
}
