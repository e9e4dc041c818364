import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { from, tap } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import { activationLayout, concatActivationBatches, hookMatrix, hookValues } from '../src/arrow/index.js';
import { float16ToFloat32, float32ToFloat16 } from '../src/io/float16.js';
import { UserError } from '../src/pipeline/errors.js';
import {
  type CacheManifest,
  cacheGeometry,
  cacheWriter,
  readActivationBatches,
  readManifest,
  saeflowVersion,
} from '../src/stages/cache/index.js';
import { HOOKS, collect, makeTempDir, syntheticBatch, syntheticStream } from './cache-test-helpers.js';

const cleanups: (() => void)[] = [];
afterEach(() => cleanups.splice(0).forEach((c) => c()));
function tempDir(): string {
  const t = makeTempDir('cache-writer');
  cleanups.push(t.cleanup);
  return join(t.dir, 'cache');
}

// Row = 16 bytes of ids + (16 + 8) float32 = 112 bytes; 0.01 MiB / 112 -> 93 rows per shard.
const SMALL_SHARD_MB = 0.01;
const ROWS_PER_SHARD = 93;

async function readAll(dir: string) {
  const batches = [];
  for await (const b of readActivationBatches({ path: dir, batchRows: 1000 })) batches.push(b);
  return concatActivationBatches(batches);
}

describe('cache writer', () => {
  it('cuts shards by row count, records them in the manifest and emits a summary per shard', async () => {
    const dir = tempDir();
    const stream = syntheticStream([50, 120, 7, 80]); // 257 rows: 93 + 93 + 71
    const summaries = await collect(
      from(stream).pipe(
        cacheWriter({
          dir,
          shardSizeMb: SMALL_SHARD_MB,
          provenance: {
            model: 'gpt2',
            contextSize: 32,
            prependBos: true,
            dataset: 'moby-dick',
            tokenizer: 'gpt2',
          },
        }),
      ),
    );
    expect(summaries.map((s) => [s.shard, s.rows, s.totalRows])).toEqual([
      [0, 93, 93],
      [1, 93, 186],
      [2, 71, 257],
    ]);
    expect(readdirSync(dir).sort()).toEqual([
      'manifest.json',
      'shard-00000.parquet',
      'shard-00001.parquet',
      'shard-00002.parquet',
    ]);
    const manifest = readManifest(dir);
    expect(manifest).toMatchObject({
      format: 'saeflow-activation-cache',
      format_version: 1,
      saeflow_version: saeflowVersion(),
      model: 'gpt2',
      hooks: HOOKS.map((h) => ({ name: h.name, d: h.d })),
      dtype: 'float32',
      context_size: 32,
      prepend_bos: true,
      dataset: 'moby-dick',
      tokenizer: 'gpt2',
      compression: 'snappy',
      rows_per_shard: ROWS_PER_SHARD,
      has_ids: true,
      total_tokens: 257,
      complete: true,
    });
    expect(manifest.columns).toEqual([
      { name: 'seq', type: 'int64' },
      { name: 'pos', type: 'int32' },
      { name: 'token', type: 'int32' },
      { name: HOOKS[0]!.name, type: 'fixed_size_list<float32>[16]' },
      { name: HOOKS[1]!.name, type: 'fixed_size_list<float32>[8]' },
    ]);
    for (const [i, s] of summaries.entries()) {
      const bytes = readFileSync(s.path);
      expect(manifest.shards[i]).toEqual({
        file: `shard-0000${i}.parquet`,
        rows: s.rows,
        bytes: bytes.byteLength,
        sha256: createHash('sha256').update(bytes).digest('hex'),
      });
      expect(s.sha256).toBe(manifest.shards[i]!.sha256);
    }
    const back = await readAll(dir);
    const want = syntheticBatch(0, 257);
    for (const h of HOOKS) expect(hookMatrix(back, h.name)).toEqual(hookMatrix(want, h.name));
  });

  it('sizes shards from shardSizeMb and the row width only', () => {
    expect(cacheGeometry(112, SMALL_SHARD_MB)).toEqual({ rowsPerShard: 93, rowsPerRowGroup: 93 });
    // GPT-2 small residual stream, float32: 768 * 4 + 16 bytes a row; 32 MiB row groups rounded to 1024 rows.
    expect(cacheGeometry(768 * 4 + 16, 256)).toEqual({ rowsPerShard: 81920, rowsPerRowGroup: 10240 });
    expect(cacheGeometry(768 * 2 + 16, 256)).toEqual({ rowsPerShard: 172032, rowsPerRowGroup: 21504 });
  });

  it('converts to float16 on the way in and records the dtype', async () => {
    const dir = tempDir();
    const input = syntheticBatch(0, 100);
    await collect(from([input]).pipe(cacheWriter({ dir, dtype: 'float16', shardSizeMb: SMALL_SHARD_MB })));
    const manifest = readManifest(dir);
    expect(manifest.dtype).toBe('float16');
    expect(manifest.columns[3]).toEqual({ name: HOOKS[0]!.name, type: 'fixed_size_list<float16>[16]' });
    // Row = 16 + 24 * 2 bytes: more rows fit in a shard than with float32.
    expect(manifest.rows_per_shard).toBe(163);
    const back = await readAll(dir);
    expect(activationLayout(back).hooks.every((h) => h.dtype === 'float16')).toBe(true);
    for (const h of HOOKS) {
      const exact = float16ToFloat32(float32ToFloat16(hookMatrix(input, h.name)));
      expect(hookMatrix(back, h.name)).toEqual(exact);
    }
  });

  it('accepts float16 input for a float32 cache, and a subset of hooks in the order given', async () => {
    const dir = tempDir();
    const input = syntheticBatch(0, 40, HOOKS, 'float16');
    await collect(from([input]).pipe(cacheWriter({ dir, hooks: [HOOKS[1]!.name] })));
    const manifest = readManifest(dir);
    expect(manifest.hooks).toEqual([{ name: HOOKS[1]!.name, d: 8 }]);
    const back = await readAll(dir);
    expect(hookMatrix(back, HOOKS[1]!.name)).toEqual(
      float16ToFloat32(hookValues(input, HOOKS[1]!.name).values as Uint16Array),
    );
  });

  it.each(['none', 'snappy', 'zstd'] as const)(
    'writes %s-compressed shards that read back exactly',
    async (compression) => {
      const dir = tempDir();
      await collect(
        from(syntheticStream([64, 64])).pipe(cacheWriter({ dir, compression, shardSizeMb: SMALL_SHARD_MB })),
      );
      expect(readManifest(dir).compression).toBe(compression);
      const back = await readAll(dir);
      expect(hookMatrix(back, HOOKS[0]!.name)).toEqual(hookMatrix(syntheticBatch(0, 128), HOOKS[0]!.name));
    },
  );

  it('refuses to overwrite an existing cache unless asked to, and leaves no temporary files', async () => {
    const dir = tempDir();
    const write = (overwrite: boolean) =>
      collect(from(syntheticStream([30])).pipe(cacheWriter({ dir, overwrite, shardSizeMb: SMALL_SHARD_MB })));
    await write(false);
    await expect(write(false)).rejects.toThrow(UserError);
    await expect(write(false)).rejects.toThrow(/already holds an activation cache/);
    writeFileSync(join(dir, 'shard-00007.parquet'), 'stale');
    await write(true);
    expect(readdirSync(dir).sort()).toEqual(['manifest.json', 'shard-00000.parquet']);
  });

  it('reports bad options and unknown hooks as UserErrors', async () => {
    expect(() => cacheWriter({ dir: 'x', shardSizeMb: 0 })).toThrow(/shardSizeMb/);
    expect(() => cacheWriter({ dir: 'x', dtype: 'bfloat16' as never })).toThrow(
      /dtype must be float32 or float16/,
    );
    expect(() => cacheWriter({ dir: 'x', compression: 'lzo' as never })).toThrow(
      /compression must be one of none, snappy, zstd/,
    );
    const dir = tempDir();
    await expect(
      collect(from(syntheticStream([5])).pipe(cacheWriter({ dir, hooks: ['blocks.9.hook_z'] }))),
    ).rejects.toThrow(
      /hook blocks.9.hook_z is not in the activation batches; they have blocks.0.hook_resid_pre, blocks.1.hook_mlp_out/,
    );
    await expect(collect(from([]).pipe(cacheWriter({ dir: tempDir() })))).rejects.toThrow(
      /no activation batches arrived/,
    );
  });

  it('writes each shard under a .tmp name and renames it once complete', async () => {
    const dir = tempDir();
    mkdirSync(dir, { recursive: true });
    const seen: string[][] = [];
    const stream = syntheticStream([93, 93, 10]);
    await collect(
      from(stream).pipe(
        cacheWriter({ dir, shardSizeMb: SMALL_SHARD_MB }),
        // By the time a summary is emitted the shard has its final name and the manifest lists it.
        tap((s) => {
          seen.push(readdirSync(dir).sort());
          const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as CacheManifest;
          expect(m.shards.length).toBe(s.shard + 1);
          expect(statSync(s.path).size).toBe(s.bytes);
        }),
      ),
    );
    expect(seen.flat().some((n) => n.endsWith('.tmp'))).toBe(false);
    expect(existsSync(join(dir, 'shard-00002.parquet'))).toBe(true);
  });
});
