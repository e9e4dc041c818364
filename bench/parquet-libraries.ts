/**
 * Parquet libraries for the activation cache: write and read speed, file size and readability by pyarrow
 * (and DuckDB), on 768-wide float32 and float16 activations plus the seq/pos/token id columns; then our
 * cache writer and reader stages end to end.
 *
 *   npx tsx bench/parquet-libraries.ts [--rows 65536] [--d 768] [--reps 2] [--dir /tmp/saeflow-parquet-bench]
 *                                      [--python /path/to/python-with-pyarrow]
 *
 * Speeds are MB (10^6 bytes) of in-memory activation data, rows x (d x element bytes + 16), per second of
 * wall time, best of --reps runs. Results go to stdout as Markdown and to bench/results/parquet-libraries.json.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Table, tableFromIPC, tableToIPC } from 'apache-arrow';
import { parquetMetadata, parquetRead } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import * as parquetWasm from 'parquet-wasm';
import { from, lastValueFrom, toArray } from 'rxjs';
import {
  type ActivationBatch,
  type ActivationDtype,
  hookValues,
  makeActivationBatch,
} from '../src/arrow/index.js';
import { sha256File } from '../src/io/sha256.js';
import {
  type ParquetCompression,
  cacheReader,
  cacheWriter,
  encodeParquet,
  openParquet,
} from '../src/stages/cache/index.js';

const HOOK = 'blocks.8.hook_resid_pre';

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '65536' },
    d: { type: 'string', default: '768' },
    reps: { type: 'string', default: '2' },
    dir: { type: 'string', default: '/tmp/saeflow-parquet-bench' },
    python: { type: 'string' },
  },
});
const rows = Number(args.rows);
const d = Number(args.d);
const reps = Number(args.reps);
const dir = args.dir as string;
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });

/** Deterministic N(0, 1) samples (xorshift + Box-Muller): incompressible mantissas, like real activations. */
function gaussian(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return (s + 0.5) / 4294967296;
  };
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(next()));
    const t = 2 * Math.PI * next();
    out[i] = r * Math.cos(t);
    if (i + 1 < n) out[i + 1] = r * Math.sin(t);
  }
  return out;
}

function makeBatch(dtype: ActivationDtype): ActivationBatch {
  const seq = new BigInt64Array(rows);
  const pos = new Int32Array(rows);
  const token = new Int32Array(rows);
  for (let i = 0; i < rows; i++) {
    seq[i] = BigInt(Math.floor(i / 128));
    pos[i] = i % 128;
    token[i] = (i * 7919) % 50257;
  }
  return makeActivationBatch({
    seq,
    pos,
    token,
    hooks: { [HOOK]: { data: gaussian(rows * d, 42), d } },
    dtype,
  });
}

/** Best wall time of `reps` runs, in seconds, and the last result. */
async function best<T>(n: number, fn: () => T | Promise<T>): Promise<[T, number]> {
  let result: T | undefined;
  let fastest = Infinity;
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    result = await fn();
    fastest = Math.min(fastest, (performance.now() - t) / 1000);
  }
  return [result as T, fastest];
}

type Codec = ParquetCompression | 'lz4_raw';
interface WriteCase {
  label: string;
  codec: Codec;
  /** Our writer's properties (no dictionary, no statistics) or parquet-wasm's defaults. */
  tuned: boolean;
  hyparquet: ActivationDtype[];
}

const WRITE_CASES: WriteCase[] = [
  { label: 'none', codec: 'none', tuned: true, hyparquet: ['float32'] },
  { label: 'snappy', codec: 'snappy', tuned: true, hyparquet: ['float32', 'float16'] },
  { label: 'snappy, default props (dictionary + statistics)', codec: 'snappy', tuned: false, hyparquet: [] },
  { label: 'zstd', codec: 'zstd', tuned: true, hyparquet: ['float32'] },
  { label: 'lz4_raw', codec: 'lz4_raw', tuned: true, hyparquet: [] },
];

const rowGroupRows = 10240;

function writeCase(batch: ActivationBatch, c: WriteCase): Uint8Array {
  if (c.tuned && c.codec !== 'lz4_raw') return encodeParquet(batch, { compression: c.codec, rowGroupRows });
  // Variants our writer does not offer, built by hand along the same Arrow -> IPC -> wasm route.
  const ipc = tableToIPC(new Table([batch]), 'stream');
  const codec = c.codec === 'lz4_raw' ? parquetWasm.Compression.LZ4_RAW : parquetWasm.Compression.SNAPPY;
  let builder = new parquetWasm.WriterPropertiesBuilder()
    .setCompression(codec)
    .setMaxRowGroupSize(rowGroupRows);
  if (c.tuned)
    builder = builder.setDictionaryEnabled(false).setStatisticsEnabled(parquetWasm.EnabledStatistics.None);
  return parquetWasm.writeParquet(parquetWasm.Table.fromIPCStream(ipc), builder.build());
}

/** Our reader's route: file-backed Blob, parquet-wasm stream of 4096-row batches, Arrow views. */
async function readStream(path: string): Promise<number> {
  const source = await openParquet(path);
  let n = 0;
  try {
    for await (const batch of source.batches({ batchSize: 4096 })) n += hookValues(batch, HOOK).values.length;
  } finally {
    source.close();
  }
  return n;
}

/** parquet-wasm reading the whole file from memory in one call. */
function readWhole(path: string): number {
  const table = tableFromIPC(
    parquetWasm.readParquet(readFileSync(path), { batchSize: 4096 }).intoIPCStream(),
  );
  let n = 0;
  for (const batch of table.batches) n += hookValues(batch, HOOK).values.length;
  return n;
}

/** hyparquet: it assembles each list into a JS array of numbers, which we copy into one Float32Array. */
async function readHyparquet(path: string): Promise<number> {
  const bytes = readFileSync(path);
  const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  const out = new Float32Array(rows * d);
  await parquetRead({
    file,
    metadata: parquetMetadata(file),
    compressors,
    columns: ['seq', 'pos', 'token', HOOK],
    onChunk: (chunk) => {
      if (chunk.columnName !== HOOK) return;
      const lists = chunk.columnData as ArrayLike<ArrayLike<number>>;
      for (let r = 0; r < lists.length; r++) out.set(lists[r] as ArrayLike<number>, (chunk.rowStart + r) * d);
    },
  });
  return out.length;
}

interface LibraryRow {
  dtype: ActivationDtype;
  codec: string;
  file: string;
  sizeMb: number;
  writeMbS: number;
  readMbS: Record<string, number>;
}

const mb = (bytes: number) => bytes / 1e6;
const dataMbOf = (dtype: ActivationDtype) => mb(rows * (d * (dtype === 'float16' ? 2 : 4) + 16));
const library: LibraryRow[] = [];
const stages: { what: string; mbS: number }[] = [];
const extras: Record<string, number> = {};

for (const dtype of ['float32', 'float16'] as const) {
  const batch = makeBatch(dtype);
  const dataMb = dataMbOf(dtype);
  const raw = hookValues(batch, HOOK).values;
  writeFileSync(join(dir, `${dtype}.bin`), new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength));
  // Warm-up: grows wasm memory and JIT-compiles both paths before anything is timed.
  writeFileSync(join(dir, 'warmup.parquet'), writeCase(batch, WRITE_CASES[1]!));
  await readStream(join(dir, 'warmup.parquet'));

  for (const [i, c] of WRITE_CASES.entries()) {
    const file = join(dir, `${dtype}-${i}.parquet`);
    const [bytes, tw] = await best(reps, () => {
      const b = writeCase(batch, c);
      writeFileSync(file, b);
      return b;
    });
    const readMbS: Record<string, number> = {};
    const [n1, t1] = await best(reps, () => readStream(file));
    readMbS['parquet-wasm stream'] = dataMb / t1;
    const [n2, t2] = await best(reps, () => readWhole(file));
    readMbS['parquet-wasm whole file'] = dataMb / t2;
    if (c.hyparquet.includes(dtype)) {
      const [n3, t3] = await best(1, () => readHyparquet(file));
      readMbS['hyparquet'] = dataMb / t3;
      if (n3 !== rows * d) throw new Error(`${file}: hyparquet read ${n3} values`);
    }
    if (n1 !== rows * d || n2 !== rows * d) throw new Error(`${file}: read ${n1}/${n2} values`);
    library.push({
      dtype,
      codec: c.label,
      file,
      sizeMb: mb(bytes.byteLength),
      writeMbS: dataMb / tw,
      readMbS,
    });
  }

  // Our stages end to end: cacheWriter (copy into the shard buffer, encode, fsync, rename, hash, manifest)
  // and cacheReader (stat, optional sha256 of each shard, decode, normalise, rechunk to 4096 rows).
  const input = dtype === 'float16' ? makeBatch('float32') : batch;
  const cache = join(dir, `cache-${dtype}`);
  const [, tw] = await best(reps, async () => {
    rmSync(cache, { recursive: true, force: true });
    await lastValueFrom(from([input]).pipe(cacheWriter({ dir: cache, dtype, shardSizeMb: 64 }), toArray()));
  });
  stages.push({
    what: `cacheWriter ${dtype}, snappy, 64 MiB shards${dtype === 'float16' ? ' (from float32 input)' : ''}`,
    mbS: dataMb / tw,
  });
  for (const verifyChecksums of [true, false]) {
    const [, tr] = await best(reps, () =>
      lastValueFrom(cacheReader({ path: cache, verifyChecksums }).pipe(toArray())),
    );
    stages.push({ what: `cacheReader ${dtype}, verifyChecksums ${verifyChecksums}`, mbS: dataMb / tr });
  }
  const shard = join(cache, 'shard-00000.parquet');
  const [, th] = await best(reps, () => sha256File(shard));
  extras[`sha256File on a ${dtype} shard (MB/s of file bytes)`] = mb(readFileSync(shard).byteLength) / th;
}
{
  const f32 = gaussian(rows * d, 7);
  const [, t] = await best(reps, () =>
    makeActivationBatch({ hooks: { [HOOK]: { data: f32, d } }, dtype: 'float16' }),
  );
  extras['float32 -> float16 conversion (MB/s of float32 input)'] = mb(f32.byteLength) / t;
}

let readability: Record<string, string> = {};
if (args.python) {
  const script = `
import json, sys, numpy as np, pyarrow as pa, pyarrow.parquet as pq
try:
    import duckdb
except ImportError:
    duckdb = None
out = {}
for f in sys.argv[2:]:
    half = f.rsplit('/', 1)[-1].startswith('float16')
    dtype, bits = (np.float16, np.uint16) if half else (np.float32, np.uint32)
    want = np.fromfile(sys.argv[1] + ('/float16.bin' if half else '/float32.bin'), dtype=dtype)
    try:
        col = pq.read_table(f).column('${HOOK}').combine_chunks()
        got = col.flatten().to_numpy(zero_copy_only=False).astype(dtype)
        res = 'pyarrow ' + ('identical' if got.view(bits).tobytes() == want.view(bits).tobytes() else 'VALUES DIFFER')
    except Exception as e:
        res = 'pyarrow FAILED: ' + str(e).splitlines()[0]
    if duckdb is not None:
        try:
            s = duckdb.sql("select sum(list_sum(\\"${HOOK}\\")::double) from read_parquet('" + f + "')").fetchone()[0]
            ok = abs(s - float(want.astype(np.float64).sum())) < 1e-6 * max(1.0, abs(s))
            res += ', DuckDB ' + ('same sum' if ok else 'SUM DIFFERS')
        except Exception as e:
            res += ', DuckDB FAILED: ' + str(e).splitlines()[0]
    out[f] = res
print(json.dumps(out))
`;
  const r = spawnSync(args.python, ['-c', script, dir, ...library.map((x) => x.file)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`python failed: ${r.stderr}`);
  readability = JSON.parse(r.stdout) as Record<string, string>;
}

const readKeys = ['parquet-wasm stream', 'parquet-wasm whole file', 'hyparquet'];
console.log(`\n${rows} rows x ${d}, one hook + seq/pos/token, best of ${reps}; node ${process.version}\n`);
console.log(
  `| dtype | parquet-wasm write, codec | size MB | write MB/s | ${readKeys.map((k) => `read MB/s: ${k}`).join(' | ')} | other readers |`,
);
console.log(`|${'---|'.repeat(5 + readKeys.length)}`);
for (const r of library) {
  const reads = readKeys.map((k) => (r.readMbS[k] === undefined ? '-' : r.readMbS[k].toFixed(0)));
  console.log(
    `| ${r.dtype} | ${r.codec} | ${r.sizeMb.toFixed(1)} | ${r.writeMbS.toFixed(0)} | ${reads.join(' | ')} | ${readability[r.file] ?? 'not checked'} |`,
  );
}
console.log('\n| our stage | MB/s |\n|---|---|');
for (const s of stages) console.log(`| ${s.what} | ${s.mbS.toFixed(0)} |`);
console.log('');
for (const [k, v] of Object.entries(extras)) console.log(`${k}: ${v.toFixed(0)}`);

mkdirSync('bench/results', { recursive: true });
writeFileSync(
  'bench/results/parquet-libraries.json',
  JSON.stringify({ rows, d, reps, node: process.version, library, stages, extras, readability }, null, 2),
);
