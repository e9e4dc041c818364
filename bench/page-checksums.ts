// What Parquet page checksums cost: encoding a shard with and without them (the rewrite of parquet-wasm's
// output, src/io/parquet-pages/add-page-checksums.ts), verifying them alone, and reading the shard as plain
// Parquet through cacheReader with verifyChecksums on (page CRCs checked) and off. sha256 of the same file,
// what a cache shard's manifest check costs, is measured for comparison. Best of --reps runs.
//
//   npx tsx bench/page-checksums.ts [--rows 40000] [--d 768] [--reps 3] [--compression snappy|none|zstd]
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { lastValueFrom, reduce } from 'rxjs';
import { makeActivationBatch } from '../src/arrow/activation-batch.js';
import { addPageChecksums, verifyPageChecksums } from '../src/io/parquet-pages/index.js';
import { sha256File } from '../src/io/sha256.js';
import { type ParquetCompression, cacheReader, encodeParquet } from '../src/stages/cache/index.js';
import { Mulberry32 } from '../src/util/random.js';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '40000' },
    d: { type: 'string', default: '768' },
    reps: { type: 'string', default: '3' },
    compression: { type: 'string', default: 'snappy' },
  },
});
const rows = Number(values.rows);
const d = Number(values.d);
const reps = Number(values.reps);
const compression = values.compression as ParquetCompression;
const hook = 'blocks.8.hook_resid_pre';

const rng = new Mulberry32(1);
const data = new Float32Array(rows * d);
for (let i = 0; i < data.length; i++) data[i] = rng.next() + rng.next() - 1;
const batch = makeActivationBatch({
  seq: Array.from({ length: rows }, (_, i) => Math.floor(i / 128)),
  pos: Int32Array.from({ length: rows }, (_, i) => i % 128),
  token: new Int32Array(rows).fill(7),
  hooks: { [hook]: { data, d } },
});
const logicalMb = (rows * (d * 4 + 16)) / 1e6;
// As the cache writer sizes them: about 32 MiB row groups, a multiple of 1024 rows.
const rowGroupRows = Math.max(1024, Math.floor((32 * 2 ** 20) / (d * 4 + 16) / 1024) * 1024);

/**
 * Best wall time and best CPU time (user + system, all threads of this process) of `reps` runs. On a shared
 * machine the wall time includes waiting for a core; the CPU time is what the work itself costs.
 */
async function best<T>(run: () => T | Promise<T>): Promise<{ seconds: number; cpu: number; value: T }> {
  let seconds = Infinity;
  let cpu = Infinity;
  let value: T | undefined;
  for (let i = 0; i < reps; i++) {
    const t = performance.now();
    const c = process.cpuUsage();
    value = await run();
    const used = process.cpuUsage(c);
    seconds = Math.min(seconds, (performance.now() - t) / 1000);
    cpu = Math.min(cpu, (used.user + used.system) / 1e6);
  }
  return { seconds, cpu, value: value as T };
}

const dir = mkdtempSync(path.join(tmpdir(), 'saeflow-bench-crc-'));
try {
  const options = { compression, rowGroupRows };
  const plain = await best(() => encodeParquet(batch, { ...options, pageChecksums: false }));
  const withCrc = await best(() => encodeParquet(batch, options));
  const rewrite = await best(() => addPageChecksums(plain.value));
  const fileMb = withCrc.value.length / 1e6;

  const plainDir = path.join(dir, 'plain');
  const crcDir = path.join(dir, 'crc');
  mkdirSync(plainDir);
  mkdirSync(crcDir);
  writeFileSync(path.join(plainDir, 'part.parquet'), plain.value);
  writeFileSync(path.join(crcDir, 'part.parquet'), withCrc.value);
  const crcFile = path.join(crcDir, 'part.parquet');

  const verify = await best(() => verifyPageChecksums(crcFile));
  const sha = await best(() => sha256File(crcFile));
  const read = (p: string, verifyChecksums: boolean) =>
    best(() =>
      lastValueFrom(cacheReader({ path: p, verifyChecksums }).pipe(reduce((n, b) => n + b.numRows, 0))),
    );
  const readPlainFile = await read(plainDir, true);
  const readChecked = await read(crcDir, true);
  const readUnchecked = await read(crcDir, false);
  if (readChecked.value !== rows) throw new Error(`read ${readChecked.value} rows, wrote ${rows}`);

  const rate = (s: number) => (logicalMb / s).toFixed(0);
  console.log(
    `${rows} rows x ${d} float32 (${logicalMb.toFixed(0)} MB in memory), ${compression}, ` +
      `${rowGroupRows}-row groups; file ${fileMb.toFixed(1)} MB, ${verify.value.pages} pages ` +
      `(${(withCrc.value.length - plain.value.length).toString()} bytes of checksums); best of ${reps}\n`,
  );
  console.log('| operation | wall s | MB/s | CPU s | MB per CPU s |\n|---|---|---|---|---|');
  const row = (what: string, r: { seconds: number; cpu: number }) =>
    console.log(
      `| ${what} | ${r.seconds.toFixed(3)} | ${rate(r.seconds)} | ${r.cpu.toFixed(3)} | ${rate(r.cpu)} |`,
    );
  row('encodeParquet, no page checksums', plain);
  row('encodeParquet with page checksums', withCrc);
  row('addPageChecksums alone', rewrite);
  row('verifyPageChecksums alone', verify);
  row('sha256File, what a cache shard is checked with', sha);
  row('cacheReader, plain file without page checksums', readPlainFile);
  row('cacheReader, plain file, page checksums verified', readChecked);
  row('cacheReader, same file, verifyChecksums false', readUnchecked);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
