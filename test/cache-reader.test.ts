import { cpSync, readFileSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { concatMap, from, of } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ActivationBatch,
  activationIds,
  activationLayout,
  concatActivationBatches,
  hookMatrix,
} from '../src/arrow/index.js';
import { UserError } from '../src/pipeline/errors.js';
import { Flow } from '../src/pipeline/flow.js';
import { asyncStage } from '../src/pipeline/async-stage.js';
import {
  type CacheManifest,
  type CacheReaderOptions,
  cacheReader,
  cacheWriter,
  inspectActivationSource,
} from '../src/stages/cache/index.js';
import { HOOKS, collect, makeTempDir, syntheticBatch, syntheticStream } from './cache-test-helpers.js';

// 93 rows per shard; 300 rows -> 93, 93, 93, 21.
const ROWS = 300;
let base: { dir: string; cleanup: () => void };
let cache: string;

beforeAll(async () => {
  base = makeTempDir('cache-reader');
  cache = join(base.dir, 'cache');
  await collect(from(syntheticStream([100, 100, 100])).pipe(cacheWriter({ dir: cache, shardSizeMb: 0.01 })));
});
afterAll(() => base.cleanup());

/** A private copy of the shared cache, to damage. */
let copies = 0;
function copyOfCache(): string {
  const dir = join(base.dir, `copy-${copies++}`);
  cpSync(cache, dir, { recursive: true });
  return dir;
}

function read(options: Partial<CacheReaderOptions> & { path?: string } = {}) {
  return collect(cacheReader({ path: cache, ...options }));
}

describe('cache reader', () => {
  it('streams the rows back in order, in batches of batchRows', async () => {
    const batches = await read({ batchRows: 64 });
    expect(batches.map((b) => b.numRows)).toEqual([64, 64, 64, 64, 44]);
    const all = concatActivationBatches(batches);
    const want = syntheticBatch(0, ROWS);
    for (const h of HOOKS) expect(hookMatrix(all, h.name)).toEqual(hookMatrix(want, h.name));
    expect([...(activationIds(all)?.seq ?? [])]).toEqual([...(activationIds(want)?.seq ?? [])]);
    expect([...(activationIds(all)?.token ?? [])]).toEqual([...(activationIds(want)?.token ?? [])]);
  });

  it('starts at startRow, mid-shard, with batches counted from there', async () => {
    const batches = await read({ batchRows: 64, startRow: 150 });
    expect(batches.map((b) => b.numRows)).toEqual([64, 64, 22]);
    const all = concatActivationBatches(batches);
    const want = syntheticBatch(150, ROWS - 150);
    for (const h of HOOKS) expect(hookMatrix(all, h.name)).toEqual(hookMatrix(want, h.name));
    expect([...(activationIds(all)?.seq ?? [])]).toEqual([...(activationIds(want)?.seq ?? [])]);
    expect(await read({ startRow: ROWS })).toEqual([]);
    expect(() => cacheReader({ path: cache, startRow: -1 })).toThrow(/startRow must be a row number/);
  });

  it('seeking neither opens nor hashes the shards before startRow', async () => {
    const dir = copyOfCache();
    const shard = join(dir, 'shard-00000.parquet');
    const bytes = readFileSync(shard);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (bytes[i] as number) ^ 0xff;
    writeFileSync(shard, bytes);
    await expect(read({ path: dir })).rejects.toThrow(/shard-00000\.parquet: sha256 is/);
    const rest = await read({ path: dir, startRow: 93 });
    expect(rest.reduce((n, b) => n + b.numRows, 0)).toBe(ROWS - 93);
  });

  it('reads only the hooks asked for, in that order, and can leave out the ids', async () => {
    const name = HOOKS[1]!.name;
    const batches = await read({ hooks: [name], includeIds: false, batchRows: 1000 });
    expect(batches.length).toBe(1);
    expect(activationLayout(batches[0]!)).toEqual({
      hasIds: false,
      hooks: [{ name, d: 8, dtype: 'float32' }],
    });
    expect(hookMatrix(batches[0]!, name)).toEqual(hookMatrix(syntheticBatch(0, ROWS), name));
  });

  it('names the hooks it has when asked for one it does not', async () => {
    const err = await read({ hooks: ['blocks.5.hook_resid_post'] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toBe(
      `hook blocks.5.hook_resid_post is not in the cache ${cache}; it has blocks.0.hook_resid_pre, blocks.1.hook_mlp_out`,
    );
  });

  it('describes a cache without reading its data', async () => {
    const info = await inspectActivationSource(cache);
    expect(info.kind).toBe('cache');
    expect(info.totalRows).toBe(ROWS);
    expect(info.files.map((f) => f.rows)).toEqual([93, 93, 93, 21]);
    expect(info.hooks).toEqual(HOOKS.map((h) => ({ ...h, dtype: 'float32' })));
  });

  describe('damaged caches', () => {
    async function expectUserError(dir: string, pattern: RegExp, options: Partial<CacheReaderOptions> = {}) {
      const err = await read({ path: dir, ...options }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UserError);
      expect((err as Error).message).toMatch(pattern);
    }

    it('a corrupt shard fails its checksum', async () => {
      const dir = copyOfCache();
      const shard = join(dir, 'shard-00002.parquet');
      const bytes = readFileSync(shard);
      for (let i = 1000; i < 1010; i++) bytes[i] = (bytes[i] as number) ^ 0xff;
      writeFileSync(shard, bytes);
      await expectUserError(
        dir,
        /shard-00002\.parquet: sha256 is [0-9a-f]{64} but manifest.json says [0-9a-f]{64} \(corrupt shard\)/,
      );
    });

    it('a shard with a corrupt footer fails even without checksums', async () => {
      const dir = copyOfCache();
      const shard = join(dir, 'shard-00001.parquet');
      const bytes = readFileSync(shard);
      for (let i = bytes.length - 60; i < bytes.length - 8; i++) bytes[i] = 0xee;
      writeFileSync(shard, bytes);
      await expectUserError(dir, /shard-00001\.parquet: not a readable Parquet file/, {
        verifyChecksums: false,
      });
    });

    it('a truncated shard is reported before any data is read', async () => {
      const dir = copyOfCache();
      truncateSync(join(dir, 'shard-00003.parquet'), 500);
      await expectUserError(
        dir,
        /shard-00003\.parquet: is 500 bytes but manifest.json says \d+ \(truncated or replaced\)/,
      );
      // Found when the source is opened, before the first (intact) shards are streamed.
      let batches = 0;
      const err = await collect(cacheReader({ path: dir }).pipe(concatMap((b) => (batches++, of(b))))).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(UserError);
      expect(batches).toBe(0);
    });

    it('a missing shard', async () => {
      const dir = copyOfCache();
      unlinkSync(join(dir, 'shard-00001.parquet'));
      await expectUserError(dir, /shard-00001\.parquet: missing \(listed in manifest.json\)/);
    });

    function editManifest(dir: string, edit: (m: CacheManifest & Record<string, unknown>) => object): void {
      const path = join(dir, 'manifest.json');
      const m = JSON.parse(readFileSync(path, 'utf8')) as CacheManifest & Record<string, unknown>;
      writeFileSync(path, JSON.stringify(edit(m)));
    }

    it('a manifest that disagrees with a shard on rows, width or dtype', async () => {
      let dir = copyOfCache();
      editManifest(dir, (m) => ({
        ...m,
        total_tokens: m.total_tokens - 1,
        shards: m.shards.map((s, i) => (i === 3 ? { ...s, rows: s.rows - 1 } : s)),
      }));
      await expectUserError(dir, /shard-00003\.parquet: holds 21 rows but manifest.json says 20/);

      dir = copyOfCache();
      editManifest(dir, (m) => ({ ...m, hooks: m.hooks.map((h, i) => (i === 0 ? { ...h, d: 32 } : h)) }));
      await expectUserError(
        dir,
        /shard-00000\.parquet: column blocks.0.hook_resid_pre has width 16, expected 32/,
      );

      dir = copyOfCache();
      editManifest(dir, (m) => ({ ...m, dtype: 'float16' }));
      await expectUserError(
        dir,
        /shard-00000\.parquet: column blocks.0.hook_resid_pre holds float32 values, expected float16/,
      );
    });

    it('an invalid manifest names the field', async () => {
      const dir = copyOfCache();
      editManifest(dir, (m) => ({
        ...m,
        shards: m.shards.map((s, i) => (i === 1 ? { ...s, sha256: 'abc' } : s)),
      }));
      await expectUserError(dir, /manifest.json: field shards\[1\]\.sha256 must be a hex sha256, got "abc"/);
      writeFileSync(join(dir, 'manifest.json'), '{ not json');
      await expectUserError(dir, /manifest.json: not valid JSON/);
    });
  });

  it('rejects bad options', () => {
    expect(() => cacheReader({ path: cache, batchRows: 0 })).toThrow(/batchRows must be a positive integer/);
    expect(() => cacheReader({ path: '' })).toThrow(UserError);
  });

  it('a missing path is a UserError', async () => {
    await expect(read({ path: join(base.dir, 'nope') })).rejects.toThrow(/nope: not found/);
  });

  it('pulls on demand: a slow consumer holds the reader back, and a stop ends the stream early', async () => {
    const flow = new Flow(2);
    let pulled = 0;
    const out = await collect(
      cacheReader({ path: cache, batchRows: 16, flow }).pipe(
        concatMap((b) => {
          pulled++;
          return of(b);
        }),
        asyncStage<ActivationBatch, number>(
          'slow',
          async (b, emit) => {
            await new Promise((r) => setTimeout(r, 2));
            if (pulled >= 6) flow.stop();
            emit(b.numRows);
          },
          { flow },
        ),
      ),
    );
    expect(flow.peakPending).toBeLessThanOrEqual(2);
    // Stopped after about six of the nineteen batches: the reader did not run ahead to the end.
    expect(out.length).toBeLessThan(10);
    expect(out.length).toBeGreaterThanOrEqual(6);
  });
});
