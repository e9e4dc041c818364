/**
 * A cache run split into tasks (--shard i/n) and joined by pipelines/merge-cache.ts is the single run's cache:
 * the same manifest, byte for byte the same shards, row for row the same values; including when a task is
 * stopped by SIGTERM and resumed, when shards do not line up with model batches, and when a task owns no
 * shard. Bad splits and bad parts are one-line errors that name the part.
 */
import { EventEmitter } from 'node:events';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { activationIds, hookMatrix } from '../src/arrow/activation-batch.js';
import { keptRuns } from '../src/stages/cache/row-blocks.js';
import { parseShard, partDirName } from '../src/cluster/shard-spec.js';
import { parseCliArgs } from '../src/pipeline/cli-args.js';
import { main } from '../src/pipeline/cli.js';
import { runPipeline } from '../src/pipeline/runner.js';
import { readActivationBatches } from '../src/stages/cache/index.js';
import { testIo } from './runner-io.js';

const HOOK = 'blocks.1.hook_resid_pre';
// 64 windows of 32 tokens; at 272 bytes a row, 0.03 MiB shards hold 115 rows, which no model batch (4 x 32)
// lines up with: tasks must run whole batches that straddle their blocks and keep their rows only.
const COMMON = [
  ...['--model', 'tiny-gpt2', '--dataset', 'moby-dick', '--hooks', HOOK, '--context_size', '32'],
  ...['--batch_size', '4', '--max_tokens', '2048', '--shard_size_mb', '0.03', '--progress', 'none'],
];

const tmp = (prefix: string) => mkdtempSync(path.join(tmpdir(), `saeflow-${prefix}-`));

async function run(argv: string[], signals = new EventEmitter()) {
  return runPipeline(parseCliArgs(argv), testIo(signals));
}

async function cacheRows(dir: string): Promise<{ ids: number[]; values: Buffer }> {
  const ids: number[] = [];
  const values: Buffer[] = [];
  for await (const b of readActivationBatches({ path: dir })) {
    const id = activationIds(b)!;
    for (let r = 0; r < b.numRows; r++) ids.push(Number(id.seq[r]) * 1000 + id.pos[r]!, id.token[r]!);
    const m = hookMatrix(b, HOOK, { copy: true });
    values.push(Buffer.from(m.buffer, m.byteOffset, m.byteLength));
  }
  return { ids, values: Buffer.concat(values) };
}

const shardFiles = (dir: string) =>
  readdirSync(dir)
    .filter((n) => n.endsWith('.parquet'))
    .sort();

async function runParts(dir: string, count: number, extra: string[] = []): Promise<void> {
  for (let i = 0; i < count; i++) {
    const out = path.join(dir, partDirName({ index: i, count }));
    const outcome = await run([
      'pipelines/cache-activations.ts',
      ...COMMON,
      ...extra,
      '--shard',
      `${i}/${count}`,
      '--out',
      out,
    ]);
    expect(outcome?.status).toBe('completed');
  }
}

async function merge(dir: string): Promise<unknown> {
  const outcome = await run([
    'pipelines/merge-cache.ts',
    '--cache',
    dir,
    '--out',
    path.join(dir, 'finish'),
    '--progress',
    'none',
  ]);
  return outcome?.result;
}

let single: string | null = null;
async function singleRun(): Promise<string> {
  if (single) return single;
  const out = path.join(tmp('single'), 'cache');
  expect((await run(['pipelines/cache-activations.ts', ...COMMON, '--out', out]))?.status).toBe('completed');
  single = out;
  return out;
}

async function expectSameCache(merged: string, reference: string): Promise<void> {
  expect(readFileSync(path.join(merged, 'manifest.json'), 'utf8')).toBe(
    readFileSync(path.join(reference, 'manifest.json'), 'utf8'),
  );
  expect(shardFiles(merged)).toEqual(shardFiles(reference));
  for (const f of shardFiles(reference)) {
    expect(readFileSync(path.join(merged, f)).equals(readFileSync(path.join(reference, f))), f).toBe(true);
  }
  const [a, b] = [await cacheRows(merged), await cacheRows(reference)];
  expect(a.ids.length).toBe(2048 * 2);
  expect(a.ids).toEqual(b.ids);
  expect(a.values.length).toBe(2048 * 64 * 4);
  expect(a.values.equals(b.values)).toBe(true);
}

describe('a cache run split into tasks', () => {
  it('parses i/n and refuses bad splits with one line', () => {
    expect(parseShard('3/4')).toEqual({ index: 3, count: 4 });
    expect(() => parseShard('5/4')).toThrow(
      /--shard 5\/4: the task index must be below the task count \(0 to 3/,
    );
    expect(() => parseShard('1/0')).toThrow(/task count must be 1 to/);
    expect(() => parseShard('a/b')).toThrow(/expected i\/n/);
  });

  it('keeps every n-th block of rows from where the task stopped', () => {
    const plan = { index: 1, count: 3, rowsPerBlock: 10, skipRows: 0 };
    expect(keptRuns(plan, 0, 70)).toEqual([
      [10, 20],
      [40, 50],
    ]);
    expect(keptRuns({ ...plan, skipRows: 13 }, 0, 70)).toEqual([[43, 50]]);
    expect(keptRuns(plan, 15, 42)).toEqual([
      [15, 20],
      [40, 42],
    ]);
    expect(keptRuns({ index: 0, count: 1, rowsPerBlock: 7, skipRows: 5 }, 0, 20)).toEqual([[5, 20]]);
  });

  it('merges four tasks into the single run, shard for shard and row for row', async () => {
    const reference = await singleRun();
    expect(shardFiles(reference).length).toBe(18);
    const dir = tmp('split');
    await runParts(dir, 4);
    await expect(cacheRows(dir)).rejects.toThrow(/not merged yet .*merge-cache\.ts --cache/);
    expect(await merge(dir)).toMatchObject({ parts: 4, shards: 18, tokens: 2048, already_merged: false });
    await expectSameCache(dir, reference);
    // The parts stay readable caches, and merging again changes nothing.
    expect(shardFiles(path.join(dir, partDirName({ index: 2, count: 4 }))).length).toBe(4);
    rmSync(path.join(dir, 'finish'), { recursive: true });
    expect(await merge(dir)).toMatchObject({ already_merged: true });
  }, 180_000);

  it('gives the same cache when a task is stopped by SIGTERM and resumed', async () => {
    const reference = await singleRun();
    const dir = tmp('term');
    const signals = new EventEmitter();
    const out = path.join(dir, partDirName({ index: 1, count: 2 }));
    const stopped = run(
      ['pipelines/cache-activations.ts', ...COMMON, '--shard', '1/2', '--out', out, '--max_in_flight', '1'],
      signals,
    );
    // Stop it once it has written a shard, so the resumed run starts in the middle of its blocks.
    const manifest = path.join(out, 'manifest.json');
    const written = () => {
      try {
        return (JSON.parse(readFileSync(manifest, 'utf8')) as { shards: unknown[] }).shards.length;
      } catch {
        return 0;
      }
    };
    while (written() === 0) await new Promise((r) => setTimeout(r, 2));
    signals.emit('SIGTERM');
    const first = await stopped;
    expect(first?.status).toBe('interrupted');
    expect(written()).toBeLessThan(9);
    expect(readFileSync(path.join(out, 'run.json'), 'utf8')).toContain('"interrupted"');
    await expect(merge(dir)).rejects.toThrow(/part 0 of 2 is missing/);
    const resumed = await run(['pipelines/cache-activations.ts', '--resume', out]);
    expect(resumed?.status).toBe('completed');
    expect(readFileSync(path.join(out, 'run.log'), 'utf8')).toMatch(/resuming after \d+ cached tokens/);
    const other = path.join(dir, partDirName({ index: 0, count: 2 }));
    expect(
      (await run(['pipelines/cache-activations.ts', ...COMMON, '--shard', '0/2', '--out', other]))?.status,
    ).toBe('completed');
    await merge(dir);
    await expectSameCache(dir, reference);
  }, 180_000);

  it('merges tasks that own no shard (more tasks than shards)', async () => {
    const small = ['--max_tokens', '256'];
    const ref = path.join(tmp('small'), 'cache');
    await run(['pipelines/cache-activations.ts', ...COMMON, ...small, '--out', ref]);
    expect(shardFiles(ref).length).toBe(3);
    const dir = tmp('empty-part');
    await runParts(dir, 4, small);
    expect(await merge(dir)).toMatchObject({ parts: 4, shards: 3, tokens: 256 });
    expect(readFileSync(path.join(dir, 'manifest.json'), 'utf8')).toBe(
      readFileSync(path.join(ref, 'manifest.json'), 'utf8'),
    );
  }, 180_000);

  it('refuses missing, unfinished, corrupt and mismatched parts, naming them', async () => {
    const dir = tmp('bad');
    await runParts(dir, 2);
    const part = (i: number) => path.join(dir, partDirName({ index: i, count: 2 }));
    const attempt = async (mutate: (d: string) => void, pattern: RegExp) => {
      const copy = tmp('bad-copy');
      cpSync(dir, copy, { recursive: true });
      mutate(copy);
      await expect(merge(copy)).rejects.toThrow(pattern);
    };
    const p = (d: string, i: number, f = '') => path.join(d, partDirName({ index: i, count: 2 }), f);
    await attempt(
      (d) => rmSync(p(d, 1), { recursive: true }),
      /part 1 of 2 is missing: .*00001-of-00002 does not exist/,
    );
    await attempt(
      (d) => rmSync(p(d, 0, 'part.json')),
      /part 0 of 2 has not finished .*--resume .*00000-of-00002/,
    );
    await attempt((d) => {
      const f = p(d, 1, 'shard-00001.parquet');
      const bytes = readFileSync(f);
      bytes[100] = bytes[100]! ^ 0xff;
      writeFileSync(f, bytes);
    }, /00001-of-00002\/shard-00001\.parquet: sha256 is .* \(corrupt shard\)/);
    await attempt((d) => {
      const f = p(d, 1, 'part.json');
      writeFileSync(
        f,
        readFileSync(f, 'utf8').replace(/"stream_tokens_sha256": "./, '"stream_tokens_sha256": "0'),
      );
    }, /parts 0 and 1 of 2 read different token streams/);
    await attempt((d) => {
      const f = p(d, 1, 'manifest.json');
      writeFileSync(f, readFileSync(f, 'utf8').replace('"moby-dick"', '"sotu"'));
    }, /00001-of-00002\/manifest.json: dataset is "sotu" but another part has "moby-dick"/);
    // A part from another split of the same directory.
    await runParts(dir, 1, ['--max_tokens', '256']);
    await expect(merge(dir)).rejects.toThrow(/parts of runs split 1 and 2 ways are mixed/);
    expect(part(0)).toContain('00000-of-00002');
  }, 180_000);

  it('exits 2 with one line for --shard 5/4', async () => {
    const err: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((s: string) => (err.push(String(s)), true)) as typeof process.stderr.write;
    try {
      const code = await main([
        'pipelines/cache-activations.ts',
        ...COMMON,
        '--shard',
        '5/4',
        '--out',
        path.join(tmp('bad-shard'), 'x'),
      ]);
      expect(code).toBe(2);
    } finally {
      process.stderr.write = write;
    }
    const errors = err
      .join('')
      .split('\n')
      .filter((l) => l.startsWith('error:'));
    expect(errors).toEqual([
      'error: --shard 5/4: the task index must be below the task count (0 to 3 for 4 tasks)',
    ]);
  }, 60_000);
});
