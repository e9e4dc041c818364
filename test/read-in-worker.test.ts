/**
 * The cache reader in a worker thread gives what the reader on the main thread gives: the same batches in
 * the same order (ids and every hook, float16 included), the same start row, the same UserErrors naming the
 * file, and it stops its worker when the consumer stops early.
 */
import { join } from 'node:path';
import { truncateSync } from 'node:fs';
import { from } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { activationIds, activationLayout, hookValues, type ActivationBatch } from '../src/arrow/index.js';
import { UserError } from '../src/pipeline/errors.js';
import { cacheReader, cacheWriter, type CacheReaderOptions } from '../src/stages/cache/index.js';
import { readActivationBatchesInWorker } from '../src/stages/cache/read-in-worker.js';
import { collect, makeTempDir, syntheticStream } from './cache-test-helpers.js';

let base: { dir: string; cleanup: () => void };
let cache: string;
let cache16: string;

beforeAll(async () => {
  base = makeTempDir('read-in-worker');
  cache = join(base.dir, 'cache');
  cache16 = join(base.dir, 'cache16');
  await collect(from(syntheticStream([100, 100, 100])).pipe(cacheWriter({ dir: cache, shardSizeMb: 0.01 })));
  await collect(
    from(syntheticStream([70, 50])).pipe(cacheWriter({ dir: cache16, shardSizeMb: 0.01, dtype: 'float16' })),
  );
});
afterAll(() => base.cleanup());

function contents(batches: ActivationBatch[]) {
  return batches.map((b) => {
    const layout = activationLayout(b);
    const ids = activationIds(b);
    return {
      layout,
      rows: b.numRows,
      ids: ids && { seq: [...ids.seq], pos: [...ids.pos], token: [...ids.token] },
      hooks: layout.hooks.map((h) => [...hookValues(b, h.name).values]),
    };
  });
}

async function both(options: CacheReaderOptions) {
  const here = await collect(cacheReader(options));
  const there = await collect(cacheReader({ ...options, inWorker: true }));
  return { here, there };
}

describe('cache reader in a worker thread', () => {
  it('gives the same batches, float32 and float16, from any start row', async () => {
    for (const options of [
      { path: cache, batchRows: 64 },
      { path: cache, batchRows: 50, startRow: 150 },
      { path: cache16, batchRows: 32 },
    ]) {
      const { here, there } = await both(options);
      expect(there.length).toBeGreaterThan(1);
      expect(contents(there)).toEqual(contents(here));
      if (options.path === cache16) expect(activationLayout(there[0]!).hooks[0]!.dtype).toBe('float16');
    }
  });

  it('raises the reader UserError, naming the file', async () => {
    const damaged = join(base.dir, 'damaged');
    await collect(from(syntheticStream([100, 100])).pipe(cacheWriter({ dir: damaged, shardSizeMb: 0.01 })));
    truncateSync(join(damaged, 'shard-00001.parquet'), 100);
    const err = await collect(cacheReader({ path: damaged, batchRows: 64, inWorker: true })).catch((e) => e);
    expect(err).toBeInstanceOf(UserError);
    expect(String(err.message)).toContain('shard-00001.parquet');
  });

  it('ends its worker when the consumer stops early', async () => {
    const batches = readActivationBatchesInWorker({ path: cache, batchRows: 16 });
    const first = await batches.next();
    expect(first.done).toBe(false);
    // return() runs the generator's finally, which terminates the worker; a second call finds it done.
    await batches.return(undefined);
    expect((await batches.next()).done).toBe(true);
  });
});
