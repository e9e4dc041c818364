import { existsSync, linkSync, renameSync, statSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { type ActivationDtype, rowBytes } from '../arrow/index.js';
import { sha256File } from '../io/sha256.js';
import type { ModelConfig } from '../model/index.js';
import { parseHookName, resolveHookPatterns, siteWidth } from '../model/hook-points.js';
import { UserError } from '../pipeline/errors.js';
import {
  type CacheManifest,
  type CacheShard,
  MANIFEST_FILE,
  cacheGeometry,
  readManifest,
  shardFileName,
  writeManifest,
} from '../stages/cache/manifest.js';
import type { StreamSummary } from '../stages/cache/row-blocks.js';
import { writeFileAtomicSync } from '../util/atomic-write.js';
import { plural } from '../util/plural.js';
import { type PartDir, findParts, readPartFile, resumeCommand } from './parts.js';
import { PART_FILE, type ShardSpec } from './shard-spec.js';

/**
 * Rows per shard of the cache these options write: what the cache writer will choose from the first batch,
 * computed from the model's hook widths before any forward, because a task must know its blocks up front.
 */
export function cachePartRows(
  config: ModelConfig,
  hooks: readonly string[],
  dtype: ActivationDtype,
  shardSizeMb: number,
): number {
  const widths = resolveHookPatterns(config, hooks).map((name) => ({
    name,
    d: siteWidth(config, parseHookName(config, name).site),
    dtype,
  }));
  return cacheGeometry(rowBytes({ hasIds: true, hooks: widths }), shardSizeMb).rowsPerShard;
}

/** part.json of one task of a split cache run. */
export interface CachePartFile extends ShardSpec {
  readonly kind: 'activation-cache-part';
  readonly rows_per_block: number;
  readonly stream_windows: number;
  readonly stream_tokens_sha256: string;
}

export function writeCachePart(
  dir: string,
  part: ShardSpec & { rowsPerBlock: number; stream: StreamSummary },
): void {
  const json: CachePartFile = {
    kind: 'activation-cache-part',
    index: part.index,
    count: part.count,
    rows_per_block: part.rowsPerBlock,
    stream_windows: part.stream.windows,
    stream_tokens_sha256: part.stream.tokensSha256,
  };
  writeFileAtomicSync(path.join(dir, PART_FILE), `${JSON.stringify(json, null, 2)}\n`);
}

/** Manifest fields every part must share: the same model, hooks, data, codec and shard geometry. */
const SHARED_FIELDS = [
  'saeflow_version',
  'model',
  'dataset',
  'tokenizer',
  'context_size',
  'prepend_bos',
  'dtype',
  'compression',
  'rows_per_shard',
  'rows_per_row_group',
  'has_ids',
  'hooks',
  'columns',
] as const;

export interface MergeCacheOptions {
  /** Hash every shard against its part's manifest before linking it in (default true). */
  readonly verifyChecksums?: boolean;
  readonly log?: (message: string) => void;
}

export interface MergedCache {
  readonly cache: string;
  readonly parts: number;
  readonly shards: number;
  readonly tokens: number;
  readonly windows: number;
  /** True when an earlier merge had already written the same manifest. */
  readonly alreadyMerged: boolean;
}

const CACHE_PIPELINE = 'pipelines/cache-activations.ts';

/**
 * Joins the parts of a split cache run (`<dir>/parts/NNNNN-of-MMMMM/`, written with `--shard i/n`) into one
 * cache in `dir`: checks that every part finished, that all read the same token stream and wrote with the
 * same settings, that each holds exactly the shards of its blocks, and (by default) every shard's sha256;
 * then links the shards in under their single-run names and writes manifest.json last, so readers see the
 * cache only once it is whole. Safe to run again after an interruption, and a no-op once merged.
 */
export async function mergeCacheParts(dir: string, options: MergeCacheOptions = {}): Promise<MergedCache> {
  const log = options.log ?? (() => undefined);
  const parts = findParts(dir, 'cache-activations');
  const count = parts.length;
  const files = parts.map((p) => readPartFile<CachePartFile>(p, CACHE_PIPELINE));
  const first = files[0]!;
  files.forEach((f, i) => {
    if (f.stream_windows !== first.stream_windows || f.stream_tokens_sha256 !== first.stream_tokens_sha256) {
      throw new UserError(
        `parts 0 and ${i} of ${count} read different token streams (${first.stream_windows} windows, tokens sha256 ` +
          `${first.stream_tokens_sha256.slice(0, 12)}… against ${f.stream_windows}, ${f.stream_tokens_sha256.slice(0, 12)}…): ` +
          'their datasets or options differ',
      );
    }
    if (f.rows_per_block !== first.rows_per_block) {
      throw new UserError(
        `parts 0 and ${i} of ${count} cut the stream into blocks of ${first.rows_per_block} and ${f.rows_per_block} rows: their shard_size_mb, hooks or dtype differ`,
      );
    }
  });

  const manifests = parts.map((p) =>
    existsSync(path.join(p.dir, MANIFEST_FILE)) ? readManifest(p.dir) : null,
  );
  const reference = manifests.find((m) => m !== null);
  if (!reference)
    throw new UserError(`${dir}: none of the ${plural(count, 'part')} wrote any shard (the stream is empty)`);
  const contextSize = reference.context_size;
  if (contextSize === null) throw new UserError(`${parts[0]!.dir}/${MANIFEST_FILE}: records no context_size`);
  const R = first.rows_per_block;
  const tokens = first.stream_windows * contextSize;
  const totalShards = Math.ceil(tokens / R);

  const sources: Array<{ part: PartDir; shard: CacheShard }> = [];
  parts.forEach((part, i) => {
    const m = manifests[i] ?? null;
    const where = path.join(part.dir, MANIFEST_FILE);
    if (m !== null) {
      for (const field of SHARED_FIELDS) {
        if (JSON.stringify(m[field]) !== JSON.stringify(reference[field])) {
          throw new UserError(
            `${where}: ${field} is ${JSON.stringify(m[field])} but another part has ${JSON.stringify(reference[field])}; all parts must be written with the same settings`,
          );
        }
      }
      if (m.rows_per_shard !== R) {
        throw new UserError(
          `${where}: rows_per_shard ${m.rows_per_shard} is not the part's block of ${R} rows`,
        );
      }
      if (!m.complete) {
        throw new UserError(
          `${where}: the part is not complete; finish it with: ${resumeCommand(part.dir, CACHE_PIPELINE)}`,
        );
      }
    }
    const have = m?.shards ?? [];
    const want: number[] = [];
    for (let j = part.index; j < totalShards; j += count) want.push(j);
    if (have.length !== want.length) {
      throw new UserError(
        `${m ? where : part.dir}: holds ${plural(have.length, 'shard')}, but task ${part.index} of ${count} owns ${want.length} of the stream's ${totalShards} (${tokens} tokens)`,
      );
    }
    want.forEach((j, k) => {
      const shard = have[k]!;
      const rows = j === totalShards - 1 ? tokens - j * R : R;
      if (shard.rows !== rows) {
        throw new UserError(
          `${where}: ${shard.file} holds ${shard.rows} rows, but block ${j} of the stream has ${rows}`,
        );
      }
      sources[j] = { part, shard };
    });
  });

  const merged: CacheManifest = {
    ...reference,
    total_tokens: tokens,
    complete: true,
    shards: sources.map(({ shard }, j) => ({ ...shard, file: shardFileName(j) })),
  };
  const target = path.join(dir, MANIFEST_FILE);
  if (existsSync(target)) {
    const existing = readManifest(dir);
    if (JSON.stringify(existing) === JSON.stringify(merged)) {
      log(`${target} already lists the ${plural(totalShards, 'shard')} of the ${plural(count, 'part')}`);
      return {
        cache: dir,
        parts: count,
        shards: totalShards,
        tokens,
        windows: first.stream_windows,
        alreadyMerged: true,
      };
    }
    throw new UserError(
      `${target}: already holds another cache (${existing.total_tokens} tokens); merge into an empty directory`,
    );
  }

  for (const [j, { part, shard }] of sources.entries()) {
    const from = path.join(part.dir, shard.file);
    const to = path.join(dir, shardFileName(j));
    // An interrupted earlier merge may have moved the shard already (where links are not available).
    const at = existsSync(from) ? from : existsSync(to) ? to : null;
    if (at === null) {
      throw new UserError(
        `${from}: missing (listed in ${path.join(part.dir, MANIFEST_FILE)}); rerun task ${part.index} of ${count}`,
      );
    }
    const size = statSync(at).size;
    if (size !== shard.bytes) {
      throw new UserError(
        `${at}: is ${size} bytes but ${path.join(part.dir, MANIFEST_FILE)} says ${shard.bytes} (truncated or replaced)`,
      );
    }
    if (options.verifyChecksums ?? true) {
      const sha = await sha256File(at);
      if (sha !== shard.sha256) {
        throw new UserError(
          `${at}: sha256 is ${sha} but ${path.join(part.dir, MANIFEST_FILE)} says ${shard.sha256} (corrupt shard)`,
        );
      }
    }
    if (at === from) placeShard(from, to);
  }
  writeManifest(dir, merged);
  log(`merged ${plural(count, 'part')} into ${plural(totalShards, 'shard')} (${tokens} tokens) in ${dir}`);
  return {
    cache: dir,
    parts: count,
    shards: totalShards,
    tokens,
    windows: first.stream_windows,
    alreadyMerged: false,
  };
}

/**
 * Puts a part's shard at its single-run name: a hard link (the part stays a readable cache and a rerun finds
 * both), made under a temporary name and renamed, so the name never holds a partial file. File systems
 * without hard links get the file moved instead.
 */
function placeShard(from: string, to: string): void {
  if (existsSync(to) && statSync(to).ino === statSync(from).ino) return;
  const tmp = `${to}.tmp`;
  if (existsSync(tmp)) unlinkSync(tmp);
  try {
    linkSync(from, tmp);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EXDEV' && code !== 'EMLINK' && code !== 'ENOSYS')
      throw e;
    renameSync(from, to);
    return;
  }
  renameSync(tmp, to);
}
