// Seeded corruptions of every kind of file saeflow reads: each load must succeed or fail with a
// UserError, within a time limit; a cache (manifest + shards) that loads must give back its own data.
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { from } from 'rxjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hookMatrix } from '../src/arrow/index.js';
import { serializeSafetensors, readSafetensors } from '../src/io/safetensors.js';
import { footerRange, parseFooter, columnChunks, readPage } from '../src/io/parquet-pages/page-headers.js';
import { main } from '../src/pipeline/cli.js';
import { isUserError } from '../src/pipeline/errors.js';
import { readSaeFolder } from '../src/sae/index.js';
import { cacheReader, cacheWriter } from '../src/stages/cache/index.js';
import { readStoreSnapshot, STORE_SNAPSHOT_FILE, writeStoreSnapshotSync } from '../src/stages/store/index.js';
import { ActivationStoreCore } from '../src/stages/store/store-core.js';
import { readDocuments } from '../src/stages/text/index.js';
import { mulberry32, type Random } from '../src/util/random.js';
import { HOOKS, collect, makeTempDir, syntheticStream } from './cache-test-helpers.js';
import { writeIdentitySae } from './eval-helpers.js';

const CASES_PER_TARGET = 40;
const TIME_LIMIT_MS = 5_000;

let base: { dir: string; cleanup: () => void };
let cache: string;
let cacheDigest: string;
let sae: string;
let jsonl: string;
let safetensors: string;
let n = 0;

const int = (r: Random, k: number) => Math.floor(r() * k);

/** A digest of everything read from a cache, to tell a faithful read from a wrong one. */
async function readCache(dir: string): Promise<string> {
  const batches = await collect(cacheReader({ path: dir }));
  const hash = createHash('sha256');
  for (const b of batches) {
    for (const h of HOOKS) {
      const m = hookMatrix(b, h.name);
      hash.update(new Uint8Array(m.buffer, m.byteOffset, m.byteLength));
    }
  }
  return hash.digest('hex');
}

/** Byte-level damage: truncation, flipped bytes, or a run of random bytes. */
function damageBytes(bytes: Buffer, r: Random): Buffer {
  const out = Buffer.from(bytes);
  switch (int(r, 3)) {
    case 0:
      return out.subarray(0, int(r, out.length));
    case 1:
      for (let i = 0, k = 1 + int(r, 8); i < k; i++) {
        const at = int(r, out.length);
        out[at] = (out[at] as number) ^ (1 << int(r, 8));
      }
      return out;
    default: {
      const at = int(r, out.length);
      for (let i = at; i < Math.min(out.length, at + 1 + int(r, 64)); i++) out[i] = int(r, 256);
      return out;
    }
  }
}

/** Byte ranges of every page of a Parquet file: where its header starts, where its data starts and ends. */
function pageRanges(bytes: Buffer): { column: string; header: number; data: number; end: number }[] {
  const u = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const footer = footerRange(u.subarray(u.length - 8), u.length);
  const out = [];
  for (const c of columnChunks(parseFooter(u.subarray(footer.start, footer.start + footer.length)))) {
    for (let at = c.start; at < c.start + c.length;) {
      const p = readPage(u, at, c.start + c.length);
      out.push({
        column: c.topLevel,
        header: at,
        data: at + p.headerLength,
        end: at + p.headerLength + p.dataLength,
      });
      at += p.headerLength + p.dataLength;
    }
  }
  return out;
}

const WEIRD: unknown[] = [null, -1, 0, 1.5, 1e300, '', 'x', [], {}, [1, 2], true, -2147483649];

/** Damage to a JSON document: a field removed or given a value of the wrong type, or broken syntax. */
function damageJson(text: string, r: Random): string {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return text.slice(0, int(r, text.length));
  }
  if (int(r, 4) === 0) return text.slice(0, int(r, text.length));
  // Walk to a random object or array inside the document and change one of its entries.
  let node = doc as Record<string, unknown>;
  for (let depth = 0; depth < 4; depth++) {
    const keys = Object.keys(node);
    if (keys.length === 0) break;
    const key = keys[int(r, keys.length)] as string;
    const child = node[key];
    if (child !== null && typeof child === 'object' && int(r, 3) > 0) {
      node = child as Record<string, unknown>;
      continue;
    }
    if (int(r, 3) === 0 && !Array.isArray(node)) delete node[key];
    else node[key] = WEIRD[int(r, WEIRD.length)];
    break;
  }
  return JSON.stringify(doc);
}

/** A safetensors file with its header damaged as JSON (wrong shapes, dtypes, offsets) or its bytes damaged. */
function damageSafetensors(bytes: Buffer, r: Random): Buffer {
  if (int(r, 2) === 0) return damageBytes(bytes, r);
  const len = Number(bytes.readBigUInt64LE(0));
  const header = damageJson(bytes.subarray(8, 8 + len).toString('utf8'), r);
  const head = Buffer.from(header, 'utf8');
  const size = Buffer.alloc(8);
  size.writeBigUInt64LE(BigInt(head.length));
  return Buffer.concat([size, head, bytes.subarray(8 + len)]);
}

/** Runs `load` and sorts the outcome; anything but success or a UserError fails the test with its stack. */
async function outcome<T>(
  what: string,
  load: () => Promise<T>,
): Promise<{ ok: true; value: T } | { ok: false }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what}: no answer within ${TIME_LIMIT_MS} ms (hang)`)),
      TIME_LIMIT_MS,
    );
  });
  try {
    return { ok: true, value: await Promise.race([load(), timeout]) };
  } catch (e) {
    if (isUserError(e)) {
      expect(e.message.length).toBeGreaterThan(0);
      return { ok: false };
    }
    throw new Error(`${what}: not a UserError: ${(e as Error)?.stack ?? String(e)}`);
  } finally {
    clearTimeout(timer);
  }
}

const fresh = (name: string) => {
  const dir = join(base.dir, `${name}-${n++}`);
  mkdirSync(dir);
  return dir;
};

beforeAll(async () => {
  base = makeTempDir('fuzz');
  cache = join(base.dir, 'cache');
  await collect(from(syntheticStream([60, 60])).pipe(cacheWriter({ dir: cache, shardSizeMb: 0.004 })));
  cacheDigest = await readCache(cache);
  sae = await writeIdentitySae(join(base.dir, 'sae'), 'blocks.0.hook_resid_pre', 8);
  jsonl = join(base.dir, 'docs.jsonl');
  writeFileSync(
    jsonl,
    [{ text: 'Call me Ishmael.' }, { text: 'Some years ago' }, { text: 'never mind how long' }]
      .map((o) => JSON.stringify(o))
      .join('\n'),
  );
  safetensors = join(base.dir, 'x.safetensors');
  writeFileSync(
    safetensors,
    serializeSafetensors({
      a: { dtype: 'F32', shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
      b: { dtype: 'F16', shape: [4], data: new Uint16Array([0x3c00, 0, 0x4000, 0xbc00]) },
    }),
  );
});
afterAll(() => base.cleanup());

describe('fuzzed inputs end in a result or a UserError, never a crash, hang or wrong result', () => {
  it('cache shards and manifests', async () => {
    expect(readdirSync(cache).filter((f) => f.endsWith('.parquet')).length).toBeGreaterThan(1);
    const r = mulberry32(1);
    let refused = 0;
    for (let i = 0; i < CASES_PER_TARGET; i++) {
      const dir = fresh('cache');
      cpSync(cache, dir, { recursive: true });
      const shards = readdirSync(dir).filter((f) => f.endsWith('.parquet'));
      const victim = i % 2 === 0 ? 'manifest.json' : (shards[int(r, shards.length)] as string);
      const file = join(dir, victim);
      const original = readFileSync(file);
      const damaged =
        victim === 'manifest.json'
          ? Buffer.from(damageJson(original.toString('utf8'), r))
          : damageBytes(original, r);
      writeFileSync(file, damaged);
      const got = await outcome(`cache with damaged ${victim} (case ${i})`, () => readCache(dir));
      if (got.ok)
        expect(got.value, `case ${i}: ${victim} damaged but read as different data`).toBe(cacheDigest);
      else refused++;
      // A damaged shard is always caught (sha256); only a manifest change that alters nothing read may pass.
      if (victim !== 'manifest.json' && !damaged.equals(original)) expect(got.ok).toBe(false);
      // The same damage to a shard named by its own path is caught the same way.
      if (victim !== 'manifest.json') {
        const single = await outcome(`damaged ${victim} by path (case ${i})`, () =>
          collect(cacheReader({ path: file })),
        );
        if (!damaged.equals(original)) expect(single.ok).toBe(false);
      }
    }
    expect(refused).toBeGreaterThan(CASES_PER_TARGET / 2);
  }, 30_000);

  it('plain Parquet files (no manifest)', async () => {
    const r = mulberry32(2);
    const shard = readFileSync(join(cache, 'shard-00000.parquet'));
    for (let i = 0; i < CASES_PER_TARGET; i++) {
      const dir = fresh('plain');
      writeFileSync(join(dir, 'part.parquet'), damageBytes(shard, r));
      // No checksum to compare with: either decodes to plausible values or is refused.
      await outcome(`plain Parquet (case ${i})`, () => collect(cacheReader({ path: dir })));
    }
  }, 30_000);

  it('a standalone shard (no manifest) with flipped bytes in its pages: refused, never a wrong result', async () => {
    // Page checksums are all that protects a shard read away from its manifest.
    const r = mulberry32(3);
    const shard = readFileSync(join(cache, 'shard-00000.parquet'));
    const whole = fresh('whole');
    writeFileSync(join(whole, 'shard-00000.parquet'), shard);
    const digest = await readCache(join(whole, 'shard-00000.parquet'));
    const pages = pageRanges(shard);
    expect(pages.length).toBeGreaterThan(4);
    let refused = 0;
    for (let i = 0; i < CASES_PER_TARGET * 2; i++) {
      const damaged = Buffer.from(shard);
      const page = pages[int(r, pages.length)] as { header: number; data: number; end: number };
      // Half the cases hit page data only (the CRC must catch every one); the rest anywhere in the page.
      const from = i % 2 === 0 ? page.data : page.header;
      for (let k = 0, m = 1 + int(r, 4); k < m; k++) {
        const at = from + int(r, page.end - from);
        damaged[at] = (damaged[at] as number) ^ (1 << int(r, 8));
      }
      const file = join(fresh('page'), 'shard-00000.parquet');
      writeFileSync(file, damaged);
      const result = await outcome(`page flip (case ${i})`, () => readCache(file));
      if (result.ok) expect(result.value, `page flip (case ${i}) read wrong values`).toBe(digest);
      else refused++;
      if (i % 2 === 0) expect(result.ok, `page data flip (case ${i}) not refused`).toBe(false);
    }
    expect(refused).toBeGreaterThan(CASES_PER_TARGET);
  }, 60_000);

  it('training from a standalone shard with a flipped page byte exits 2 with a one-line error', async () => {
    const shard = readFileSync(join(cache, 'shard-00000.parquet'));
    // A page of the hook trained on: the reader checks only the columns it reads.
    const page = pageRanges(shard).findLast((p) => p.column === HOOKS[0]!.name) as {
      data: number;
      end: number;
    };
    const at = (page.data + page.end) >> 1;
    shard[at] = (shard[at] as number) ^ 0x04;
    const dir = fresh('cli');
    const file = join(dir, 'shard-00000.parquet');
    writeFileSync(file, shard);
    const chunks: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string | Uint8Array) => {
      chunks.push(String(chunk));
      return true;
    }) as typeof process.stderr.write;
    let code: number;
    try {
      code = await main([
        'pipelines/gpt2-resid.ts',
        ...['--activations', file, '--hook', HOOKS[0]!.name, '--backend', 'cpu', '--d_sae', '64'],
        ...['--training_tokens', '64', '--train_batch_size_tokens', '16', '--out', join(dir, 'run')],
      ]);
    } finally {
      process.stderr.write = write;
    }
    expect(code).toBe(2);
    const errors = chunks
      .join('')
      .split('\n')
      .filter((l) => l.startsWith('error:'));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(
      /^error: .*shard-00000\.parquet: page checksum mismatch in row group \d+, column \d+ \(.*\), page at byte \d+: .*\(corrupt file\)$/,
    );
  }, 60_000);

  it('safetensors files: truncation, flipped bytes, wrong shapes, dtypes and offsets', async () => {
    const r = mulberry32(3);
    const bytes = readFileSync(safetensors);
    for (let i = 0; i < CASES_PER_TARGET * 2; i++) {
      const file = join(fresh('st'), 'x.safetensors');
      writeFileSync(file, damageSafetensors(bytes, r));
      await outcome(`safetensors (case ${i})`, () => readSafetensors(file));
    }
  });

  it('SAE folders: cfg.json and weights', async () => {
    const r = mulberry32(4);
    for (let i = 0; i < CASES_PER_TARGET; i++) {
      const dir = fresh('sae');
      cpSync(sae, dir, { recursive: true });
      const victim = i % 2 === 0 ? 'cfg.json' : 'sae_weights.safetensors';
      const file = join(dir, victim);
      const original = readFileSync(file);
      writeFileSync(
        file,
        victim === 'cfg.json'
          ? Buffer.from(damageJson(original.toString('utf8'), r))
          : damageSafetensors(original, r),
      );
      await outcome(`SAE folder with damaged ${victim} (case ${i})`, () => readSaeFolder(dir));
    }
  });

  it('activation store checkpoints (store.safetensors)', async () => {
    const r = mulberry32(6);
    const options = { hooks: [HOOKS[0]!.name], trainBatchSizeTokens: 8, nBatchesInBuffer: 4, seed: 1 };
    const input = syntheticStream([30, 30, 30, 30]);
    let consumed = 0;
    const core = new ActivationStoreCore({ ...options, consumed: () => consumed });
    for (const batch of input.slice(0, 2)) consumed = Math.max(0, consumed + core.push(batch).length - 1);
    const file = join(fresh('store'), STORE_SNAPSHOT_FILE);
    writeStoreSnapshotSync(file, core.snapshot(consumed)!);
    const bytes = readFileSync(file);
    for (let i = 0; i < CASES_PER_TARGET; i++) {
      const damaged = join(fresh('store'), STORE_SNAPSHOT_FILE);
      writeFileSync(damaged, damageSafetensors(bytes, r));
      await outcome(`store checkpoint (case ${i})`, async () => {
        const restored = ActivationStoreCore.restore(await readStoreSnapshot(damaged), options);
        const served = restored.queued();
        for (const batch of input.slice(2)) served.push(...restored.push(batch));
        return [...served, ...restored.finish()];
      });
    }
  });

  it('JSONL datasets', async () => {
    const r = mulberry32(5);
    const bytes = readFileSync(jsonl);
    for (let i = 0; i < CASES_PER_TARGET; i++) {
      const file = join(fresh('jsonl'), 'docs.jsonl');
      const lines = bytes.toString('utf8').split('\n');
      const k = int(r, lines.length);
      lines[k] =
        int(r, 2) === 0
          ? damageJson(lines[k] as string, r)
          : damageBytes(Buffer.from(lines[k] as string), r).toString('latin1');
      writeFileSync(file, lines.join('\n'));
      await outcome(`JSONL (case ${i})`, async () => {
        const docs = [];
        for await (const d of readDocuments(file)) docs.push(d);
        return docs;
      });
    }
  });
});
