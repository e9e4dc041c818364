import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { lastValueFrom, toArray } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { asyncStage } from '../src/pipeline/async-stage.js';
import { Flow } from '../src/pipeline/flow.js';
import {
  documentSource,
  encodeGpt2,
  loadCorpus,
  pack,
  packTokens,
  readDocuments,
  tokenize,
  type TextDocument,
  type TokenDocument,
} from '../src/stages/text/index.js';
import { readPlainText } from '../src/stages/text/sources/plain-text.js';
import { PIECE_CHARS, textPieces } from '../src/stages/text/sources/text-pieces.js';

/** Equality of long id arrays without vitest's element-by-element diffing (seconds on millions of ids). */
const sameIds = (a: Int32Array, b: Int32Array) =>
  a.length === b.length &&
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

const concatIds = (parts: Int32Array[]) => {
  const out = new Int32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

async function collectPieces(text: string, size: number): Promise<string[]> {
  const out: string[] = [];
  for await (const p of textPieces([text], size)) out.push(p);
  return out;
}

/** A big single-document file: Moby-Dick repeated, about `mb` MB. */
function bigText(mb: number): string {
  const book = loadCorpus('moby-dick')
    .map((d) => d.text)
    .join('\n\n');
  return book.repeat(Math.ceil((mb * 1e6) / book.length));
}

describe('long documents are read and tokenized in pieces', () => {
  it.each(['moby-dick', 'sotu'] as const)(
    'pieces cut at the boundary rule tokenize to the ids of the whole text (%s)',
    async (corpus) => {
      // Small pieces, so that the corpus is cut at thousands of places.
      const text = loadCorpus(corpus)
        .map((d) => d.text)
        .join('\n\n');
      const pieces = await collectPieces(text, 512);
      expect(pieces.length).toBeGreaterThan(text.length / 1024);
      expect(pieces.join('')).toBe(text);
      expect(sameIds(concatIds(pieces.map(encodeGpt2)), encodeGpt2(text))).toBe(true);
    },
    60_000,
  );

  it('the boundary rule holds where BPE is most context-dependent', async () => {
    const tricky = "a  b\n\nc 's 're\t\tx 123 456 !! ?? \u00a0é 😀 😀x  \n y <|endoftext|> z ".repeat(50);
    const pieces = await collectPieces(tricky, 7);
    expect(pieces.length).toBeGreaterThan(50);
    expect(concatIds(pieces.map(encodeGpt2))).toEqual(encodeGpt2(tricky));
  });

  it('a .txt file comes in pieces of bounded size that join to its text', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'saeflow-stream-'));
    const file = path.join(dir, 'big.txt');
    const text = bigText(2);
    writeFileSync(file, text);
    const pieces: TextDocument[] = [];
    for await (const p of readPlainText(file)) pieces.push(p);
    expect(pieces.length).toBeGreaterThan(text.length / (2 * PIECE_CHARS));
    expect(Math.max(...pieces.map((p) => p.text.length))).toBeLessThanOrEqual(2 * PIECE_CHARS);
    expect(pieces.map((p) => p.text).join('')).toBe(text);
    expect(pieces[0]?.more).toBe(true);
    expect(pieces.slice(1).every((p) => p.continues)).toBe(true);
    expect(pieces.at(-1)?.more).toBeUndefined();
  });

  it('packing the pieces gives the windows of the whole document, joined or not', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'saeflow-stream-'));
    const file = path.join(dir, 'doc.txt');
    writeFileSync(file, bigText(0.3));
    const other = path.join(dir, 'other.jsonl');
    writeFileSync(other, `${JSON.stringify({ text: 'A short second document.' })}\n`);
    const whole = [
      { id: 'a', tokens: encodeGpt2(bigText(0.3)) },
      { id: 'b', tokens: encodeGpt2('A short second document.') },
    ];
    const pieces: TokenDocument[] = [];
    for await (const d of readDocuments(dir)) {
      const { text, ...rest } = d as TextDocument;
      pieces.push({ ...rest, tokens: encodeGpt2(text) });
    }
    expect(pieces.length).toBeGreaterThan(10);
    for (const disableConcatSequences of [false, true]) {
      const opts = { contextSize: 64, batchSize: 8, disableConcatSequences };
      expect([...packTokens(pieces, opts)]).toEqual([...packTokens(whole, opts)]);
    }
  });

  it('a stop request ends a run over one large document within a few batches', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'saeflow-stream-'));
    const file = path.join(dir, 'big.txt');
    writeFileSync(file, bigText(4));
    const flow = new Flow(2);
    let processed = 0;
    const started = Date.now();
    const out = await lastValueFrom(
      documentSource(file, {}, flow).pipe(
        tokenize(),
        pack({ contextSize: 128, batchSize: 16 }),
        asyncStage(
          'slow',
          async (batch, emit) => {
            processed++;
            if (processed === 1) flow.stop();
            await new Promise((r) => setTimeout(r, 1));
            emit(batch.batchSize);
          },
          { flow },
        ),
        toArray(),
      ),
    );
    // The whole file is ~500 batches; a piece is at most a few.
    expect(out.length).toBeLessThan(12);
    expect(Date.now() - started).toBeLessThan(5_000);
  }, 20_000);
});
