import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ACTIVATION_DTYPES, type ActivationDtype, type ActivationLayout } from '../../arrow/index.js';
import { UserError } from '../../pipeline/errors.js';
import { writeFileAtomicSync } from '../../util/atomic-write.js';
import { PARQUET_COMPRESSIONS, type ParquetCompression } from './parquet-codec.js';

export const MANIFEST_FILE = 'manifest.json';
export const CACHE_FORMAT = 'saeflow-activation-cache';
export const CACHE_FORMAT_VERSION = 1;

/** `shard-00000.parquet`, `shard-00001.parquet`, ...: names sort in row order. */
export function shardFileName(index: number): string {
  return `shard-${String(index).padStart(5, '0')}.parquet`;
}
export const SHARD_FILE_PATTERN = /^shard-(\d{5,})\.parquet$/;
/**
 * Temporary files of the cache writer: shards being written and manifests being replaced (the names
 * util/atomic-write gives). Only these are cleaned up: a cache may share its directory with other files
 * (a run directory's config, logs and state), whose own temporary files are none of our business.
 */
export const CACHE_TEMP_FILE_PATTERN = /^(shard-\d{5,}\.parquet|manifest\.json\..+)\.tmp$/;

export interface CacheHook {
  readonly name: string;
  readonly d: number;
}

/** One column of the shards' schema, e.g. `{ name: 'seq', type: 'int64' }` or `fixed_size_list<float16>[768]`. */
export interface CacheColumn {
  readonly name: string;
  readonly type: string;
}

export interface CacheShard {
  readonly file: string;
  readonly rows: number;
  readonly bytes: number;
  readonly sha256: string;
}

/** What produced the activations; recorded so a cache is never mixed up with another model's or dataset's. */
export interface CacheProvenance {
  readonly model?: string;
  readonly contextSize?: number;
  readonly prependBos?: boolean;
  readonly dataset?: string;
  readonly tokenizer?: string;
  /** The ids `exclude_special_tokens` leaves out for this tokenizer, so that training from the cache can too. */
  readonly specialTokenIds?: readonly number[];
}

/** manifest.json of an activation cache (snake_case keys, as in SAELens configs). */
export interface CacheManifest {
  readonly format: typeof CACHE_FORMAT;
  readonly format_version: number;
  readonly saeflow_version: string;
  readonly model: string | null;
  readonly hooks: readonly CacheHook[];
  readonly dtype: ActivationDtype;
  readonly context_size: number | null;
  readonly prepend_bos: boolean | null;
  readonly dataset: string | null;
  readonly tokenizer: string | null;
  /** Null in caches written before tokenizers other than GPT-2's existed (whose only special id is 50256). */
  readonly special_token_ids: readonly number[] | null;
  readonly compression: ParquetCompression;
  /** Every shard but the last holds exactly this many rows: boundaries depend on row counts only. */
  readonly rows_per_shard: number;
  readonly rows_per_row_group: number;
  readonly has_ids: boolean;
  readonly columns: readonly CacheColumn[];
  readonly total_tokens: number;
  /** True once the writer saw the end of its input (not a stop request). */
  readonly complete: boolean;
  readonly shards: readonly CacheShard[];
}

/** Shard geometry from the layout alone, so an interrupted and a resumed run cut shards at the same rows. */
export interface CacheGeometry {
  readonly rowsPerShard: number;
  readonly rowsPerRowGroup: number;
}

const MIB = 2 ** 20;
/** Row groups are what a reader decompresses at once; 32 MiB keeps reads streaming without tiny pages. */
const ROW_GROUP_TARGET_BYTES = 32 * MIB;

export function cacheGeometry(rowBytes: number, shardSizeMb: number): CacheGeometry {
  let rowsPerRowGroup = Math.max(1, Math.floor(ROW_GROUP_TARGET_BYTES / rowBytes));
  // Multiples of 1024 line row groups up with the usual read batch sizes, so fewer batches need stitching.
  if (rowsPerRowGroup >= 1024) rowsPerRowGroup -= rowsPerRowGroup % 1024;
  let rowsPerShard = Math.max(1, Math.floor((shardSizeMb * MIB) / rowBytes));
  if (rowsPerShard >= rowsPerRowGroup) rowsPerShard -= rowsPerShard % rowsPerRowGroup;
  else rowsPerRowGroup = rowsPerShard;
  return { rowsPerShard, rowsPerRowGroup };
}

export function cacheColumns(layout: ActivationLayout): CacheColumn[] {
  const ids = layout.hasIds
    ? [
        { name: 'seq', type: 'int64' },
        { name: 'pos', type: 'int32' },
        { name: 'token', type: 'int32' },
      ]
    : [];
  return [
    ...ids,
    ...layout.hooks.map((h) => ({ name: h.name, type: `fixed_size_list<${h.dtype}>[${h.d}]` })),
  ];
}

export function manifestPath(dir: string): string {
  return join(dir, MANIFEST_FILE);
}

export function writeManifest(dir: string, manifest: CacheManifest): void {
  writeFileAtomicSync(manifestPath(dir), `${JSON.stringify(manifest, null, 2)}\n`);
}

/** Reads and validates manifest.json; every problem is a UserError naming the file and the field. */
export function readManifest(dir: string): CacheManifest {
  const path = manifestPath(dir);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new UserError(`${path}: not found`);
    throw err;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new UserError(`${path}: not valid JSON (${(err as Error).message})`);
  }
  return validateManifest(json, path);
}

function fail(path: string, field: string, want: string, got: unknown): never {
  throw new UserError(`${path}: field ${field} must be ${want}, got ${JSON.stringify(got)}`);
}

function nonNegativeInt(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

function positiveInt(x: unknown): x is number {
  return nonNegativeInt(x) && x > 0;
}

function nullable<T>(x: unknown, check: (v: unknown) => v is T): x is T | null {
  return x === null || check(x);
}

const isString = (x: unknown): x is string => typeof x === 'string';
const isBoolean = (x: unknown): x is boolean => typeof x === 'boolean';
const isIdList = (x: unknown): x is number[] => Array.isArray(x) && x.every(nonNegativeInt);

export function validateManifest(json: unknown, path: string): CacheManifest {
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    fail(path, '(root)', 'an object', json);
  const m = json as Record<string, unknown>;
  if (m.format !== CACHE_FORMAT) fail(path, 'format', `"${CACHE_FORMAT}"`, m.format);
  if (m.format_version !== CACHE_FORMAT_VERSION) {
    fail(path, 'format_version', `${CACHE_FORMAT_VERSION} (this saeflow's cache format)`, m.format_version);
  }
  if (!isString(m.saeflow_version)) fail(path, 'saeflow_version', 'a string', m.saeflow_version);
  if (!nullable(m.model, isString)) fail(path, 'model', 'a string or null', m.model);
  if (!nullable(m.dataset, isString)) fail(path, 'dataset', 'a string or null', m.dataset);
  if (!nullable(m.tokenizer, isString)) fail(path, 'tokenizer', 'a string or null', m.tokenizer);
  const specialIds = m.special_token_ids ?? null;
  if (!nullable(specialIds, isIdList)) {
    fail(path, 'special_token_ids', 'a list of non-negative integers or null', m.special_token_ids);
  }
  if (!nullable(m.context_size, positiveInt))
    fail(path, 'context_size', 'a positive integer or null', m.context_size);
  if (!nullable(m.prepend_bos, isBoolean)) fail(path, 'prepend_bos', 'a boolean or null', m.prepend_bos);
  if (!ACTIVATION_DTYPES.includes(m.dtype as ActivationDtype))
    fail(path, 'dtype', ACTIVATION_DTYPES.join(' or '), m.dtype);
  if (!PARQUET_COMPRESSIONS.includes(m.compression as ParquetCompression)) {
    fail(path, 'compression', PARQUET_COMPRESSIONS.join(', '), m.compression);
  }
  if (!positiveInt(m.rows_per_shard)) fail(path, 'rows_per_shard', 'a positive integer', m.rows_per_shard);
  if (!positiveInt(m.rows_per_row_group))
    fail(path, 'rows_per_row_group', 'a positive integer', m.rows_per_row_group);
  if (!isBoolean(m.has_ids)) fail(path, 'has_ids', 'a boolean', m.has_ids);
  if (!isBoolean(m.complete)) fail(path, 'complete', 'a boolean', m.complete);
  if (!nonNegativeInt(m.total_tokens)) fail(path, 'total_tokens', 'a non-negative integer', m.total_tokens);

  if (!Array.isArray(m.hooks) || m.hooks.length === 0) fail(path, 'hooks', 'a non-empty array', m.hooks);
  const names = new Set<string>();
  m.hooks.forEach((h: unknown, i: number) => {
    const hook = h as Record<string, unknown> | null;
    if (typeof hook !== 'object' || hook === null || !isString(hook.name) || hook.name === '') {
      fail(path, `hooks[${i}].name`, 'a non-empty string', hook?.name);
    }
    if (!positiveInt(hook.d)) fail(path, `hooks[${i}].d`, 'a positive integer', hook.d);
    if (names.has(hook.name)) fail(path, `hooks[${i}].name`, 'unique', hook.name);
    names.add(hook.name);
  });

  if (!Array.isArray(m.columns)) fail(path, 'columns', 'an array', m.columns);
  m.columns.forEach((c: unknown, i: number) => {
    const col = c as Record<string, unknown> | null;
    if (typeof col !== 'object' || col === null || !isString(col.name) || !isString(col.type)) {
      fail(path, `columns[${i}]`, 'an object with string name and type', c);
    }
  });

  if (!Array.isArray(m.shards)) fail(path, 'shards', 'an array', m.shards);
  let total = 0;
  m.shards.forEach((s: unknown, i: number) => {
    const shard = s as Record<string, unknown> | null;
    if (typeof shard !== 'object' || shard === null) fail(path, `shards[${i}]`, 'an object', s);
    if (shard.file !== shardFileName(i)) fail(path, `shards[${i}].file`, `"${shardFileName(i)}"`, shard.file);
    if (!positiveInt(shard.rows)) fail(path, `shards[${i}].rows`, 'a positive integer', shard.rows);
    if (!positiveInt(shard.bytes)) fail(path, `shards[${i}].bytes`, 'a positive integer', shard.bytes);
    if (!isString(shard.sha256) || !/^[0-9a-f]{64}$/.test(shard.sha256)) {
      fail(path, `shards[${i}].sha256`, 'a hex sha256', shard.sha256);
    }
    const last = i === (m.shards as unknown[]).length - 1;
    if (!last && shard.rows !== m.rows_per_shard) {
      fail(
        path,
        `shards[${i}].rows`,
        `rows_per_shard (${String(m.rows_per_shard)}) for all but the last shard`,
        shard.rows,
      );
    }
    if (shard.rows > (m.rows_per_shard as number)) {
      fail(path, `shards[${i}].rows`, `at most rows_per_shard (${String(m.rows_per_shard)})`, shard.rows);
    }
    total += shard.rows;
  });
  if (total !== m.total_tokens)
    fail(path, 'total_tokens', `the sum of the shard rows (${total})`, m.total_tokens);
  return { ...m, special_token_ids: specialIds } as unknown as CacheManifest;
}
