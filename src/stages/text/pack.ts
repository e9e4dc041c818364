import { Observable } from 'rxjs';
import { UserError } from '../../pipeline/errors.js';
import { defineStage, type Stage } from '../../pipeline/stage.js';
import { gpt2Tokenizer, transformerLensSpecialIds, type Tokenizer } from '../../tokenizer/index.js';
import type { TokenBatch, TokenDocument } from './types.js';

/** A special token: an id, the tokenizer's BOS/EOS by name, or null for none. */
export type SpecialToken = number | 'bos' | 'eos' | null;

/**
 * How documents become context windows. The semantics are SAELens's `concat_and_batch_sequences`
 * (sae_lens/tokenization_and_batching.py) with the arguments `ActivationsStore` passes it:
 * begin_batch_token = BOS if prepend_bos else None, begin_sequence_token = None,
 * sequence_separator_token = the `sequence_separator_token` option (default "bos").
 */
export interface PackOptions {
  /** Tokens per window (SAELens `context_size`); at least 2. */
  contextSize: number;
  /** Windows per emitted batch; the last batch may hold fewer. */
  batchSize: number;
  /** Whose BOS/EOS 'bos' and 'eos' mean, and the `prependBos` default (default GPT-2's). */
  tokenizer?: Pick<Tokenizer, 'bosId' | 'eosId' | 'padId' | 'prependBos'>;
  /** Put BOS at position 0 of every window (SAELens `prepend_bos`; default the tokenizer's family default). */
  prependBos?: boolean;
  /** Overrides what `prependBos` implies: the token forced at the start of every window. */
  beginBatchToken?: SpecialToken;
  /** Token put before the first token of every document (default none). */
  beginSequenceToken?: SpecialToken;
  /** Token put between concatenated documents (SAELens `sequence_separator_token`, default 'bos'). */
  sequenceSeparatorToken?: SpecialToken;
  /** Each window comes from one document only: its first `contextSize` tokens; shorter documents and the rest of longer ones are dropped. */
  disableConcatSequences?: boolean;
  /** Id that 'bos' means (default the tokenizer's BOS, else its EOS, as TransformerLens sets it). */
  bosTokenId?: number;
  /** Id that 'eos' means (default the tokenizer's EOS). */
  eosTokenId?: number;
}

interface ResolvedPackOptions {
  contextSize: number;
  batchSize: number;
  beginBatch: number | null;
  beginSequence: number | null;
  separator: number | null;
  disableConcat: boolean;
}

function resolveSpecial(
  name: string,
  token: SpecialToken | undefined,
  fallback: number | null,
  ids: { bos: number | null; eos: number | null },
): number | null {
  if (token === undefined) return fallback;
  if (token === null) return null;
  if (token === 'bos' || token === 'eos') {
    const id = ids[token];
    if (id === null)
      throw new UserError(`${name} is '${token}' but the tokenizer has no ${token.toUpperCase()} token`);
    return id;
  }
  if (!Number.isInteger(token) || token < 0 || token > 0x7fffffff) {
    throw new UserError(
      `${name} must be a non-negative integer token id, 'bos', 'eos' or null, got ${String(token)}`,
    );
  }
  return token;
}

export function resolvePackOptions(opts: PackOptions): ResolvedPackOptions {
  const { contextSize, batchSize } = opts;
  if (!Number.isInteger(contextSize) || contextSize < 2) {
    throw new UserError(`context_size must be an integer >= 2, got ${String(contextSize)}`);
  }
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new UserError(`batch_size must be a positive integer, got ${String(batchSize)}`);
  }
  const tokenizer = opts.tokenizer ?? gpt2Tokenizer;
  const defaults = transformerLensSpecialIds(tokenizer);
  const ids = { bos: opts.bosTokenId ?? defaults.bos, eos: opts.eosTokenId ?? defaults.eos };
  const prependBos = opts.prependBos ?? tokenizer.prependBos;
  if (prependBos && opts.beginBatchToken === undefined && ids.bos === null) {
    throw new UserError(
      'prepend_bos is true but the tokenizer has neither a BOS nor an EOS token to prepend',
    );
  }
  return {
    contextSize,
    batchSize,
    beginBatch: resolveSpecial('begin_batch_token', opts.beginBatchToken, prependBos ? ids.bos : null, ids),
    beginSequence: resolveSpecial('begin_sequence_token', opts.beginSequenceToken, null, ids),
    separator: resolveSpecial('sequence_separator_token', opts.sequenceSeparatorToken, ids.bos, ids),
    disableConcat: opts.disableConcatSequences ?? false,
  };
}

/**
 * Stateful packer: feed it documents' token arrays in order, collect full batches as they complete,
 * and call `finish()` at the end for the last partial batch. Windows are written straight into the
 * batch buffer, so each token is copied once.
 */
export class TokenPacker {
  readonly options: ResolvedPackOptions;
  private batch: Int32Array;
  private rows = 0;
  /** Tokens in the window being built (row `rows` of `batch`); 0 means no window is open. */
  private fill = 0;
  /** How many of those are inserted special tokens rather than input tokens. */
  private inserted = 0;
  private windows = 0;
  private dropped = 0;

  constructor(opts: PackOptions) {
    this.options = resolvePackOptions(opts);
    this.batch = new Int32Array(this.options.batchSize * this.options.contextSize);
  }

  /** Windows completed so far. */
  get windowCount(): number {
    return this.windows;
  }

  /** Tokens of the input that did not make it into a window (too-short documents, remainders). */
  get droppedTokens(): number {
    return this.dropped;
  }

  /**
   * Adds one document, or with `continues` the next piece of the last one (the windows are those of the
   * whole document); yields the batches it completes.
   */
  *push(tokens: Int32Array, continues = false): Generator<TokenBatch> {
    if (this.options.disableConcat) yield* this.pushWholeDocumentPiece(tokens, continues);
    else yield* this.pushConcatenated(tokens, continues);
  }

  /** The start of the current document (disable_concat_sequences), until it can fill a window. */
  private partial: Int32Array | null = null;
  /** The current document already gave its window (or was dropped): its further pieces are dropped. */
  private consumed = false;

  private *pushWholeDocumentPiece(tokens: Int32Array, continues: boolean): Generator<TokenBatch> {
    if (!continues) {
      yield* this.endWholeDocument();
      this.partial = tokens;
      this.consumed = false;
    } else if (this.consumed) {
      this.dropped += tokens.length;
      return;
    } else {
      const joined = new Int32Array((this.partial?.length ?? 0) + tokens.length);
      joined.set(this.partial ?? new Int32Array(0));
      joined.set(tokens, this.partial?.length ?? 0);
      this.partial = joined;
    }
    // A document at least a window long decides its window now; a shorter one waits for its end.
    if (this.partial.length >= this.options.contextSize) yield* this.endWholeDocument();
  }

  private *endWholeDocument(): Generator<TokenBatch> {
    if (this.partial === null) return;
    const tokens = this.partial;
    this.partial = null;
    this.consumed = true;
    yield* this.pushWholeDocument(tokens);
  }

  /** Yields the last, partial batch if any. The unfinished window, if any, is dropped (as SAELens does). */
  *finish(): Generator<TokenBatch> {
    yield* this.endWholeDocument();
    if (this.fill > 0) {
      this.dropped += this.fill - this.inserted;
      this.fill = 0;
      this.inserted = 0;
    }
    if (this.rows > 0) yield this.takeBatch();
  }

  /**
   * disable_concat_sequences: one window per document at most. BOS (begin_sequence_token, else
   * begin_batch_token) is put in front of a document that lacks it when the result can fill a window.
   * SAELens tests these ids for truthiness here, so an id of 0 is ignored there; we test for null,
   * which only differs for a tokenizer whose BOS is 0 (GPT-NeoX/Pythia's `<|endoftext|>`).
   */
  private *pushWholeDocument(tokens: Int32Array): Generator<TokenBatch> {
    const { contextSize } = this.options;
    const begin = this.options.beginSequence ?? this.options.beginBatch;
    const base = this.rows * contextSize;
    if (begin !== null && tokens.length >= contextSize - 1 && tokens[0] !== begin) {
      this.batch[base] = begin;
      this.batch.set(tokens.subarray(0, contextSize - 1), base + 1);
      this.dropped += tokens.length - (contextSize - 1);
    } else if (tokens.length >= contextSize) {
      this.batch.set(tokens.subarray(0, contextSize), base);
      this.dropped += tokens.length - contextSize;
    } else {
      this.dropped += tokens.length;
      return;
    }
    this.fill = contextSize;
    yield* this.closeWindow();
  }

  /**
   * Concatenation mode, step for step as SAELens's `_add_tokens_to_batch`: a special token is not
   * inserted when the token it would precede is already that token (pre-tokenized data that starts
   * with BOS keeps a single BOS), and special tokens that do not fit are cut off at the window's end.
   */
  private *pushConcatenated(tokens: Int32Array, continues: boolean): Generator<TokenBatch> {
    const { contextSize, beginBatch, beginSequence, separator } = this.options;
    let offset = 0;
    // A continuing piece is the middle of a document: no begin-sequence token and no separator.
    let startOfDocument = !continues;
    while (offset < tokens.length) {
      const prefix: number[] = [];
      let first = tokens[offset] as number;
      if (startOfDocument && beginSequence !== null && first !== beginSequence) {
        prefix.unshift(beginSequence);
        first = beginSequence;
      }
      let take: number;
      if (this.fill === 0) {
        if (beginBatch !== null && first !== beginBatch) prefix.unshift(beginBatch);
        this.write(prefix, contextSize);
        take = Math.max(contextSize - prefix.length, 0);
      } else {
        if (startOfDocument && separator !== null && first !== separator) prefix.unshift(separator);
        const room = contextSize - this.fill;
        take = Math.max(room - prefix.length, 0);
        this.write(prefix, room);
      }
      const end = Math.min(offset + take, tokens.length);
      this.batch.set(tokens.subarray(offset, end), this.rows * contextSize + this.fill);
      this.fill += end - offset;
      offset += take;
      startOfDocument = false;
      if (this.fill === contextSize) yield* this.closeWindow();
    }
  }

  private write(prefix: number[], limit: number): void {
    const base = this.rows * this.options.contextSize;
    const n = Math.min(prefix.length, limit);
    for (let i = 0; i < n; i++) this.batch[base + this.fill++] = prefix[i] as number;
    this.inserted += n;
  }

  private *closeWindow(): Generator<TokenBatch> {
    this.fill = 0;
    this.inserted = 0;
    this.rows++;
    this.windows++;
    if (this.rows === this.options.batchSize) yield this.takeBatch();
  }

  private takeBatch(): TokenBatch {
    const { contextSize, batchSize } = this.options;
    const rows = this.rows;
    const tokens = rows === batchSize ? this.batch : this.batch.slice(0, rows * contextSize);
    const seqIds = new Int32Array(rows);
    const firstWindow = this.windows - rows;
    for (let r = 0; r < rows; r++) seqIds[r] = firstWindow + r;
    this.batch = new Int32Array(batchSize * contextSize);
    this.rows = 0;
    return { tokens, batchSize: rows, contextSize, seqIds };
  }
}

type TokensLike = TokenDocument | Int32Array | readonly number[];

const continuesOf = (doc: TokensLike): boolean =>
  !(doc instanceof Int32Array) && !Array.isArray(doc) && (doc as TokenDocument).continues === true;

function tokensOf(doc: TokensLike): Int32Array {
  if (doc instanceof Int32Array) return doc;
  if (Array.isArray(doc)) return Int32Array.from(doc as readonly number[]);
  return (doc as TokenDocument).tokens;
}

/** Packs documents (token documents or bare token arrays) into batches of windows. Deterministic. */
export function* packTokens(docs: Iterable<TokensLike>, opts: PackOptions): Generator<TokenBatch> {
  const packer = new TokenPacker(opts);
  for (const doc of docs) yield* packer.push(tokensOf(doc), continuesOf(doc));
  yield* packer.finish();
}

/** Stage: token documents -> token batches (see `PackOptions`). Options are checked when the stage is built. */
export function pack(opts: PackOptions): Stage<TokenDocument, TokenBatch> {
  resolvePackOptions(opts);
  return defineStage(
    'pack',
    (source) =>
      new Observable<TokenBatch>((subscriber) => {
        const packer = new TokenPacker(opts);
        const sub = source.subscribe({
          next: (doc) => {
            try {
              for (const batch of packer.push(doc.tokens, doc.continues === true)) subscriber.next(batch);
            } catch (err) {
              subscriber.error(err);
            }
          },
          error: (err) => subscriber.error(err),
          complete: () => {
            for (const batch of packer.finish()) subscriber.next(batch);
            subscriber.complete();
          },
        });
        return () => sub.unsubscribe();
      }),
  );
}
