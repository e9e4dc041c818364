import type { Observable } from 'rxjs';
import type { Field } from 'apache-arrow';
import {
  type ActivationBatch,
  type ActivationLayout,
  ActivationRechunker,
  ID_COLUMNS,
  type HookSpec,
} from '../../arrow/index.js';
import { UserError } from '../../pipeline/errors.js';
import type { Flow } from '../../pipeline/flow.js';
import { fromPull } from '../../pipeline/from-pull.js';
import { verifyPageChecksums } from '../../io/parquet-pages/index.js';
import { sha256File } from '../../io/sha256.js';
import {
  type ActivationFile,
  type ActivationSourceInfo,
  inspectActivationSource,
} from './activation-source.js';
import { MANIFEST_FILE } from './manifest.js';
import { dtypeOfStored, hookColumnShape, normalizeBatch } from './normalize-batch.js';
import { openParquet } from './parquet-codec.js';

export interface CacheReaderOptions {
  /** An activation cache directory, a Parquet file, or a directory of Parquet files. */
  readonly path: string;
  /** Hooks to read (only their columns are read from disk); default: all. */
  readonly hooks?: readonly string[];
  /** Rows per emitted batch (default 4096); the last batch may be shorter. */
  readonly batchRows?: number;
  /**
   * Check every file before emitting its rows (default true; see docs/parquet-library.md for the cost): a
   * cache shard's sha256 against the manifest; a plain Parquet file's page checksums (CRC-32 in the page
   * headers), for the columns and row groups to be read, when its writer stored them (our shards do; most
   * other writers do not, and such files are read unchecked).
   */
  readonly verifyChecksums?: boolean;
  /** Include seq/pos/token when the source has them (default true). */
  readonly includeIds?: boolean;
  /**
   * Row of the whole source (files in order) to start at: files that end before it are neither opened nor
   * hashed, and the file it falls in is decoded from there on. How a resumed run seeks in a cache.
   */
  readonly startRow?: number;
  readonly flow?: Flow;
}

export const DEFAULT_BATCH_ROWS = 4096;

function checkOptions(o: CacheReaderOptions): void {
  if (typeof o.path !== 'string' || o.path === '')
    throw new UserError('cache reader: option path must be a path');
  const n = o.batchRows;
  if (n !== undefined && !(Number.isSafeInteger(n) && n > 0)) {
    throw new UserError(`cache reader: option batchRows must be a positive integer, got ${String(n)}`);
  }
  const start = o.startRow;
  if (start !== undefined && !(Number.isSafeInteger(start) && start >= 0)) {
    throw new UserError(`cache reader: option startRow must be a row number, got ${String(start)}`);
  }
  if (o.hooks !== undefined && (o.hooks.length === 0 || new Set(o.hooks).size !== o.hooks.length)) {
    throw new UserError('cache reader: option hooks must be a non-empty list of distinct hook names');
  }
}

/** The hooks to read, in the order asked for; an unknown hook is a UserError listing the ones there are. */
export function selectSourceHooks(info: ActivationSourceInfo, wanted?: readonly string[]): HookSpec[] {
  if (!wanted) return [...info.hooks];
  return wanted.map((name) => {
    const h = info.hooks.find((x) => x.name === name);
    if (!h) {
      const where = info.kind === 'cache' ? `the cache ${info.path}` : info.path;
      throw new UserError(
        `hook ${name} is not in ${where}; it has ${info.hooks.map((x) => x.name).join(', ')}`,
      );
    }
    return h;
  });
}

/**
 * Streams activation batches out of an activation cache or plain Parquet files, reading only the
 * requested hooks' columns. Pulls on demand: with a `flow`, no shard data is read ahead of the consumers.
 */
export function cacheReader(options: CacheReaderOptions): Observable<ActivationBatch> {
  checkOptions(options);
  return fromPull(readActivationBatches(options), options.flow);
}

export async function* readActivationBatches(options: CacheReaderOptions): AsyncGenerator<ActivationBatch> {
  checkOptions(options);
  const info = await inspectActivationSource(options.path);
  const layout: ActivationLayout = {
    hasIds: info.hasIds && (options.includeIds ?? true),
    hooks: selectSourceHooks(info, options.hooks),
  };
  const batchRows = options.batchRows ?? DEFAULT_BATCH_ROWS;
  const rechunker = new ActivationRechunker(batchRows);
  const columns = [...(layout.hasIds ? ID_COLUMNS : []), ...layout.hooks.map((h) => h.name)];
  let skip = options.startRow ?? 0;
  for (const file of info.files) {
    if (skip >= file.rows) {
      skip -= file.rows;
      continue;
    }
    if (options.verifyChecksums ?? true) {
      // A cache shard's sha256 covers every byte, page checksums included, so one check is enough.
      if (info.kind === 'cache') await verifyChecksum(file);
      else await verifyPageChecksums(file.path, { columns, fromRow: skip });
    }
    for await (const batch of readFile(file, info, layout, columns, batchRows, skip)) {
      for (const out of rechunker.push(batch)) yield out;
    }
    skip = 0;
  }
  const rest = rechunker.flush();
  if (rest) yield rest;
}

async function verifyChecksum(file: ActivationFile): Promise<void> {
  const actual = await sha256File(file.path);
  if (actual !== file.sha256) {
    throw new UserError(
      `${file.path}: sha256 is ${actual} but ${MANIFEST_FILE} says ${file.sha256} (corrupt shard)`,
    );
  }
}

async function* readFile(
  file: ActivationFile,
  info: ActivationSourceInfo,
  layout: ActivationLayout,
  columns: readonly string[],
  batchRows: number,
  firstRow: number,
): AsyncGenerator<ActivationBatch> {
  const source = await openParquet(file.path);
  try {
    if (source.numRows !== file.rows) {
      const said = info.kind === 'cache' ? MANIFEST_FILE : 'its footer when the source was opened';
      throw new UserError(`${file.path}: holds ${source.numRows} rows but ${said} says ${file.rows}`);
    }
    for (const h of layout.hooks)
      checkHookField(
        file.path,
        source.schema.fields.find((f) => f.name === h.name),
        h,
      );
    let row = firstRow;
    for await (const raw of source.batches({ columns, batchSize: batchRows, offset: firstRow })) {
      yield normalizeBatch(raw, layout, file.path, row);
      row += raw.numRows;
    }
    if (row !== file.rows)
      throw new UserError(`${file.path}: yielded ${row} rows, its footer says ${file.rows}`);
  } finally {
    source.close();
  }
}

/** The column must be a list of the expected element type; fixed-size lists must have the expected width. */
function checkHookField(path: string, field: Field | undefined, hook: HookSpec): void {
  if (!field) throw new UserError(`${path}: has no column ${hook.name}`);
  const shape = hookColumnShape(field);
  if (!shape)
    throw new UserError(`${path}: column ${hook.name} is ${String(field.type)}, not a list of floats`);
  const dtype = dtypeOfStored(shape.stored);
  if (dtype !== hook.dtype)
    throw new UserError(`${path}: column ${hook.name} holds ${dtype} values, expected ${hook.dtype}`);
  if (shape.d !== null && shape.d !== hook.d) {
    throw new UserError(`${path}: column ${hook.name} has width ${shape.d}, expected ${hook.d}`);
  }
}
