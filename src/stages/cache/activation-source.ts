import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { Type } from 'apache-arrow';
import type { HookSpec } from '../../arrow/index.js';
import { UserError } from '../../pipeline/errors.js';
import { type CacheManifest, MANIFEST_FILE, readManifest } from './manifest.js';
import { dtypeOfStored, hookColumnShape, hookColumnValues, isIdField } from './normalize-batch.js';
import { type ParquetSource, openParquet } from './parquet-codec.js';

/** One Parquet file of an activation source, with what the manifest promises about it (caches only). */
export interface ActivationFile {
  readonly path: string;
  readonly rows: number;
  readonly bytes?: number;
  readonly sha256?: string;
}

/** What an activation cache or a plain Parquet file/directory holds. */
export interface ActivationSourceInfo {
  readonly kind: 'cache' | 'parquet';
  readonly path: string;
  readonly files: readonly ActivationFile[];
  /** Hook columns with their width and the type they are read as. */
  readonly hooks: readonly HookSpec[];
  readonly hasIds: boolean;
  readonly totalRows: number;
  readonly manifest: CacheManifest | null;
}

/**
 * Looks at `path` without reading activation data: a directory with manifest.json is a cache (its shards
 * must all exist with the recorded sizes); otherwise a `.parquet` file or a directory of them, whose hook
 * columns (lists of floats) and widths are inferred from their schemas and first rows.
 */
export async function inspectActivationSource(path: string): Promise<ActivationSourceInfo> {
  if (!existsSync(path))
    throw new UserError(`${path}: not found (expected an activation cache or Parquet files)`);
  if (statSync(path).isDirectory()) {
    if (existsSync(join(path, MANIFEST_FILE))) return inspectCache(path);
    // A split cache run before its finishing step: shards may already be linked in, but not all of them.
    if (existsSync(join(path, 'parts')) && statSync(join(path, 'parts')).isDirectory()) {
      throw new UserError(
        `${path}: a split cache run whose parts are not merged yet (parts/ but no ${MANIFEST_FILE}); run npx run-pipeline pipelines/merge-cache.ts --cache ${path}`,
      );
    }
    const files = readdirSync(path)
      .filter((n) => n.endsWith('.parquet'))
      .sort()
      .map((n) => join(path, n));
    if (files.length === 0) throw new UserError(`${path}: holds neither ${MANIFEST_FILE} nor .parquet files`);
    return inspectPlain(path, files);
  }
  const dir = dirname(path);
  if (existsSync(join(dir, MANIFEST_FILE))) return inspectCacheShard(dir, path);
  return inspectPlain(path, [path]);
}

/**
 * One shard of a cache, named by its own path: it is held to what the cache's manifest says about it
 * (size here, rows and sha256 when read), exactly as when the whole cache is read.
 */
function inspectCacheShard(dir: string, path: string): ActivationSourceInfo {
  const cache = inspectCache(dir);
  const file = cache.files.find((f) => resolve(f.path) === resolve(path));
  if (!file) {
    throw new UserError(
      `${path}: lies in the activation cache ${dir} but its ${MANIFEST_FILE} does not list ${basename(path)} (a partial or foreign file?)`,
    );
  }
  return { ...cache, path, files: [file], totalRows: file.rows };
}

function inspectCache(dir: string): ActivationSourceInfo {
  const manifest = readManifest(dir);
  const files = manifest.shards.map((s) => {
    const path = join(dir, s.file);
    if (!existsSync(path)) throw new UserError(`${path}: missing (listed in ${MANIFEST_FILE})`);
    const size = statSync(path).size;
    if (size !== s.bytes) {
      throw new UserError(
        `${path}: is ${size} bytes but ${MANIFEST_FILE} says ${s.bytes} (truncated or replaced)`,
      );
    }
    return { path, rows: s.rows, bytes: s.bytes, sha256: s.sha256 };
  });
  return {
    kind: 'cache',
    path: dir,
    files,
    hooks: manifest.hooks.map((h) => ({ name: h.name, d: h.d, dtype: manifest.dtype })),
    hasIds: manifest.has_ids,
    totalRows: manifest.total_tokens,
    manifest,
  };
}

interface PlainFileLayout {
  readonly hasIds: boolean;
  readonly hooks: Map<string, { d: number | null; dtype: HookSpec['dtype'] }>;
}

async function plainFileLayout(source: ParquetSource): Promise<PlainFileLayout> {
  const fields = source.schema.fields;
  const ids = fields.filter(isIdField).length;
  const hooks = new Map<string, { d: number | null; dtype: HookSpec['dtype'] }>();
  for (const field of fields) {
    const shape = hookColumnShape(field);
    if (!shape) continue;
    let d = shape.d;
    if (d === null && source.numRows > 0) d = await firstListLength(source, field.name);
    hooks.set(field.name, { d, dtype: dtypeOfStored(shape.stored) });
  }
  return { hasIds: ids === 3, hooks };
}

/** Width of a variable-length list column, read from its first row (the reader checks every other row). */
async function firstListLength(source: ParquetSource, column: string): Promise<number> {
  for await (const batch of source.batches({ columns: [column], batchSize: 1 })) {
    const data = batch.data.children[0];
    if (!data || data.type.typeId === Type.FixedSizeList) break;
    if (data.nullCount > 0)
      throw new UserError(`${source.path}: column ${column}, row 0: null instead of a list`);
    const offsets = data.valueOffsets as Int32Array | BigInt64Array;
    const d = Number(offsets[1]) - Number(offsets[0]);
    if (d < 1) throw new UserError(`${source.path}: column ${column}, row 0: an empty list`);
    // Run the full check on this row too, so element nulls are reported here with the same wording.
    hookColumnValues(data, column, d, source.path, 0);
    return d;
  }
  throw new UserError(`${source.path}: column ${column} has no rows to infer its width from`);
}

async function inspectPlain(path: string, paths: readonly string[]): Promise<ActivationSourceInfo> {
  const files: ActivationFile[] = [];
  let reference: { file: string; layout: PlainFileLayout } | null = null;
  for (const file of paths) {
    const source = await openParquet(file);
    try {
      const layout = await plainFileLayout(source);
      if (layout.hooks.size === 0) {
        const columns = source.schema.fields.map((f) => `${f.name}: ${String(f.type)}`).join(', ');
        throw new UserError(
          `${file}: no activation columns (lists of floats, one row per token); it has ${columns}`,
        );
      }
      if (reference) checkSameLayout(reference, file, layout);
      else reference = { file, layout };
      // Widths unknown in an empty first file are settled by the next file that has rows.
      for (const [name, h] of layout.hooks) {
        const ref = reference.layout.hooks.get(name);
        if (ref && ref.d === null && h.d !== null) reference.layout.hooks.set(name, h);
      }
      files.push({ path: file, rows: source.numRows });
    } finally {
      source.close();
    }
  }
  const ref = reference as { file: string; layout: PlainFileLayout };
  const hooks: HookSpec[] = [];
  for (const [name, h] of ref.layout.hooks) {
    if (h.d === null) throw new UserError(`${path}: column ${name} has no rows to infer its width from`);
    hooks.push({ name, d: h.d, dtype: h.dtype });
  }
  return {
    kind: 'parquet',
    path,
    files,
    hooks,
    hasIds: ref.layout.hasIds,
    totalRows: files.reduce((n, f) => n + f.rows, 0),
    manifest: null,
  };
}

function checkSameLayout(
  ref: { file: string; layout: PlainFileLayout },
  file: string,
  layout: PlainFileLayout,
): void {
  const names = (l: PlainFileLayout) => [...l.hooks.keys()].join(', ');
  if (names(ref.layout) !== names(layout)) {
    throw new UserError(
      `${file}: has hook columns ${names(layout)} but ${ref.file} has ${names(ref.layout)}`,
    );
  }
  for (const [name, h] of layout.hooks) {
    const r = ref.layout.hooks.get(name) as { d: number | null; dtype: HookSpec['dtype'] };
    if (r.d !== null && h.d !== null && r.d !== h.d) {
      throw new UserError(`${file}: column ${name} has width ${h.d} but ${ref.file} has ${r.d}`);
    }
    if (r.dtype !== h.dtype)
      throw new UserError(`${file}: column ${name} is ${h.dtype} but ${ref.file} has ${r.dtype}`);
  }
  if (ref.layout.hasIds !== layout.hasIds) {
    throw new UserError(
      `${file}: ${layout.hasIds ? 'has' : 'lacks'} seq/pos/token columns unlike ${ref.file}`,
    );
  }
}
