import { readFileSync, writeFileSync } from 'node:fs';
import { Int32, RecordBatch, makeData } from 'apache-arrow';
import { join } from 'node:path';
import { parquetMetadata, parquetRead } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { from } from 'rxjs';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type ActivationBatch,
  type ActivationDtype,
  activationIds,
  activationLayout,
  concatActivationBatches,
  hookMatrix,
} from '../src/arrow/index.js';
import { float16ToFloat32, float32ToFloat16 } from '../src/io/float16.js';
import { UserError } from '../src/pipeline/errors.js';
import {
  type ParquetCompression,
  cacheReader,
  cacheWriter,
  encodeParquet,
  inspectActivationSource,
  readManifest,
} from '../src/stages/cache/index.js';
import {
  HOOKS,
  collect,
  formulaMatrix,
  makeTempDir,
  syntheticBatch,
  syntheticStream,
} from './cache-test-helpers.js';

const FIXTURES = 'test/fixtures/cache';
const temp = makeTempDir('cache-interop');
afterAll(() => temp.cleanup());

async function readAll(path: string, hooks?: string[]): Promise<ActivationBatch> {
  return concatActivationBatches(
    await collect(cacheReader({ path, batchRows: 1000, ...(hooks ? { hooks } : {}) })),
  );
}

/** A shard read by hyparquet, an independent JS Parquet implementation: columns as flat arrays. */
async function readWithHyparquet(path: string): Promise<Record<string, unknown[]>> {
  const bytes = readFileSync(path);
  const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  const metadata = parquetMetadata(file);
  const columns: Record<string, unknown[]> = {};
  await parquetRead({
    file,
    metadata,
    compressors,
    onChunk: (chunk) => {
      const target = (columns[chunk.columnName] ??= []);
      for (let i = 0; i < chunk.columnData.length; i++) target[chunk.rowStart + i] = chunk.columnData[i];
    },
  });
  return columns;
}

describe('our shards in another Parquet reader (hyparquet)', () => {
  const cases: [ActivationDtype, ParquetCompression][] = [
    ['float32', 'snappy'],
    ['float16', 'snappy'],
    ['float32', 'zstd'],
    ['float16', 'none'],
  ];
  it.each(cases)('%s / %s: every value and id is what we wrote', async (dtype, compression) => {
    const dir = join(temp.dir, `${dtype}-${compression}`);
    await collect(
      from(syntheticStream([70, 80])).pipe(cacheWriter({ dir, dtype, compression, shardSizeMb: 0.01 })),
    );
    const manifest = readManifest(dir);
    let first = 0;
    for (const shard of manifest.shards) {
      const got = await readWithHyparquet(join(dir, shard.file));
      const want = syntheticBatch(first, shard.rows);
      const ids = activationIds(want)!;
      expect(got.seq).toEqual([...ids.seq]);
      expect(got.pos).toEqual([...ids.pos]);
      expect(got.token).toEqual([...ids.token]);
      for (const h of HOOKS) {
        const values = hookMatrix(want, h.name);
        // What we stored: float32 as is, or rounded to float16 (hyparquet widens FLOAT16 to numbers).
        const stored = dtype === 'float16' ? float16ToFloat32(float32ToFloat16(values)) : values;
        const rows = got[h.name] as number[][];
        expect(rows.length).toBe(shard.rows);
        expect(Float32Array.from(rows.flat())).toEqual(stored);
      }
      first += shard.rows;
    }
  });
});

describe('Parquet files written by pyarrow (test/fixtures/cache/make_pyarrow_fixtures.py)', () => {
  function expectFormula(batch: ActivationBatch, hook: string, d: number, firstRow = 0): void {
    expect(hookMatrix(batch, hook)).toEqual(formulaMatrix(firstRow, batch.numRows, d));
  }

  it('fixed_size_list<float>[8] with ids', async () => {
    const batch = await readAll(join(FIXTURES, 'pyarrow-fsl-f32.parquet'));
    expect(activationLayout(batch)).toEqual({
      hasIds: true,
      hooks: [{ name: 'blocks.0.hook_resid_pre', d: 8, dtype: 'float32' }],
    });
    expectFormula(batch, 'blocks.0.hook_resid_pre', 8);
    const ids = activationIds(batch)!;
    expect([...ids.seq.slice(14, 18)]).toEqual([0n, 0n, 1n, 1n]);
    expect([...ids.pos.slice(14, 18)]).toEqual([14, 15, 0, 1]);
    expect(ids.token[3]).toBe((3 * 7919) % 50257);
  });

  it('list<float> of two widths, int64 ids, an unrelated column and no Arrow schema metadata', async () => {
    const path = join(FIXTURES, 'pyarrow-list-f32.parquet');
    const info = await inspectActivationSource(path);
    expect(info.hooks).toEqual([
      { name: 'blocks.0.hook_resid_pre', d: 8, dtype: 'float32' },
      { name: 'blocks.1.hook_mlp_out', d: 4, dtype: 'float32' },
    ]);
    expect(info.hasIds).toBe(true);
    const batch = await readAll(path);
    expectFormula(batch, 'blocks.0.hook_resid_pre', 8);
    expectFormula(batch, 'blocks.1.hook_mlp_out', 4);
    expect([...activationIds(batch)!.pos.slice(15, 17)]).toEqual([15, 0]);
    const only = await readAll(path, ['blocks.1.hook_mlp_out']);
    expect(activationLayout(only).hooks.map((h) => h.name)).toEqual(['blocks.1.hook_mlp_out']);
  });

  it('float16 (Parquet FLOAT16) in fixed-size and variable lists', async () => {
    const batch = await readAll(join(FIXTURES, 'pyarrow-f16.parquet'));
    expect(activationLayout(batch).hooks).toEqual([
      { name: 'hook_fixed', d: 8, dtype: 'float16' },
      { name: 'hook_list', d: 8, dtype: 'float16' },
    ]);
    expectFormula(batch, 'hook_fixed', 8);
    expectFormula(batch, 'hook_list', 8);
  });

  it('float64 lists without ids, over several row groups', async () => {
    const batches = await collect(
      cacheReader({ path: join(FIXTURES, 'pyarrow-noids.parquet'), batchRows: 12 }),
    );
    expect(batches.map((b) => b.numRows)).toEqual([12, 12, 12, 12, 2]);
    const batch = concatActivationBatches(batches);
    expect(activationIds(batch)).toBeNull();
    expect(activationLayout(batch).hooks).toEqual([{ name: 'hook_f64', d: 6, dtype: 'float32' }]);
    expectFormula(batch, 'hook_f64', 6);
  });

  it('a directory of files, read in name order as one stream', async () => {
    const batch = await readAll(join(FIXTURES, 'pyarrow-dir'));
    expect(batch.numRows).toBe(55);
    expectFormula(batch, 'hook', 8);
    expect(activationIds(batch)!.pos[30]).toBe(30 % 16);
  });

  it('ragged lists and null rows are UserErrors naming the file, column and row', async () => {
    await expect(readAll(join(FIXTURES, 'pyarrow-ragged.parquet'))).rejects.toThrow(
      /pyarrow-ragged\.parquet: column hook, row 5: a list of 7 values, expected 8/,
    );
    const err = await readAll(join(FIXTURES, 'pyarrow-null-row.parquet')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(
      /pyarrow-null-row\.parquet: column hook, row 3: null instead of a list of 8 values/,
    );
  });

  it('a file that is not Parquet, or has no activation columns', async () => {
    await expect(readAll(join(FIXTURES, 'make_pyarrow_fixtures.py'))).rejects.toThrow(
      /make_pyarrow_fixtures\.py: not a readable Parquet file/,
    );
    const path = join(temp.dir, 'ids-only.parquet');
    const ids = new RecordBatch({
      pos: makeData({ type: new Int32(), length: 3, data: Int32Array.of(0, 1, 2) }),
    });
    writeFileSync(path, encodeParquet(ids, { compression: 'snappy', rowGroupRows: 10 }));
    await expect(readAll(path)).rejects.toThrow(
      /ids-only\.parquet: no activation columns \(lists of floats, one row per token\); it has pos: Int32/,
    );
  });

  it('re-caches a pyarrow file with our writer', async () => {
    const dir = join(temp.dir, 'recached');
    const source = join(FIXTURES, 'pyarrow-list-f32.parquet');
    await collect(cacheReader({ path: source, batchRows: 7 }).pipe(cacheWriter({ dir, dtype: 'float16' })));
    const batch = await readAll(dir);
    expect(batch.numRows).toBe(40);
    expectFormula(batch, 'blocks.1.hook_mlp_out', 4);
  });
});
