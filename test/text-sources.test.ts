import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { UserError } from '../src/pipeline/errors.js';
import { readJsonl } from '../src/stages/text/sources/jsonl.js';
import { openParquet, parquetColumnNames, readParquet } from '../src/stages/text/sources/parquet.js';
import { readPlainText } from '../src/stages/text/sources/plain-text.js';
import type { Document, TextDocument, TokenDocument } from '../src/stages/text/types.js';

const DATA = fileURLToPath(new URL('./fixtures/text/data/', import.meta.url));
const fixture = (name: string) => path.join(DATA, name);

/** The texts make_parquet.py writes. */
const PARQUET_TEXTS = [
  'The quick brown fox jumps over the lazy dog.',
  'Call me Ishmael.',
  'Café crème brûlée, 東京, and an emoji 😀.',
  'Line one\nLine two\n\n  indented',
  '',
  'Numbers: 3.14159 and 1,000,000.',
  "It's what we'd've done.",
];

const tmp = mkdtempSync(path.join(tmpdir(), 'saeflow-text-sources-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let tmpCount = 0;
function tmpFile(name: string, content: string | Uint8Array): string {
  const file = path.join(tmp, `${tmpCount++}-${name}`);
  writeFileSync(file, content);
  return file;
}

async function collect(gen: AsyncIterable<Document>): Promise<Document[]> {
  const out: Document[] = [];
  for await (const d of gen) out.push(d);
  return out;
}
const texts = (docs: Document[]) => docs.map((d) => (d as TextDocument).text);
const tokenLists = (docs: Document[]) => docs.map((d) => Array.from((d as TokenDocument).tokens));

describe('plain-text files', () => {
  it('reads a .txt file as one document', async () => {
    const docs = await collect(readPlainText(fixture('prose.txt')));
    expect(docs).toEqual([
      {
        id: fixture('prose.txt'),
        text: 'It was the best of times, it was the worst of times.\n\nA second paragraph, still the same document.\n',
      },
    ]);
  });

  it('drops a UTF-8 byte-order mark', async () => {
    const docs = await collect(readPlainText(tmpFile('bom.txt', '\uFEFFhello')));
    expect(texts(docs)).toEqual(['hello']);
  });

  it('rejects bytes that are not UTF-8, naming the file', async () => {
    const file = tmpFile('latin1.txt', Uint8Array.from([0x63, 0x61, 0x66, 0xe9]));
    await expect(collect(readPlainText(file))).rejects.toThrow(UserError);
    await expect(collect(readPlainText(file))).rejects.toThrow(file);
  });

  it('reports a missing file', async () => {
    await expect(collect(readPlainText(path.join(tmp, 'nope.txt')))).rejects.toThrow(
      /file not found: .*nope\.txt/,
    );
  });
});

describe('JSONL files', () => {
  it('reads the text field of each line, skipping blank lines, with file:line ids', async () => {
    const file = fixture('docs.jsonl');
    const docs = await collect(readJsonl(file));
    expect(docs).toEqual([
      { id: `${file}:1`, text: 'Hello world' },
      { id: `${file}:2`, text: 'Café — naïve résumé' },
      { id: `${file}:4`, text: 'Tabs\tand\nnewlines' },
    ]);
  });

  it('reads another field with textField', async () => {
    expect(texts(await collect(readJsonl(fixture('docs.jsonl'), { textField: 'source' })))).toEqual([
      'greeting',
      'accents',
      'third',
    ]);
  });

  it('handles CRLF line ends and a byte-order mark', async () => {
    const file = tmpFile('crlf.jsonl', '\uFEFF{"text":"a"}\r\n{"text":"b"}\r\n');
    expect(texts(await collect(readJsonl(file)))).toEqual(['a', 'b']);
  });

  it('names the file and line of a line that is not JSON', async () => {
    const file = tmpFile('bad.jsonl', '{"text":"ok"}\n{"text": oops}\n');
    const err = await collect(readJsonl(file)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toContain(`${file}:2`);
    expect((err as Error).message).toMatch(/not valid JSON/);
  });

  it('yields the documents before a bad line (streaming)', async () => {
    const file = tmpFile('late-bad.jsonl', '{"text":"ok"}\nnot json\n');
    const seen: string[] = [];
    await expect(
      (async () => {
        for await (const d of readJsonl(file)) seen.push((d as TextDocument).text);
      })(),
    ).rejects.toThrow(/:2/);
    expect(seen).toEqual(['ok']);
  });

  it('names the field, file and line of a record that lacks the field', async () => {
    const file = tmpFile('missing.jsonl', '{"text":"a"}\n{"text":"b"}\n{"body":"c"}\n');
    await expect(collect(readJsonl(file))).rejects.toThrow(`${file}:3: missing field 'text'`);
  });

  it('rejects a field of the wrong type and a line that is not an object', async () => {
    await expect(collect(readJsonl(tmpFile('num.jsonl', '{"text": 5}\n')))).rejects.toThrow(
      /:1: field 'text' must be a string/,
    );
    await expect(collect(readJsonl(tmpFile('arr.jsonl', '["text"]\n')))).rejects.toThrow(
      /:1: expected a JSON object/,
    );
  });

  it('lists the available fields when the named one is not in the first record', async () => {
    await expect(collect(readJsonl(fixture('docs.jsonl'), { textField: 'body' }))).rejects.toThrow(
      /column 'body' not found; available columns: text, source/,
    );
    const file = tmpFile('nofield.jsonl', '{"body":"x","title":"y"}\n');
    await expect(collect(readJsonl(file))).rejects.toThrow(
      /no 'text', 'tokens' or 'input_ids' column.*body, title/,
    );
  });

  it('reads pre-tokenized records (tokens before input_ids before text, as SAELens)', async () => {
    const file = tmpFile(
      'tok.jsonl',
      '{"input_ids":[50256,1,2],"text":"ignored"}\n{"input_ids":[3],"text":"x"}\n{"input_ids":[],"text":""}\n',
    );
    const docs = await collect(readJsonl(file));
    expect(tokenLists(docs)).toEqual([[50256, 1, 2], [3], []]);
    expect((docs[0] as TokenDocument).tokens).toBeInstanceOf(Int32Array);
    const both = tmpFile('both.jsonl', '{"input_ids":[1],"tokens":[2]}\n');
    expect(tokenLists(await collect(readJsonl(both)))).toEqual([[2]]);
    expect(texts(await collect(readJsonl(file, { textField: 'text' })))).toEqual(['ignored', 'x', '']);
  });

  it('rejects token lists holding something other than token ids', async () => {
    for (const bad of ['[1,-1]', '[1,2.5]', '[1,"2"]', '[4294967296]', '"1 2 3"', 'null']) {
      const file = tmpFile('badtok.jsonl', `{"tokens":[1]}\n{"tokens":${bad}}\n`);
      await expect(collect(readJsonl(file)), bad).rejects.toThrow(new RegExp(`:2: field 'tokens'`));
    }
  });

  it('rejects textField together with tokensField', async () => {
    await expect(
      collect(readJsonl(fixture('docs.jsonl'), { textField: 'a', tokensField: 'b' })),
    ).rejects.toThrow(/either textField or tokensField/);
  });

  it('reports a missing file', async () => {
    await expect(collect(readJsonl(path.join(tmp, 'nope.jsonl')))).rejects.toThrow(/file not found/);
  });
});

describe('Parquet files', () => {
  for (const codec of ['snappy', 'zstd', 'gzip']) {
    it(`reads the text column across row groups (${codec})`, async () => {
      const file = fixture(`text-${codec}.parquet`);
      const docs = await collect(readParquet(file));
      expect(texts(docs)).toEqual(PARQUET_TEXTS);
      expect(docs.map((d) => d.id)).toEqual(PARQUET_TEXTS.map((_, i) => `${file}#${i}`));
    });
  }

  it('lists the columns and has several row groups', async () => {
    const { metadata } = await openParquet(fixture('text-snappy.parquet'));
    expect(parquetColumnNames(metadata)).toEqual(['text', 'meta']);
    expect(metadata.row_groups.map((g) => Number(g.num_rows))).toEqual([3, 3, 1]);
  });

  it('reads another column with textField', async () => {
    const docs = await collect(readParquet(fixture('text-snappy.parquet'), { textField: 'meta' }));
    expect(texts(docs)).toEqual(PARQUET_TEXTS.map((_, i) => `doc-${i}`));
  });

  it('names the missing column and lists the available ones', async () => {
    const file = fixture('text-snappy.parquet');
    await expect(collect(readParquet(file, { textField: 'content' }))).rejects.toThrow(
      `${file}: column 'content' not found; available columns: text, meta`,
    );
    await expect(collect(readParquet(file, { tokensField: 'input_ids' }))).rejects.toThrow(
      /'input_ids' not found/,
    );
  });

  it('reads pre-tokenized input_ids (list<int32>) and tokens (list<int64>)', async () => {
    const ids = await collect(readParquet(fixture('input-ids.parquet')));
    expect(tokenLists(ids)).toEqual([
      [50256, 464, 2068, 7586, 21831, 18045, 625, 262],
      [50256, 14134, 502, 1148, 49439, 13, 4042, 812],
      [50256, 40, 1101, 257, 1332, 13, 50256, 15496],
    ]);
    const tokens = await collect(readParquet(fixture('tokens-int64.parquet')));
    expect(tokenLists(tokens)).toEqual([[1, 2, 3], [4, 5, 6, 7, 8], [9]]);
    expect((tokens[0] as TokenDocument).tokens).toBeInstanceOf(Int32Array);
  });

  it('rejects a column of the wrong type, naming the row', async () => {
    const file = fixture('tokens-int64.parquet');
    await expect(collect(readParquet(file, { textField: 'id' }))).rejects.toThrow(
      `${file}#0: field 'id' must be a string`,
    );
    await expect(
      collect(readParquet(fixture('text-snappy.parquet'), { tokensField: 'text' })),
    ).rejects.toThrow(/#0: field 'text' must be a list of token ids/);
  });

  it('stops reading when the consumer stops', async () => {
    const seen: string[] = [];
    for await (const d of readParquet(fixture('text-zstd.parquet'))) {
      seen.push((d as TextDocument).text);
      if (seen.length === 2) break;
    }
    expect(seen).toEqual(PARQUET_TEXTS.slice(0, 2));
  });

  it('rejects a file that is not Parquet, or truncated, naming it', async () => {
    const garbage = tmpFile('garbage.parquet', 'this is not a parquet file at all');
    await expect(collect(readParquet(garbage))).rejects.toThrow(UserError);
    await expect(collect(readParquet(garbage))).rejects.toThrow(`${garbage}: not a readable Parquet file`);
    const bytes = readFileSync(fixture('text-snappy.parquet'));
    const truncated = tmpFile('truncated.parquet', bytes.subarray(0, Math.floor(bytes.length / 2)));
    await expect(collect(readParquet(truncated))).rejects.toThrow(
      `${truncated}: not a readable Parquet file`,
    );
    const empty = tmpFile('empty.parquet', '');
    await expect(collect(readParquet(empty))).rejects.toThrow(`${empty}: not a readable Parquet file`);
  });

  it('rejects a file whose data pages are corrupt, naming the file and row group', async () => {
    const bytes = Uint8Array.from(readFileSync(fixture('text-zstd.parquet')));
    // Overwrite the data after the leading magic, leaving the footer intact.
    for (let i = 4; i < 200; i++) bytes[i] = 0xff;
    const file = tmpFile('corrupt.parquet', bytes);
    await expect(collect(readParquet(file))).rejects.toThrow(
      `${file}: cannot decode column 'text' in row group 0`,
    );
  });

  it('reports a missing file', async () => {
    await expect(collect(readParquet(path.join(tmp, 'nope.parquet')))).rejects.toThrow(/file not found/);
  });
});
