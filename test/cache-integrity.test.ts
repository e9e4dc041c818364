import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { from } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cacheReader, cacheWriter } from '../src/stages/cache/index.js';
import { HOOKS, collect, makeTempDir, noiseValue, syntheticStream } from './cache-test-helpers.js';

let base: { dir: string; cleanup: () => void };
let cache: string;

beforeAll(async () => {
  base = makeTempDir('cache-integrity');
  cache = join(base.dir, 'cache');
  // Uncompressed, so that a value can be found and damaged in place.
  await collect(from(syntheticStream([100, 100])).pipe(cacheWriter({ dir: cache, compression: 'none' })));
});
afterAll(() => base.cleanup());

const read = (path: string, verifyChecksums = true) => collect(cacheReader({ path, verifyChecksums }));
let copies = 0;

/** A copy of shard 0 with the exponent byte of one stored activation (row 5, hook 0, element 3) set high. */
function damagedShard(): Buffer {
  const bytes = readFileSync(join(cache, 'shard-00000.parquet'));
  const value = Buffer.alloc(4);
  value.writeFloatLE(noiseValue(5, 3, 0));
  const at = bytes.indexOf(value);
  expect(at).toBeGreaterThan(0);
  bytes[at + 3] = 0x7f;
  return bytes;
}

function copyOfCache(): string {
  const dir = join(base.dir, `copy-${copies++}`);
  mkdirSync(dir);
  for (const f of ['manifest.json', 'shard-00000.parquet']) copyFileSync(join(cache, f), join(dir, f));
  return dir;
}

describe('activation integrity', () => {
  it('a damaged shard named by its own path inside a cache is checked against the manifest', async () => {
    const dir = copyOfCache();
    writeFileSync(join(dir, 'shard-00000.parquet'), damagedShard());
    await expect(read(join(dir, 'shard-00000.parquet'))).rejects.toThrow(
      /shard-00000\.parquet: sha256 is [0-9a-f]+ but manifest\.json says/,
    );
  });

  it('an intact shard named by its own path reads its rows only', async () => {
    const batches = await read(join(cache, 'shard-00000.parquet'));
    expect(batches.reduce((n, b) => n + b.numRows, 0)).toBeGreaterThan(0);
  });

  it('a Parquet file in a cache directory that the manifest does not list is refused', async () => {
    const dir = copyOfCache();
    copyFileSync(join(dir, 'shard-00000.parquet'), join(dir, 'extra.parquet'));
    await expect(read(join(dir, 'extra.parquet'))).rejects.toThrow(/does not list extra\.parquet/);
  });

  it('a damaged shard in plain Parquet (no manifest) fails its page checksum, naming the page', async () => {
    const dir = join(base.dir, `plain-${copies++}`);
    mkdirSync(dir);
    writeFileSync(join(dir, 'part-0.parquet'), damagedShard());
    await expect(read(dir)).rejects.toThrow(
      new RegExp(
        `part-0\\.parquet: page checksum mismatch in row group 0, column \\d+ \\(${HOOKS[0]!.name.replace(/\./g, '\\.')}\\.list\\.item\\), page at byte \\d+`,
      ),
    );
  });

  it('damaged values in plain Parquet read unchecked are reported with file, row, column and element', async () => {
    // What stands between flipped bytes and training in files without page checksums.
    const dir = join(base.dir, `plain-${copies++}`);
    mkdirSync(dir);
    writeFileSync(join(dir, 'part-0.parquet'), damagedShard());
    await expect(read(dir, false)).rejects.toThrow(
      new RegExp(
        `part-0\\.parquet: column ${HOOKS[0]!.name.replace(/\./g, '\\.')}, row 5, element 3: .*(implausibly large|non-finite)`,
      ),
    );
  });
});
