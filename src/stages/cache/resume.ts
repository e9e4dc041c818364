import { existsSync, readdirSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../../pipeline/errors.js';
import {
  CACHE_TEMP_FILE_PATTERN,
  type CacheManifest,
  MANIFEST_FILE,
  SHARD_FILE_PATTERN,
  readManifest,
  writeManifest,
} from './manifest.js';

export interface CacheResumeState {
  /** Rows (tokens) already safely in the cache: the upstream skips this many before feeding the writer. */
  readonly completeRows: number;
  /** The manifest after clean-up, or null when there is no cache yet. */
  readonly manifest: CacheManifest | null;
  /** Shard files dropped so they are rewritten: a trailing partial shard, missing or resized shards and their successors. */
  readonly droppedShards: readonly string[];
  /** Leftovers deleted: temporary files and shards the manifest never listed. */
  readonly removedFiles: readonly string[];
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/**
 * Prepares a cache directory for a resumed write and says how many rows it already holds.
 *
 * Shard boundaries depend only on row counts, so the resumed run reproduces the uninterrupted one byte for
 * byte provided it rewrites everything after the last full, intact shard. Hence:
 * - the writer's temporary files (`shard-NNNNN.parquet.tmp`, `manifest.json.*.tmp`) and shard files the manifest does not list (renamed just before a crash
 *   could update the manifest) are deleted;
 * - the first listed shard that is missing or has the wrong size, and every shard after it, is dropped;
 * - a trailing shard with fewer than `rows_per_shard` rows (written when the previous run stopped) is
 *   dropped, so its rows are rewritten together with the ones that follow.
 * The manifest is rewritten (atomically) when anything was dropped. Idempotent: calling it twice is harmless.
 */
export function openCacheForResume(dir: string): CacheResumeState {
  if (!existsSync(dir)) return { completeRows: 0, manifest: null, droppedShards: [], removedFiles: [] };
  if (!statSync(dir).isDirectory())
    throw new UserError(`${dir}: not a directory (expected an activation cache)`);
  const removedFiles: string[] = [];
  const entries = readdirSync(dir);
  for (const name of entries) {
    if (CACHE_TEMP_FILE_PATTERN.test(name)) {
      removeQuietly(join(dir, name));
      removedFiles.push(name);
    }
  }
  const shardFiles = entries.filter((n) => SHARD_FILE_PATTERN.test(n));
  if (!entries.includes(MANIFEST_FILE)) {
    if (shardFiles.length > 0) {
      throw new UserError(
        `${dir}: has ${shardFiles.length} shard file(s) but no ${MANIFEST_FILE}, so it cannot be resumed; ` +
          'delete the directory or write to another one',
      );
    }
    return { completeRows: 0, manifest: null, droppedShards: [], removedFiles };
  }

  const manifest = readManifest(dir);
  let keep = manifest.shards.length;
  for (let i = 0; i < manifest.shards.length; i++) {
    const shard = manifest.shards[i] as (typeof manifest.shards)[number];
    const path = join(dir, shard.file);
    if (!existsSync(path) || statSync(path).size !== shard.bytes) {
      keep = i;
      break;
    }
  }
  if (keep > 0 && keep === manifest.shards.length) {
    const last = manifest.shards[keep - 1] as (typeof manifest.shards)[number];
    if (last.rows < manifest.rows_per_shard) keep -= 1;
  }
  const droppedShards = manifest.shards.slice(keep).map((s) => s.file);
  for (const file of droppedShards) removeQuietly(join(dir, file));

  const listed = new Set(manifest.shards.slice(0, keep).map((s) => s.file));
  for (const name of shardFiles) {
    if (!listed.has(name) && !droppedShards.includes(name)) {
      removeQuietly(join(dir, name));
      removedFiles.push(name);
    }
  }

  let result = manifest;
  if (droppedShards.length > 0) {
    const shards = manifest.shards.slice(0, keep);
    result = { ...manifest, shards, total_tokens: shards.reduce((n, s) => n + s.rows, 0), complete: false };
    writeManifest(dir, result);
  }
  return { completeRows: result.total_tokens, manifest: result, droppedShards, removedFiles };
}
