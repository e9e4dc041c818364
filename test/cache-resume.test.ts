import { mkdirSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { from, tap } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import type { ActivationBatch } from '../src/arrow/index.js';
import { Flow } from '../src/pipeline/flow.js';
import { fromPull } from '../src/pipeline/from-pull.js';
import {
  type CacheWriterOptions,
  cacheWriter,
  openCacheForResume,
  readManifest,
  skipActivationRows,
} from '../src/stages/cache/index.js';
import { collect, dirContents, makeTempDir, syntheticStream } from './cache-test-helpers.js';

const cleanups: (() => void)[] = [];
afterEach(() => cleanups.splice(0).forEach((c) => c()));
function tempDir(): string {
  const t = makeTempDir('cache-resume');
  cleanups.push(t.cleanup);
  return join(t.dir, 'cache');
}

// float16 rows of 16 + (16 + 8) * 2 bytes: 0.0057 MiB gives 93 rows per shard; 311 rows -> 93, 93, 93, 32.
const SIZES = [40, 75, 33, 90, 61, 12];
const OPTIONS = {
  shardSizeMb: 0.0057,
  dtype: 'float16',
  compression: 'snappy',
  provenance: { model: 'gpt2' },
} as const;

function stream(): ActivationBatch[] {
  return syntheticStream(SIZES);
}

async function writeAll(dir: string, batches: ActivationBatch[], extra: Partial<CacheWriterOptions> = {}) {
  return collect(from(batches).pipe(cacheWriter({ dir, ...OPTIONS, ...extra })));
}

async function reference(): Promise<Map<string, Buffer>> {
  const dir = tempDir();
  await writeAll(dir, stream());
  return dirContents(dir);
}

/** The interrupted cache continued: skip what it holds, feed the same stream again. */
async function resume(dir: string): Promise<void> {
  const { completeRows } = openCacheForResume(dir);
  await collect(
    from(stream()).pipe(skipActivationRows(completeRows), cacheWriter({ dir, ...OPTIONS, resume: true })),
  );
}

describe('resuming an activation cache', () => {
  it('after a crash, continues byte-identically to an uninterrupted run', async () => {
    const want = await reference();
    expect([...want.keys()]).toEqual([
      'manifest.json',
      'shard-00000.parquet',
      'shard-00001.parquet',
      'shard-00002.parquet',
      'shard-00003.parquet',
    ]);

    const dir = tempDir();
    // The upstream dies once 238 rows went in: two shards are complete, 52 rows were in memory. The flow
    // makes the source wait for the writer, as in a real pipeline.
    const flow = new Flow(1);
    function* crashing() {
      let rows = 0;
      for (const b of stream()) {
        if (rows >= 200) throw new Error('model crashed');
        rows += b.numRows;
        yield b;
      }
    }
    await expect(
      collect(fromPull(crashing(), flow).pipe(cacheWriter({ dir, ...OPTIONS, flow }))),
    ).rejects.toThrow('model crashed');
    expect(readManifest(dir).shards.length).toBe(2);
    expect(readManifest(dir).complete).toBe(false);
    // Debris of a crash in the middle of the next shard: its temp file, and a renamed shard the manifest missed.
    writeFileSync(join(dir, 'shard-00002.parquet.tmp'), 'half a shard');
    writeFileSync(join(dir, 'shard-00002.parquet'), 'unlisted');

    const state = openCacheForResume(dir);
    expect(state.completeRows).toBe(186);
    expect([...state.removedFiles].sort()).toEqual(['shard-00002.parquet', 'shard-00002.parquet.tmp']);
    expect(state.droppedShards).toEqual([]);
    await resume(dir);
    expect(dirContents(dir)).toEqual(want);
  });

  it('after a clean stop, rewrites the partial last shard and matches the uninterrupted run', async () => {
    const want = await reference();
    const dir = tempDir();
    const flow = new Flow(2);
    let rows = 0;
    const stopAfter148 = tap((b: ActivationBatch) => {
      rows += b.numRows;
      if (rows >= 148) flow.stop(); // Ctrl-C after the third batch
    });
    const out = await collect(
      fromPull(stream(), flow).pipe(stopAfter148, cacheWriter({ dir, ...OPTIONS, flow })),
    );
    expect(out.map((s) => s.rows)).toEqual([93, 55]);
    const stopped = readManifest(dir);
    expect(stopped.complete).toBe(false);
    expect(stopped.total_tokens).toBe(148);

    const state = openCacheForResume(dir);
    expect(state.completeRows).toBe(93);
    expect(state.droppedShards).toEqual(['shard-00001.parquet']);
    expect(readManifest(dir).total_tokens).toBe(93);
    // Idempotent: a second look changes nothing.
    expect(openCacheForResume(dir).completeRows).toBe(93);
    await resume(dir);
    expect(dirContents(dir)).toEqual(want);
  });

  it('drops a missing or truncated shard and everything after it', async () => {
    const want = await reference();
    const dir = tempDir();
    await writeAll(dir, stream());
    truncateSync(join(dir, 'shard-00001.parquet'), 100);
    let state = openCacheForResume(dir);
    expect(state.completeRows).toBe(93);
    expect(state.droppedShards).toEqual([
      'shard-00001.parquet',
      'shard-00002.parquet',
      'shard-00003.parquet',
    ]);
    await resume(dir);
    expect(dirContents(dir)).toEqual(want);

    unlinkSync(join(dir, 'shard-00002.parquet'));
    state = openCacheForResume(dir);
    expect(state.completeRows).toBe(186);
    await resume(dir);
    expect(dirContents(dir)).toEqual(want);
  });

  it('cleans up only its own leftovers in a directory it shares (a run directory)', async () => {
    const dir = tempDir();
    await writeAll(dir, stream().slice(0, 3));
    const others = ['config.json', 'run.log', 'state.json.4242.0a1b2c3d.tmp', 'notes.tmp'];
    for (const name of others) writeFileSync(join(dir, name), 'not ours');
    writeFileSync(join(dir, 'manifest.json.4242.0a1b2c3d.tmp'), '{');
    writeFileSync(join(dir, 'shard-00005.parquet.tmp'), 'half a shard');
    const state = openCacheForResume(dir);
    expect([...state.removedFiles].sort()).toEqual([
      'manifest.json.4242.0a1b2c3d.tmp',
      'shard-00005.parquet.tmp',
    ]);
    expect([...dirContents(dir).keys()].filter((n) => others.includes(n)).sort()).toEqual([...others].sort());
    // Overwriting a cache leaves the neighbours alone too.
    await writeAll(dir, stream().slice(0, 1), { overwrite: true });
    expect([...dirContents(dir).keys()].sort()).toEqual(
      [...others, 'manifest.json', 'shard-00000.parquet'].sort(),
    );
  });

  it('resuming a complete cache rewrites only its short last shard', async () => {
    const want = await reference();
    const dir = tempDir();
    await writeAll(dir, stream());
    expect(openCacheForResume(dir).completeRows).toBe(279);
    await resume(dir);
    expect(dirContents(dir)).toEqual(want);
  });

  it('starts from scratch when there is nothing to resume', async () => {
    const dir = tempDir();
    expect(openCacheForResume(dir)).toEqual({
      completeRows: 0,
      manifest: null,
      droppedShards: [],
      removedFiles: [],
    });
    await resume(dir);
    expect(dirContents(dir)).toEqual(await reference());
  });

  it('refuses to resume with different options or into a directory it does not understand', async () => {
    const dir = tempDir();
    await writeAll(dir, stream().slice(0, 2));
    const attempt = (extra: Partial<CacheWriterOptions>) =>
      collect(from(stream()).pipe(cacheWriter({ dir, ...OPTIONS, ...extra, resume: true })));
    await expect(attempt({ dtype: 'float32' })).rejects.toThrow(
      /manifest.json: cannot resume, the cache was written with dtype "float16" but this run has "float32"/,
    );
    await expect(attempt({ provenance: { model: 'gpt2-medium' } })).rejects.toThrow(
      /with model "gpt2" but this run has "gpt2-medium"/,
    );
    await expect(attempt({ shardSizeMb: 1 })).rejects.toThrow(/rows_per_shard/);
    await expect(attempt({ hooks: ['blocks.0.hook_resid_pre'] })).rejects.toThrow(/with hooks/);

    const odd = tempDir();
    mkdirSync(odd, { recursive: true });
    writeFileSync(join(odd, 'shard-00000.parquet'), 'x');
    expect(() => openCacheForResume(odd)).toThrow(/has 1 shard file\(s\) but no manifest.json/);
    rmSync(join(odd, 'shard-00000.parquet'));
    writeFileSync(join(odd, 'manifest.json'), '{"format": "something-else"}');
    expect(() => openCacheForResume(odd)).toThrow(
      /manifest.json: field format must be "saeflow-activation-cache"/,
    );
  });
});
