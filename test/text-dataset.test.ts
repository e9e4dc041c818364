import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { lastValueFrom, toArray } from 'rxjs';
import { UserError } from '../src/pipeline/errors.js';
import { Flow } from '../src/pipeline/flow.js';
import {
  bufferedShuffle,
  describeDataset,
  documentSource,
  encodeGpt2,
  loadCorpus,
  mulberry32,
  pack,
  readDocuments,
  resolveDataset,
  shuffleInPlace,
  tokenize,
  type Document,
  type TextDocument,
} from '../src/stages/text/index.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/text/', import.meta.url));
const DATA = path.join(FIXTURES, 'data');
const DATA_FILES = [
  'docs.jsonl',
  'input-ids.parquet',
  'prose.txt',
  'text-gzip.parquet',
  'text-snappy.parquet',
  'text-zstd.parquet',
  'tokens-int64.parquet',
].map((f) => path.join(DATA, f));

const tmp = mkdtempSync(path.join(tmpdir(), 'saeflow-text-dataset-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
function write(rel: string, content: string): string {
  const file = path.join(tmp, rel);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, content);
  return file;
}

async function collect(gen: AsyncIterable<Document>): Promise<Document[]> {
  const out: Document[] = [];
  for await (const d of gen) out.push(d);
  return out;
}
const ids = (docs: Document[]) => docs.map((d) => d.id);

describe('resolveDataset', () => {
  it('resolves a single file, relative to cwd', async () => {
    const d = await resolveDataset('data/docs.jsonl', { cwd: FIXTURES });
    expect(d).toEqual({ kind: 'files', spec: 'data/docs.jsonl', files: [path.join(DATA, 'docs.jsonl')] });
  });

  it('resolves a directory to its supported files, sorted', async () => {
    const d = await resolveDataset(DATA);
    expect(d.kind === 'files' && d.files).toEqual(DATA_FILES);
  });

  it('recurses into subdirectories and skips hidden and unsupported files', async () => {
    write('tree/b.txt', 'b');
    write('tree/a/z.jsonl', '{"text":"z"}\n');
    write('tree/a/y.JSONL', '{"text":"y"}\n');
    write('tree/README.md', 'not data');
    write('tree/.hidden.txt', 'hidden');
    write('tree/.cache/c.txt', 'cached');
    const d = await resolveDataset(path.join(tmp, 'tree'));
    expect(d.kind === 'files' && d.files.map((f) => path.relative(tmp, f))).toEqual([
      path.join('tree', 'a', 'y.JSONL'),
      path.join('tree', 'a', 'z.jsonl'),
      path.join('tree', 'b.txt'),
    ]);
  });

  it('resolves a glob, sorted', async () => {
    const d = await resolveDataset('data/*.parquet', { cwd: FIXTURES });
    expect(d.kind === 'files' && d.files).toEqual(DATA_FILES.filter((f) => f.endsWith('.parquet')));
    const braces = await resolveDataset('data/{docs.jsonl,prose.txt}', { cwd: FIXTURES });
    expect(braces.kind === 'files' && braces.files.length).toBe(2);
  });

  it('resolves the embedded corpora by name', async () => {
    expect(await resolveDataset('moby-dick', { cwd: tmp })).toEqual({
      kind: 'corpus',
      spec: 'moby-dick',
      name: 'moby-dick',
    });
    expect(await resolveDataset('sotu', { cwd: tmp })).toEqual({
      kind: 'corpus',
      spec: 'sotu',
      name: 'sotu',
    });
  });

  it('prefers an existing path over a corpus of the same name', async () => {
    write('shadow/sotu/x.txt', 'x');
    const d = await resolveDataset('sotu', { cwd: path.join(tmp, 'shadow') });
    expect(d.kind).toBe('files');
  });

  it('rejects what it cannot resolve, with a UserError that says why', async () => {
    await expect(resolveDataset('no/such/thing')).rejects.toThrow(UserError);
    await expect(resolveDataset('no/such/thing')).rejects.toThrow(/not found.*moby-dick, sotu/);
    await expect(resolveDataset('missing.jsonl', { cwd: tmp })).rejects.toThrow(
      /file not found: missing\.jsonl/,
    );
    await expect(resolveDataset('data/*.csv', { cwd: FIXTURES })).rejects.toThrow(/no dataset files match/);
    await expect(resolveDataset('*.py', { cwd: FIXTURES })).rejects.toThrow(/matches 1 file, none of them/);
    await expect(resolveDataset(path.join(FIXTURES, 'make_parquet.py'))).rejects.toThrow(
      /unsupported file type/,
    );
    mkdirSync(path.join(tmp, 'empty-dir'), { recursive: true });
    await expect(resolveDataset(path.join(tmp, 'empty-dir'))).rejects.toThrow(/holds no .* files/);
    await expect(resolveDataset('')).rejects.toThrow(/non-empty/);
  });

  it('describes what it found for the run log', async () => {
    expect(describeDataset({ kind: 'corpus', spec: 'sotu', name: 'sotu' })).toBe("embedded corpus 'sotu'");
    const many = describeDataset(await resolveDataset(DATA));
    expect(many).toMatch(/^7 files from '.*data': .*docs\.jsonl, .*\(2 more\)$/);
    expect(describeDataset({ kind: 'files', spec: 'a.txt', files: ['/x/a.txt'] })).toBe(
      "1 file from 'a.txt': /x/a.txt",
    );
  });
});

describe('embedded corpora', () => {
  it('gives Moby-Dick one document per chapter', () => {
    const docs = loadCorpus('moby-dick');
    expect(docs).toHaveLength(139);
    expect(docs[3]!.id).toBe('moby-dick/1');
    expect(docs[3]!.text.startsWith('Call me Ishmael.')).toBe(true);
    expect(docs.at(-1)!.id).toBe('moby-dick/epilogue');
    expect(new Set(docs.map((d) => d.id)).size).toBe(139);
  });

  it('gives the State of the Union one document per address', () => {
    const docs = loadCorpus('sotu');
    expect(docs).toHaveLength(233);
    expect(docs[0]!.id).toBe('sotu/1790-george-washington');
    expect(new Set(docs.map((d) => d.id)).size).toBe(233);
    expect(docs.every((d) => d.text.length > 100)).toBe(true);
  });
});

describe('readDocuments', () => {
  it('reads every file of a directory in order', async () => {
    const docs = await collect(readDocuments(DATA));
    // 3 JSONL lines, 3 input_ids rows, 1 text file, 3 x 7 Parquet rows, 3 token rows.
    expect(docs).toHaveLength(3 + 3 + 1 + 21 + 3);
    expect(docs[0]!.id).toBe(`${path.join(DATA, 'docs.jsonl')}:1`);
    expect(docs.at(-1)!.id).toBe(`${path.join(DATA, 'tokens-int64.parquet')}#2`);
  });

  it('reads an embedded corpus', async () => {
    const docs = await collect(readDocuments('moby-dick'));
    expect(docs).toHaveLength(139);
  });

  it('stops after maxDocuments', async () => {
    expect(ids(await collect(readDocuments('moby-dick', { maxDocuments: 2 })))).toEqual([
      'moby-dick/contents',
      'moby-dick/etymology',
    ]);
  });

  it('shuffles deterministically given a seed', async () => {
    const plain = ids(await collect(readDocuments('moby-dick')));
    const a = ids(await collect(readDocuments('moby-dick', { shuffle: true, seed: 7 })));
    const b = ids(await collect(readDocuments('moby-dick', { shuffle: true, seed: 7 })));
    const c = ids(await collect(readDocuments('moby-dick', { shuffle: true, seed: 8 })));
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    expect(a).not.toEqual(plain);
    expect([...a].sort()).toEqual([...plain].sort());
    const firstFive = ids(
      await collect(readDocuments('moby-dick', { shuffle: true, seed: 7, maxDocuments: 5 })),
    );
    expect(firstFive).toEqual(a.slice(0, 5));
  });

  it('shuffles the files of a dataset and the documents across them', async () => {
    const plain = ids(await collect(readDocuments(DATA)));
    const shuffled = ids(
      await collect(readDocuments(DATA, { shuffle: true, seed: 1, shuffleBufferSize: 4 })),
    );
    expect(shuffled).not.toEqual(plain);
    expect([...shuffled].sort()).toEqual([...plain].sort());
  });

  it('passes textField on to the readers', async () => {
    const docs = await collect(readDocuments(path.join(DATA, 'docs.jsonl'), { textField: 'source' }));
    expect(docs.map((d) => (d as TextDocument).text)).toEqual(['greeting', 'accents', 'third']);
  });

  it('rejects a dataset with no documents', async () => {
    write('empty/a.jsonl', '\n\n');
    write('empty/b.jsonl', '');
    await expect(collect(readDocuments(path.join(tmp, 'empty')))).rejects.toThrow(UserError);
    await expect(collect(readDocuments(path.join(tmp, 'empty')))).rejects.toThrow(
      /dataset has no documents: 2 files/,
    );
  });

  it('rejects bad options when called, before reading anything', () => {
    expect(() => readDocuments('moby-dick', { maxDocuments: 0 })).toThrow(/max_documents/);
    expect(() => readDocuments('moby-dick', { seed: 1.5 })).toThrow(/seed/);
    expect(() => readDocuments('moby-dick', { shuffleBufferSize: 0 })).toThrow(/shuffle_buffer_size/);
    expect(() => readDocuments('moby-dick', { textField: 'a', tokensField: 'b' })).toThrow(UserError);
  });

  it('refuses tokensField on text-only sources', async () => {
    await expect(collect(readDocuments('sotu', { tokensField: 'tokens' }))).rejects.toThrow(/is text/);
    await expect(
      collect(readDocuments(path.join(DATA, 'prose.txt'), { tokensField: 'tokens' })),
    ).rejects.toThrow(/plain-text file/);
  });
});

describe('documentSource', () => {
  it('emits the documents as an Observable', async () => {
    const docs = await lastValueFrom(documentSource(path.join(DATA, 'docs.jsonl')).pipe(toArray()));
    expect(docs).toHaveLength(3);
  });

  it('stops pulling when the flow is stopped', async () => {
    const flow = new Flow(2);
    flow.stop();
    const docs = await lastValueFrom(documentSource('moby-dick', {}, flow).pipe(toArray()));
    expect(docs).toEqual([]);
  });

  it('feeds tokenize and pack: windows start with BOS and hold the text tokens in order', async () => {
    const contextSize = 64;
    const source = documentSource('moby-dick', { maxDocuments: 4 });
    const batches = await lastValueFrom(
      source.pipe(tokenize(), pack({ contextSize, batchSize: 8 }), toArray()),
    );
    const docs = loadCorpus('moby-dick').slice(0, 4);
    // Rebuild the expected stream: BOS, doc 0, BOS, doc 1, ... with a BOS opening every window.
    const flat: number[] = [];
    for (const b of batches) {
      for (let r = 0; r < b.batchSize; r++) {
        expect(b.tokens[r * contextSize]).toBe(50256);
        for (let i = 1; i < contextSize; i++) flat.push(b.tokens[r * contextSize + i]!);
      }
    }
    const expected: number[] = [];
    docs.forEach((d, i) => {
      if (i > 0) expected.push(50256);
      expected.push(...encodeGpt2(d.text));
    });
    expect(flat).toEqual(expected.slice(0, flat.length));
    expect(expected.length - flat.length).toBeLessThan(contextSize);
    const windows = flat.length / (contextSize - 1);
    expect(batches.flatMap((b) => Array.from(b.seqIds))).toEqual(
      Array.from({ length: windows }, (_, i) => i),
    );
  });
});

describe('seeded randomness', () => {
  it('mulberry32 is reproducible, in [0, 1), and seeds differ', () => {
    const a = mulberry32(42);
    const b = mulberry32(42);
    const xs = Array.from({ length: 1000 }, () => a());
    expect(Array.from({ length: 1000 }, () => b())).toEqual(xs);
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    expect(mulberry32(43)()).not.toBe(mulberry32(42)());
    expect(mulberry32(2 ** 32 + 1)()).not.toBe(mulberry32(1)());
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.05);
    expect(() => mulberry32(0.5)).toThrow(RangeError);
  });

  it('mulberry32 streams are frozen (shuffles must repeat across versions, for resume)', () => {
    const r = mulberry32(0);
    expect(Array.from({ length: 3 }, () => Math.floor(r() * 2 ** 32))).toEqual(FROZEN_SEED0);
  });

  it('shuffleInPlace and bufferedShuffle give permutations', async () => {
    const items = Array.from({ length: 50 }, (_, i) => i);
    const s = shuffleInPlace([...items], mulberry32(3));
    expect([...s].sort((x, y) => x - y)).toEqual(items);
    expect(s).not.toEqual(items);
    for (const bufferSize of [1, 7, 50, 100]) {
      const out: number[] = [];
      for await (const x of bufferedShuffle(items, bufferSize, mulberry32(5))) out.push(x);
      expect([...out].sort((x, y) => x - y)).toEqual(items);
      if (bufferSize > 1) expect(out).not.toEqual(items);
    }
  });
});

/** First three 32-bit outputs of mulberry32(0), recorded when the generator was written. */
const FROZEN_SEED0 = [1144304738, 1416247, 958946056];
