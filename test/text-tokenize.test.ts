import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { from, lastValueFrom, toArray } from 'rxjs';
import { decodeGpt2, encodeGpt2, GPT2_BOS_ID, tokenize } from '../src/stages/text/tokenize.js';
import type { Document } from '../src/stages/text/types.js';

/** Ids computed by js-tiktoken (see test/fixtures/text/make_gpt2_ids.ts), frozen. */
const fixture = JSON.parse(
  readFileSync(new URL('./fixtures/text/gpt2-ids.json', import.meta.url), 'utf8'),
) as {
  cases: Record<string, { text: string; ids: number[] }>;
};

describe('encodeGpt2', () => {
  it('gives the well-known GPT-2 ids', () => {
    expect(Array.from(encodeGpt2('Hello world'))).toEqual([15496, 995]);
    expect(Array.from(encodeGpt2(' '))).toEqual([220]);
    expect(Array.from(encodeGpt2('\n'))).toEqual([198]);
    expect(Array.from(encodeGpt2('\n\n'))).toEqual([628]);
    expect(Array.from(encodeGpt2(' the'))).toEqual([262]);
    expect(Array.from(encodeGpt2(''))).toEqual([]);
    expect(GPT2_BOS_ID).toBe(50256);
  });

  it('returns an Int32Array', () => {
    expect(encodeGpt2('abc')).toBeInstanceOf(Int32Array);
    expect(encodeGpt2('')).toBeInstanceOf(Int32Array);
  });

  it('has fixture cases for every kind of tricky text', () => {
    expect(Object.keys(fixture.cases)).toEqual(
      expect.arrayContaining([
        'whitespace_runs',
        'contractions',
        'numbers',
        'accents',
        'cjk',
        'emoji',
        'newlines',
      ]),
    );
    expect(fixture.cases.moby_dick_chapter_1!.ids.length).toBeGreaterThan(2000);
  });

  for (const [name, { text, ids }] of Object.entries(fixture.cases)) {
    it(`matches the independent tokenizer on ${name}`, () => {
      expect(Array.from(encodeGpt2(text))).toEqual(ids);
    });
  }

  it('maps the literal <|endoftext|> to the special id, as Hugging Face GPT2TokenizerFast does', () => {
    expect(Array.from(encodeGpt2('<|endoftext|>'))).toEqual([50256]);
    const hello = Array.from(encodeGpt2('Hello'));
    const world = Array.from(encodeGpt2(' world'));
    expect(Array.from(encodeGpt2('Hello<|endoftext|> world'))).toEqual([...hello, 50256, ...world]);
    // A partial or differently spelled marker stays text.
    expect(Array.from(encodeGpt2('<|endoftext|'))).not.toContain(50256);
    expect(Array.from(encodeGpt2('<|ENDOFTEXT|>'))).not.toContain(50256);
  });
});

describe('decodeGpt2', () => {
  it('inverts encodeGpt2 on every fixture text', () => {
    for (const { text, ids } of Object.values(fixture.cases)) expect(decodeGpt2(ids)).toBe(text);
  });

  it('accepts typed arrays', () => {
    expect(decodeGpt2(Int32Array.from([15496, 995]))).toBe('Hello world');
    expect(decodeGpt2([50256])).toBe('<|endoftext|>');
  });

  it('rejects ids outside the vocabulary', () => {
    expect(() => decodeGpt2([50257])).toThrow(RangeError);
    expect(() => decodeGpt2([-1])).toThrow(/vocabulary/);
  });
});

describe('tokenize stage', () => {
  it('turns text documents into token documents and passes token documents through', async () => {
    const pre = { id: 'pre', tokens: Int32Array.from([1, 2, 3]) };
    const docs: Document[] = [{ id: 'a', text: 'Hello world' }, pre, { id: 'empty', text: '' }];
    const out = await lastValueFrom(from(docs).pipe(tokenize(), toArray()));
    expect(out.map((d) => d.id)).toEqual(['a', 'pre', 'empty']);
    expect(Array.from(out[0]!.tokens)).toEqual([15496, 995]);
    expect(out[1]).toBe(pre);
    expect(out[2]!.tokens.length).toBe(0);
    expect(tokenize().stageName).toBe('tokenize');
  });
});
