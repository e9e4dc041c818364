import type { Observable } from 'rxjs';
import { UserError } from '../../../pipeline/errors.js';
import type { Flow } from '../../../pipeline/flow.js';
import { fromPull } from '../../../pipeline/from-pull.js';
import { bufferedShuffle, mulberry32, shuffleInPlace, type Random } from '../../../util/random.js';
import { isTokenDocument, type Document } from '../types.js';
import { loadCorpus } from './corpora.js';
import { describeDataset, formatOf, resolveDataset, type DatasetDescription } from './dataset.js';
import { checkFieldOptions, type FieldOptions } from './fields.js';
import { readJsonl } from './jsonl.js';
import { readParquet } from './parquet.js';
import { readPlainText } from './plain-text.js';
import { PIECE_CHARS, textPieces } from './text-pieces.js';

export interface ReadDocumentsOptions extends FieldOptions {
  /** Shuffle the documents (file order, then a bounded buffer of documents); deterministic given `seed`. */
  shuffle?: boolean;
  /** Seed of the shuffle (default 0). */
  seed?: number;
  /** Documents held by the shuffle buffer (default 10,000): a uniform shuffle of datasets up to that size. */
  shuffleBufferSize?: number;
  /** Stop after this many documents (after shuffling). */
  maxDocuments?: number;
  /** Directory that relative paths and globs are resolved against (default: the process's cwd). */
  cwd?: string;
}

const DEFAULT_SHUFFLE_BUFFER = 10_000;

function checkOptions(opts: ReadDocumentsOptions): void {
  checkFieldOptions(opts);
  const { seed, shuffleBufferSize, maxDocuments } = opts;
  if (seed !== undefined && !Number.isSafeInteger(seed))
    throw new UserError(`seed must be an integer, got ${seed}`);
  if (shuffleBufferSize !== undefined && (!Number.isInteger(shuffleBufferSize) || shuffleBufferSize < 1)) {
    throw new UserError(`shuffle_buffer_size must be a positive integer, got ${shuffleBufferSize}`);
  }
  if (maxDocuments !== undefined && (!Number.isInteger(maxDocuments) || maxDocuments < 1)) {
    throw new UserError(`max_documents must be a positive integer, got ${maxDocuments}`);
  }
}

async function* documentsOfFile(file: string, opts: FieldOptions): AsyncGenerator<Document> {
  switch (formatOf(file)) {
    case 'text':
      if (opts.tokensField !== undefined) {
        throw new UserError(
          `${file}: a plain-text file has no '${opts.tokensField}' field to read tokens from`,
        );
      }
      yield* readPlainText(file);
      return;
    case 'jsonl':
      yield* readJsonl(file, opts);
      return;
    case 'parquet':
      yield* readParquet(file, opts);
      return;
    default:
      throw new UserError(`${file}: unsupported file type`);
  }
}

async function* unshuffled(dataset: DatasetDescription, opts: ReadDocumentsOptions, files: string[]) {
  if (dataset.kind === 'corpus') {
    if (opts.tokensField !== undefined) {
      throw new UserError(`embedded corpus '${dataset.name}' is text; it has no '${opts.tokensField}' field`);
    }
    yield* loadCorpus(dataset.name);
    return;
  }
  for (const file of files) yield* documentsOfFile(file, opts);
}

/**
 * The documents of a dataset (a `dataset` option or what `resolveDataset` made of it), streamed in
 * order, or shuffled deterministically. A dataset with no documents at all is a UserError.
 */
export function readDocuments(
  dataset: string | DatasetDescription,
  opts: ReadDocumentsOptions = {},
): AsyncGenerator<Document> {
  // Bad options fail here, when the pipeline is built, rather than on the first pull.
  checkOptions(opts);
  return generateDocuments(dataset, opts);
}

async function* generateDocuments(
  dataset: string | DatasetDescription,
  opts: ReadDocumentsOptions,
): AsyncGenerator<Document> {
  const resolved = typeof dataset === 'string' ? await resolveDataset(dataset, { cwd: opts.cwd }) : dataset;
  const random = opts.shuffle ? mulberry32(opts.seed ?? 0) : undefined;
  const files = resolved.kind === 'files' ? [...resolved.files] : [];
  if (random) shuffleInPlace(files, random);
  let docs: AsyncIterable<Document> = unshuffled(resolved, opts, files);
  if (random) docs = shuffleDocuments(docs, opts.shuffleBufferSize ?? DEFAULT_SHUFFLE_BUFFER, random);
  let count = 0;
  for await (const doc of docs) {
    if (!doc.continues) {
      if (opts.maxDocuments !== undefined && count >= opts.maxDocuments) return;
      count++;
    }
    yield* inPieces(doc);
  }
  if (count === 0) throw new UserError(`dataset has no documents: ${describeDataset(resolved)}`);
}

/**
 * Documents already in memory (a JSONL line, a Parquet cell, a corpus entry) longer than this are
 * tokenized in pieces, which bounds the tokenizer's memory and the work between two stop checks.
 * Shorter ones stay whole, so every document of the embedded corpora is one item as before.
 */
const SPLIT_IN_MEMORY_ABOVE = 1024 * 1024;

/** A long text document as pieces (see text-pieces.ts); anything else as it is. */
async function* inPieces(doc: Document): AsyncGenerator<Document> {
  if (isTokenDocument(doc) || doc.text.length <= SPLIT_IN_MEMORY_ABOVE) {
    yield doc;
    return;
  }
  const pieces = textPieces([doc.text], PIECE_CHARS);
  let previous: string | null = null;
  let first = true;
  const piece = (text: string, more: boolean): Document => ({
    id: doc.id,
    text,
    ...(doc.continues || !first ? { continues: true } : {}),
    ...(more || doc.more ? { more: true } : {}),
  });
  for await (const text of pieces) {
    if (previous !== null) {
      yield piece(previous, true);
      first = false;
    }
    previous = text;
  }
  yield piece(previous ?? '', false);
}

/**
 * A uniform shuffle through a buffer of `size` documents (util/random.ts's bufferedShuffle, with the same
 * draws), except that a document read in pieces (a long .txt file) passes through at once, in order:
 * buffering its pieces would hold the whole document. Files are shuffled before they are read, so such a
 * document still comes at a random place in the run.
 */
function shuffleDocuments(
  source: AsyncIterable<Document>,
  size: number,
  random: Random,
): AsyncGenerator<Document> {
  // A piece passes when another follows it (`more`) or when it follows one that did.
  let passing = false;
  return bufferedShuffle(source, size, random, (item) => {
    const passes = passing || item.more === true;
    passing = item.more === true;
    return passes;
  });
}

/** `readDocuments` as an Observable that pulls a document only when the stages downstream have room. */
export function documentSource(
  dataset: string | DatasetDescription,
  opts: ReadDocumentsOptions = {},
  flow?: Flow,
): Observable<Document> {
  return fromPull(readDocuments(dataset, opts), flow);
}
