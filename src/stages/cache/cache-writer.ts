import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, unlinkSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { defer } from 'rxjs';
import {
  ACTIVATION_DTYPES,
  type ActivationBatch,
  type ActivationDtype,
  type ActivationLayout,
  activationLayout,
  rowBytes,
} from '../../arrow/index.js';
import { asyncStage } from '../../pipeline/async-stage.js';
import { UserError } from '../../pipeline/errors.js';
import type { Flow } from '../../pipeline/flow.js';
import { type Stage, defineStage } from '../../pipeline/stage.js';
import {
  CACHE_FORMAT,
  CACHE_TEMP_FILE_PATTERN,
  CACHE_FORMAT_VERSION,
  type CacheManifest,
  type CacheProvenance,
  type CacheShard,
  MANIFEST_FILE,
  SHARD_FILE_PATTERN,
  cacheColumns,
  cacheGeometry,
  shardFileName,
  writeManifest,
} from './manifest.js';
import { PARQUET_COMPRESSIONS, type ParquetCompression, encodeParquet } from './parquet-codec.js';
import { openCacheForResume } from './resume.js';
import { saeflowVersion } from './saeflow-version.js';
import { ShardBuffer } from './shard-buffer.js';
import { plural } from '../../util/plural.js';

export interface CacheWriterOptions {
  /** The cache directory (created when missing). */
  readonly dir: string;
  /** Hooks to cache, in this order; default: every hook column of the first batch. */
  readonly hooks?: readonly string[];
  /** Element type on disk (default float32); input batches of the other type are converted. */
  readonly dtype?: ActivationDtype;
  /** Parquet codec (default snappy). zstd files are smaller but slower, and not every reader opens them. */
  readonly compression?: ParquetCompression;
  /** Target shard size in MiB of uncompressed rows (default 256); fixes the rows per shard. */
  readonly shardSizeMb?: number;
  /** Model, dataset, tokenizer, ... recorded in the manifest and checked on resume. */
  readonly provenance?: CacheProvenance;
  /**
   * Continue the cache in `dir`: the input must start right after its `completeRows` (see
   * `openCacheForResume`), and the options must match the ones it was written with.
   */
  readonly resume?: boolean;
  /** No input writes nothing (no manifest) instead of failing: a task of a split run may own no rows. */
  readonly allowEmpty?: boolean;
  /** Replace an existing cache in `dir` instead of refusing to touch it. */
  readonly overwrite?: boolean;
  readonly flow?: Flow;
}

/** Emitted once per shard written. */
export interface ShardWritten {
  readonly shard: number;
  readonly rows: number;
  readonly bytes: number;
  readonly path: string;
  readonly sha256: string;
  /** Rows in the cache so far, this shard included. */
  readonly totalRows: number;
}

export const DEFAULT_SHARD_SIZE_MB = 256;
export const MAX_SHARD_SIZE_MB = 1024;

function checkOptions(o: CacheWriterOptions): void {
  if (typeof o.dir !== 'string' || o.dir === '')
    throw new UserError('cache writer: option dir must be a directory path');
  if (o.dtype !== undefined && !ACTIVATION_DTYPES.includes(o.dtype)) {
    throw new UserError(
      `cache writer: option dtype must be ${ACTIVATION_DTYPES.join(' or ')}, got ${String(o.dtype)}`,
    );
  }
  if (o.compression !== undefined && !PARQUET_COMPRESSIONS.includes(o.compression)) {
    throw new UserError(
      `cache writer: option compression must be one of ${PARQUET_COMPRESSIONS.join(', ')}, got ${String(o.compression)}`,
    );
  }
  const mb = o.shardSizeMb;
  // parquet-wasm holds a shard two to three times over in its 4 GiB of wasm memory while encoding it.
  if (
    mb !== undefined &&
    !(typeof mb === 'number' && Number.isFinite(mb) && mb > 0 && mb <= MAX_SHARD_SIZE_MB)
  ) {
    throw new UserError(
      `cache writer: option shardSizeMb must be a number in (0, ${MAX_SHARD_SIZE_MB}], got ${String(mb)}`,
    );
  }
  if (o.hooks !== undefined && (o.hooks.length === 0 || new Set(o.hooks).size !== o.hooks.length)) {
    throw new UserError('cache writer: option hooks must be a non-empty list of distinct hook names');
  }
}

/**
 * Writes activation batches to a Parquet activation cache: `shard-NNNNN.parquet` files of exactly
 * `rows_per_shard` rows (the last may be shorter) plus `manifest.json`. Each shard is written under a
 * `.tmp` name and renamed once complete; the manifest is replaced atomically after every shard, so an
 * interrupted run leaves a consistent cache that `resume` continues.
 */
export function cacheWriter(options: CacheWriterOptions): Stage<ActivationBatch, ShardWritten> {
  checkOptions(options);
  return defineStage('cache-writer', (source) =>
    defer(() => {
      const writer = new CacheWriter(options);
      return source.pipe(
        asyncStage<ActivationBatch, ShardWritten>(
          'cache-writer',
          (batch, emit) => writer.write(batch, emit),
          {
            flow: options.flow,
            flush: (emit) => writer.finish(emit),
          },
        ),
      );
    }),
  );
}

class CacheWriter {
  private readonly dtype: ActivationDtype;
  private readonly compression: ParquetCompression;
  private readonly shardSizeMb: number;
  private layout: ActivationLayout | null = null;
  private manifest: CacheManifest | null = null;
  private buffer: ShardBuffer | null = null;

  constructor(private readonly options: CacheWriterOptions) {
    this.dtype = options.dtype ?? 'float32';
    this.compression = options.compression ?? 'snappy';
    this.shardSizeMb = options.shardSizeMb ?? DEFAULT_SHARD_SIZE_MB;
  }

  async write(batch: ActivationBatch, emit: (s: ShardWritten) => void): Promise<void> {
    if (!this.buffer) this.start(batch);
    const buffer = this.buffer as ShardBuffer;
    this.checkBatch(batch);
    let offset = 0;
    while (offset < batch.numRows) {
      const take = Math.min(buffer.capacity - buffer.rows, batch.numRows - offset);
      buffer.append(batch, offset, take);
      offset += take;
      if (buffer.full) emit(await this.writeShard());
    }
  }

  async finish(emit: (s: ShardWritten) => void): Promise<void> {
    if (!this.manifest) {
      // No input at all: fine when resuming a cache that already holds everything, an error otherwise.
      const state = this.options.resume ? openCacheForResume(this.options.dir) : null;
      if (!state?.manifest && this.options.allowEmpty) return;
      if (!state?.manifest) {
        throw new UserError(
          `cache writer: no activation batches arrived, nothing was written to ${this.options.dir}`,
        );
      }
      this.manifest = state.manifest;
    }
    if (this.buffer && this.buffer.rows > 0) emit(await this.writeShard());
    this.manifest = { ...this.manifest, complete: !this.options.flow?.stopped };
    writeManifest(this.options.dir, this.manifest);
  }

  /** Fixes the cache layout from the first batch and prepares the directory (fresh, overwritten or resumed). */
  private start(first: ActivationBatch): void {
    const { dir } = this.options;
    const input = activationLayout(first);
    const names = this.options.hooks ?? input.hooks.map((h) => h.name);
    const hooks = names.map((name) => {
      const h = input.hooks.find((x) => x.name === name);
      if (!h) {
        throw new UserError(
          `cache writer: hook ${name} is not in the activation batches; they have ${input.hooks.map((x) => x.name).join(', ')}`,
        );
      }
      return { name, d: h.d, dtype: this.dtype };
    });
    if (hooks.length === 0) throw new UserError('cache writer: the activation batches have no hook columns');
    const layout: ActivationLayout = { hasIds: input.hasIds, hooks };
    const geometry = cacheGeometry(rowBytes(layout), this.shardSizeMb);
    const p = this.options.provenance ?? {};
    const fresh: CacheManifest = {
      format: CACHE_FORMAT,
      format_version: CACHE_FORMAT_VERSION,
      saeflow_version: saeflowVersion(),
      model: p.model ?? null,
      hooks: hooks.map((h) => ({ name: h.name, d: h.d })),
      dtype: this.dtype,
      context_size: p.contextSize ?? null,
      prepend_bos: p.prependBos ?? null,
      dataset: p.dataset ?? null,
      tokenizer: p.tokenizer ?? null,
      special_token_ids: p.specialTokenIds ?? null,
      compression: this.compression,
      rows_per_shard: geometry.rowsPerShard,
      rows_per_row_group: geometry.rowsPerRowGroup,
      has_ids: layout.hasIds,
      columns: cacheColumns(layout),
      total_tokens: 0,
      complete: false,
      shards: [],
    };

    let manifest = fresh;
    if (this.options.resume) {
      const state = openCacheForResume(dir);
      if (state.manifest) {
        checkResumable(dir, state.manifest, fresh);
        const was = state.manifest;
        manifest = {
          ...fresh,
          model: fresh.model ?? was.model,
          dataset: fresh.dataset ?? was.dataset,
          tokenizer: fresh.tokenizer ?? was.tokenizer,
          special_token_ids: fresh.special_token_ids ?? was.special_token_ids,
          context_size: fresh.context_size ?? was.context_size,
          prepend_bos: fresh.prepend_bos ?? was.prepend_bos,
          shards: was.shards,
          total_tokens: was.total_tokens,
        };
      }
    } else {
      prepareFreshDir(dir, this.options.overwrite ?? false);
    }
    mkdirSync(dir, { recursive: true });
    writeManifest(dir, manifest);
    this.layout = layout;
    this.manifest = manifest;
    this.buffer = new ShardBuffer(layout, geometry.rowsPerShard);
  }

  private checkBatch(batch: ActivationBatch): void {
    const layout = this.layout as ActivationLayout;
    const got = activationLayout(batch);
    if (got.hasIds !== layout.hasIds) {
      throw new TypeError(
        `cache writer: a batch ${got.hasIds ? 'has' : 'lacks'} seq/pos/token unlike the first one`,
      );
    }
    for (const h of layout.hooks) {
      const g = got.hooks.find((x) => x.name === h.name);
      if (!g) throw new UserError(`cache writer: a batch lacks hook ${h.name}`);
      if (g.d !== h.d)
        throw new TypeError(`cache writer: hook ${h.name} changed width from ${h.d} to ${g.d}`);
    }
  }

  private async writeShard(): Promise<ShardWritten> {
    const buffer = this.buffer as ShardBuffer;
    const manifest = this.manifest as CacheManifest;
    const index = manifest.shards.length;
    const file = shardFileName(index);
    const path = join(this.options.dir, file);
    const bytes = encodeParquet(buffer.view(), {
      compression: manifest.compression,
      rowGroupRows: manifest.rows_per_row_group,
    });
    const rows = buffer.rows;
    buffer.clear();
    await writeFileDurably(`${path}.tmp`, path, bytes);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const shard: CacheShard = { file, rows, bytes: bytes.byteLength, sha256 };
    this.manifest = {
      ...manifest,
      shards: [...manifest.shards, shard],
      total_tokens: manifest.total_tokens + rows,
    };
    writeManifest(this.options.dir, this.manifest);
    return {
      shard: index,
      rows,
      bytes: bytes.byteLength,
      path,
      sha256,
      totalRows: this.manifest.total_tokens,
    };
  }
}

/** Writes `tmp`, flushes it to disk, then renames it over `path`: a crash never leaves a partial shard. */
async function writeFileDurably(tmp: string, path: string, bytes: Uint8Array): Promise<void> {
  const handle = await open(tmp, 'w');
  try {
    await handle.writeFile(bytes);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, path);
}

function prepareFreshDir(dir: string, overwrite: boolean): void {
  if (!existsSync(dir)) return;
  const entries = readdirSync(dir);
  const ours = entries.filter(
    (n) => n === MANIFEST_FILE || SHARD_FILE_PATTERN.test(n) || CACHE_TEMP_FILE_PATTERN.test(n),
  );
  if (ours.length === 0) return;
  if (!overwrite) {
    throw new UserError(
      `${dir}: already holds an activation cache (${plural(ours.length, 'file')}); resume it, choose another directory, ` +
        'or allow overwriting',
    );
  }
  for (const name of ours) unlinkSync(join(dir, name));
}

/** A resumed run must write exactly what the interrupted one would have: same layout, codec and provenance. */
function checkResumable(dir: string, old: CacheManifest, now: CacheManifest): void {
  const mismatch = (field: string, was: unknown, is: unknown) =>
    new UserError(
      `${join(dir, MANIFEST_FILE)}: cannot resume, the cache was written with ${field} ${JSON.stringify(was)} ` +
        `but this run has ${JSON.stringify(is)}`,
    );
  const hooks = (m: CacheManifest) => m.hooks.map((h) => `${h.name}[${h.d}]`).join(', ');
  if (hooks(old) !== hooks(now)) throw mismatch('hooks', hooks(old), hooks(now));
  if (old.has_ids !== now.has_ids) throw mismatch('has_ids', old.has_ids, now.has_ids);
  const fields = [
    'dtype',
    'compression',
    'rows_per_shard',
    'rows_per_row_group',
    'model',
    'dataset',
    'tokenizer',
    'context_size',
    'prepend_bos',
  ] as const;
  for (const f of fields) {
    // Provenance the new run leaves unset is taken from the cache rather than counted as a change.
    if (now[f] !== null && old[f] !== now[f]) throw mismatch(f, old[f], now[f]);
  }
}
