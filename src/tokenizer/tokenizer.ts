/**
 * A model's tokenizer as the pipelines use it: text to ids with no special tokens added (packing decides
 * where BOS goes), ids back to text, and the special ids that packing and `exclude_special_tokens` need.
 */
export interface Tokenizer {
  /**
   * Names exactly which ids this tokenizer gives, for cache manifests: `gpt2` for GPT-2's BPE,
   * `tokenizer.json sha256:<hex>` for a Hugging Face tokenizer file. Equal identities, equal ids.
   */
  readonly identity: string;
  /** For logs: what it is and where it came from. */
  readonly description: string;
  /** One more than the largest id the tokenizer can produce. */
  readonly vocabSize: number;
  /** The tokenizer's own BOS token; null when it has none (Qwen2). See `transformerLensSpecialIds`. */
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly padId: number | null;
  /** What SAELens's `get_special_token_ids` gives on TransformerLens's copy of this tokenizer, sorted. */
  readonly specialIds: readonly number[];
  /** TransformerLens's `default_prepend_bos` for the model's family. */
  readonly prependBos: boolean;
  /**
   * True when encoding a text in the pieces `textPieces` cuts and concatenating the ids gives the ids of
   * the whole text; otherwise the tokenize stage joins a document's pieces before encoding them.
   */
  readonly piecesKeepIds: boolean;
  encode(text: string): Int32Array;
  /** Throws a RangeError on an id outside [0, vocabSize). */
  decode(ids: ArrayLike<number>): string;
  /** One token's text for dashboards; `<id>` for an id the tokenizer does not have. */
  decodeToken(id: number): string;
}

export interface SpecialIds {
  bos: number | null;
  eos: number | null;
  pad: number | null;
}

/**
 * BOS/EOS/pad as TransformerLens's `set_tokenizer` leaves them, which is what SAELens packs with: a missing
 * pad or BOS becomes EOS (HookedTransformer.py: `if self.tokenizer.bos_token is None: bos_token = eos_token`).
 * So for Qwen2, which has no BOS token, SAELens's default separator 'bos' is `<|endoftext|>`.
 */
export function transformerLensSpecialIds(t: Pick<Tokenizer, 'bosId' | 'eosId' | 'padId'>): SpecialIds {
  return { bos: t.bosId ?? t.eosId, eos: t.eosId, pad: t.padId ?? t.eosId };
}
