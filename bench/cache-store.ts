// Activation cache and store throughput, against the physical limit measured in the same run:
//  - write: cacheWriter (Parquet shards) vs writing the same bytes as a plain file copy;
//  - read: cacheReader vs reading those shard files back raw;
//  - store: cacheReader -> activationStore (SAELens mixing buffer) tokens/s and peak RSS, each measured in a
//    fresh process that streams the cache (several passes, at least 3x the buffer), for the reader alone and
//    for two buffer sizes: the store's memory is the growth with the buffer (the slope between the two),
//    the reader's (parquet-wasm's heap, Arrow batches) a fixed overhead that does not depend on it.
//
//   npx tsx bench/cache-store.ts [--rows 100000] [--d 768] [--dtype float32|float16] [--buffer_batches 4,16]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { defer, from, lastValueFrom, reduce, repeat } from 'rxjs';
import { makeActivationBatch } from '../src/arrow/activation-batch.js';
import { Flow } from '../src/pipeline/flow.js';
import { cacheReader, cacheWriter } from '../src/stages/cache/index.js';
import { activationStore } from '../src/stages/store/index.js';
import { Mulberry32 } from '../src/util/random.js';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '100000' },
    d: { type: 'string', default: '768' },
    dtype: { type: 'string', default: 'float32' },
    batch_tokens: { type: 'string', default: '4096' },
    buffer_batches: { type: 'string', default: '4,16' },
    passes: { type: 'string', default: '1' },
    stream: { type: 'string' },
  },
});
const rows = Number(values.rows);
const d = Number(values.d);
const dtype = values.dtype as 'float32' | 'float16';
const batchTokens = Number(values.batch_tokens);
const bufferSizes = values.buffer_batches.split(',').map(Number);
const hook = 'blocks.8.hook_resid_pre';
const mb = (bytes: number) => bytes / 1e6;

/** Streams `passes` passes over the cache through a store of `bufferBatches` batches (0: the reader alone). */
async function streamThroughStore(cache: string, bufferBatches: number, passes: number): Promise<void> {
  const base = process.memoryUsage().rss;
  let peak = base;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  const t0 = performance.now();
  const flow = new Flow(4);
  const reader = defer(() => cacheReader({ path: cache, hooks: [hook], flow })).pipe(repeat(passes));
  const count =
    bufferBatches === 0
      ? reader.pipe(reduce((n, b) => n + b.numRows, 0))
      : reader.pipe(
          activationStore({
            hooks: [hook],
            trainBatchSizeTokens: batchTokens,
            nBatchesInBuffer: bufferBatches,
            seed: 0,
          }),
          reduce((n, b) => n + b.rows, 0),
        );
  const served = await lastValueFrom(count);
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(timer);
  const result = { tokens_per_s: served / seconds, base_rss_mb: mb(base), peak_rss_mb: mb(peak) };
  console.log(JSON.stringify(result));
}

if (values.stream) {
  await streamThroughStore(values.stream, bufferSizes[0] as number, Number(values.passes));
  process.exit(0);
}

const dir = mkdtempSync(path.join(tmpdir(), 'saeflow-bench-cache-'));
const cacheDir = path.join(dir, 'cache');
// Input: 4096-row activation batches of values with incompressible mantissas, like real activations.
const rng = new Mulberry32(1);
const batches = [];
for (let start = 0; start < rows; start += 4096) {
  const n = Math.min(4096, rows - start);
  const data = new Float32Array(n * d);
  for (let i = 0; i < data.length; i++) data[i] = rng.next() + rng.next() - 1;
  batches.push(
    makeActivationBatch({
      seq: Array.from({ length: n }, (_, i) => Math.floor((start + i) / 128)),
      pos: Int32Array.from({ length: n }, (_, i) => (start + i) % 128),
      token: new Int32Array(n).fill(7),
      hooks: { [hook]: { data, d } },
    }),
  );
}
const logicalBytes = rows * (d * (dtype === 'float16' ? 2 : 4) + 16);

let t = performance.now();
await lastValueFrom(from(batches).pipe(cacheWriter({ dir: cacheDir, dtype, shardSizeMb: 64 })));
const writeSeconds = (performance.now() - t) / 1000;
const shards = readdirSync(cacheDir)
  .filter((f) => f.endsWith('.parquet'))
  .map((f) => path.join(cacheDir, f));
const diskBytes = shards.reduce((s, f) => s + statSync(f).size, 0);

t = performance.now();
for (const [i, f] of shards.entries()) writeFileSync(path.join(dir, `copy-${i}`), readFileSync(f));
const copySeconds = (performance.now() - t) / 1000;
t = performance.now();
for (const f of shards) readFileSync(f);
const rawReadSeconds = (performance.now() - t) / 1000;

t = performance.now();
const readRows = await lastValueFrom(
  cacheReader({ path: cacheDir, hooks: [hook] }).pipe(reduce((n, b) => n + b.numRows, 0)),
);
const readSeconds = (performance.now() - t) / 1000;

interface StreamResult {
  tokens_per_s: number;
  base_rss_mb: number;
  peak_rss_mb: number;
}
const bufferMb = (batches: number) => mb(batches * batchTokens * d * 4);
const passesFor = (batches: number) => Math.max(2, Math.ceil((3 * batches * batchTokens) / rows));
function stream(bufferBatches: number, passes: number): StreamResult {
  const args = ['--stream', cacheDir, '--buffer_batches', String(bufferBatches), '--passes', String(passes)];
  const child = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1), ...args], {
    encoding: 'utf8',
  });
  if (child.status !== 0) throw new Error(child.stderr);
  return JSON.parse(child.stdout.trim().split('\n').at(-1) as string) as StreamResult;
}
const above = (r: StreamResult) => r.peak_rss_mb - r.base_rss_mb;
const largest = Math.max(...bufferSizes);
const readerAlone = stream(0, passesFor(largest));
const stores = bufferSizes.map((b) => ({ batches: b, result: stream(b, passesFor(largest)) }));
const store = stores.at(-1)!.result;

console.log(
  `${rows} rows x ${d} ${dtype}: ${mb(logicalBytes).toFixed(0)} MB in memory, ${mb(diskBytes).toFixed(0)} MB on disk in ${shards.length} shard(s)`,
);
console.log('| operation | MB/s | tokens/s | vs physical limit |\n|---|---|---|---|');
console.log(
  `| plain file copy of the shards (read + write) | ${(mb(diskBytes) / copySeconds).toFixed(0)} | - | 1 |`,
);
console.log(
  `| cacheWriter (snappy) | ${(mb(logicalBytes) / writeSeconds).toFixed(0)} | ${(rows / writeSeconds).toFixed(0)} | ${(copySeconds / writeSeconds).toFixed(3)} |`,
);
console.log(`| plain file read of the shards | ${(mb(diskBytes) / rawReadSeconds).toFixed(0)} | - | 1 |`);
console.log(
  `| cacheReader (checksums on) | ${(mb(logicalBytes) / readSeconds).toFixed(0)} | ${(readRows / readSeconds).toFixed(0)} | ${(rawReadSeconds / readSeconds).toFixed(3)} |`,
);
console.log(`| cacheReader -> activationStore | - | ${store.tokens_per_s.toFixed(0)} | - |`);
const passes = passesFor(largest);
console.log(
  `streaming ${passes} passes over the cache (${((passes * rows * d * 4) / (largest * batchTokens * d * 4)).toFixed(1)}x the largest buffer), peak RSS above the process's start:`,
);
console.log(
  `  reader alone: ${above(readerAlone).toFixed(0)} MB (the fixed overhead: parquet-wasm's heap, Arrow batches)`,
);
for (const { batches, result } of stores) {
  const b = bufferMb(batches);
  console.log(
    `  reader + store, buffer ${batches} x ${batchTokens} tokens = ${b.toFixed(0)} MB: ${above(result).toFixed(0)} MB = ` +
      `${(above(result) / b).toFixed(2)}x the buffer; the store's share (above the reader alone) ${((above(result) - above(readerAlone)) / b).toFixed(2)}x`,
  );
}
if (stores.length >= 2) {
  const [lo, hi] = [stores[0]!, stores.at(-1)!];
  const slope = (above(hi.result) - above(lo.result)) / (bufferMb(hi.batches) - bufferMb(lo.batches));
  const overhead = above(lo.result) - slope * bufferMb(lo.batches);
  console.log(
    `  peak = ${slope.toFixed(2)}x the buffer + ${overhead.toFixed(0)} MB (fit through the two buffer sizes; the target is under 2x plus a fixed overhead)`,
  );
}
rmSync(dir, { recursive: true, force: true });
