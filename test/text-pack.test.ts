import { describe, expect, it } from 'vitest';
import { from, lastValueFrom, toArray } from 'rxjs';
import { UserError } from '../src/pipeline/errors.js';
import { mulberry32, randomInt } from '../src/util/random.js';
import { pack, packTokens, TokenPacker, type PackOptions } from '../src/stages/text/pack.js';
import type { TokenBatch } from '../src/stages/text/types.js';

const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);
/** The four documents SAELens's own tests use: 0..18 cut at 3, 10 and 17. */
const docs19 = [range(0, 3), range(3, 10), range(10, 17), range(17, 19)];
/** Five documents: 0..18 cut at 3, 8, 11 and 17. */
const docs19b = [range(0, 3), range(3, 8), range(8, 11), range(11, 17), range(17, 19)];

/** No special tokens at all unless a test asks for them; a big batch so that one batch holds every window. */
const plain: PackOptions = {
  contextSize: 5,
  batchSize: 100,
  prependBos: false,
  sequenceSeparatorToken: null,
};

function windows(docs: number[][], opts: PackOptions): number[][] {
  const out: number[][] = [];
  for (const batch of packTokens(docs, opts)) {
    for (let r = 0; r < batch.batchSize; r++) {
      out.push(Array.from(batch.tokens.subarray(r * batch.contextSize, (r + 1) * batch.contextSize)));
    }
  }
  return out;
}

describe('packTokens, concatenating documents (SAELens concat_and_batch_sequences)', () => {
  it('cuts the concatenation into windows when no special token is asked for', () => {
    const all = range(0, 20);
    expect(windows([all.slice(0, 3), all.slice(3, 10), all.slice(10, 17), all.slice(17)], plain)).toEqual([
      range(0, 5),
      range(5, 10),
      range(10, 15),
      range(15, 20),
    ]);
  });

  it('drops the tokens that do not fill a last window', () => {
    const packer = new TokenPacker(plain);
    const batches = [...docs19.flatMap((d) => [...packer.push(Int32Array.from(d))]), ...packer.finish()];
    expect(batches).toHaveLength(1);
    expect(Array.from(batches[0]!.tokens)).toEqual(range(0, 15));
    expect(packer.windowCount).toBe(3);
    expect(packer.droppedTokens).toBe(4);
  });

  it('puts BOS at the start of every window with prependBos', () => {
    expect(windows(docs19, { ...plain, prependBos: true, bosTokenId: 999 })).toEqual([
      [999, 0, 1, 2, 3],
      [999, 4, 5, 6, 7],
      [999, 8, 9, 10, 11],
      [999, 12, 13, 14, 15],
    ]);
  });

  it('uses BOS both to begin windows and to separate documents by default, as ActivationsStore does', () => {
    expect(windows(docs19, { contextSize: 5, batchSize: 100, bosTokenId: 999 })).toEqual([
      [999, 0, 1, 2, 999],
      [999, 3, 4, 5, 6],
      [999, 7, 8, 9, 999],
      [999, 10, 11, 12, 13],
      [999, 14, 15, 16, 999],
    ]);
  });

  it('defaults to the GPT-2 BOS id 50256', () => {
    expect(windows([[1, 2, 3]], { contextSize: 4, batchSize: 1 })).toEqual([[50256, 1, 2, 3]]);
  });

  it('separates documents with sequenceSeparatorToken', () => {
    expect(windows(docs19, { ...plain, sequenceSeparatorToken: 997 })).toEqual([
      [0, 1, 2, 997, 3],
      [4, 5, 6, 7, 8],
      [9, 997, 10, 11, 12],
      [13, 14, 15, 16, 997],
    ]);
  });

  it('starts every document with beginSequenceToken', () => {
    expect(windows(docs19, { ...plain, beginSequenceToken: 998 })).toEqual([
      [998, 0, 1, 2, 998],
      [3, 4, 5, 6, 7],
      [8, 9, 998, 10, 11],
      [12, 13, 14, 15, 16],
    ]);
  });

  it('combines all three special tokens, cutting off the ones that do not fit', () => {
    expect(
      windows(docs19b, {
        contextSize: 5,
        batchSize: 100,
        beginBatchToken: 999,
        beginSequenceToken: 998,
        sequenceSeparatorToken: 997,
      }),
    ).toEqual([
      [999, 998, 0, 1, 2],
      [999, 998, 3, 4, 5],
      [999, 6, 7, 997, 998],
      [999, 8, 9, 10, 997],
      [999, 11, 12, 13, 14],
      [999, 15, 16, 997, 998],
    ]);
  });

  it('collapses identical special tokens into one', () => {
    expect(
      windows(docs19b, {
        contextSize: 5,
        batchSize: 100,
        bosTokenId: 999,
        beginSequenceToken: 'bos',
        sequenceSeparatorToken: 'bos',
      }),
    ).toEqual([
      [999, 0, 1, 2, 999],
      [999, 3, 4, 5, 6],
      [999, 7, 999, 8, 9],
      [999, 10, 999, 11, 12],
      [999, 13, 14, 15, 16],
    ]);
  });

  it('does not double the BOS of pre-tokenized documents that already start with it', () => {
    expect(
      windows(
        [
          [999, 1, 2, 3, 4, 5, 6],
          [999, 7, 8],
        ],
        { contextSize: 4, batchSize: 9, bosTokenId: 999 },
      ),
    ).toEqual([
      [999, 1, 2, 3],
      [999, 4, 5, 6],
    ]);
  });

  it('makes progress when the special tokens alone fill a window (context_size 2)', () => {
    expect(
      windows([[1, 2, 3]], { ...plain, contextSize: 2, beginBatchToken: 999, beginSequenceToken: 998 }),
    ).toEqual([
      [999, 998],
      [999, 1],
      [999, 2],
      [999, 3],
    ]);
  });

  it('skips empty documents', () => {
    expect(
      windows([[], [1, 2], [], [3, 4, 5]], { ...plain, contextSize: 3, sequenceSeparatorToken: 0 }),
    ).toEqual([
      [1, 2, 0],
      [3, 4, 5],
    ]);
  });

  it("resolves 'eos' to eosTokenId", () => {
    expect(
      windows([[1], [2, 3]], { ...plain, contextSize: 4, sequenceSeparatorToken: 'eos', eosTokenId: 7 }),
    ).toEqual([[1, 7, 2, 3]]);
  });
});

describe('packTokens with disableConcatSequences', () => {
  const disabled: PackOptions = { ...plain, disableConcatSequences: true };

  it('takes one window from the start of each long-enough document and drops the rest', () => {
    const all = range(0, 20);
    const packer = new TokenPacker(disabled);
    const docs = [all.slice(0, 3), all.slice(3, 10), all.slice(10, 17), all.slice(17)];
    const batches = [...docs.flatMap((d) => [...packer.push(Int32Array.from(d))]), ...packer.finish()];
    expect(Array.from(batches[0]!.tokens)).toEqual([3, 4, 5, 6, 7, 10, 11, 12, 13, 14]);
    expect(packer.droppedTokens).toBe(20 - 10);
  });

  it('puts BOS in front of documents with prependBos, and ignores the separator', () => {
    expect(
      windows(docs19, { ...disabled, prependBos: true, bosTokenId: 999, sequenceSeparatorToken: 997 }),
    ).toEqual([
      [999, 3, 4, 5, 6],
      [999, 10, 11, 12, 13],
    ]);
  });

  it('lets a document one token short fill a window once BOS is added', () => {
    expect(windows([[1, 2, 3, 4]], { ...disabled, prependBos: true, bosTokenId: 999 })).toEqual([
      [999, 1, 2, 3, 4],
    ]);
    expect(windows([[1, 2, 3, 4]], disabled)).toEqual([]);
  });

  it('keeps a leading BOS instead of adding another', () => {
    const opts = { ...disabled, prependBos: true, bosTokenId: 999 };
    expect(windows([[999, 1, 2, 3]], opts)).toEqual([]);
    expect(windows([[999, 1, 2, 3, 4, 5]], opts)).toEqual([[999, 1, 2, 3, 4]]);
  });

  it('prefers beginSequenceToken over the BOS of prependBos', () => {
    expect(
      windows(docs19, { ...disabled, prependBos: true, bosTokenId: 999, beginSequenceToken: 888 }),
    ).toEqual([
      [888, 3, 4, 5, 6],
      [888, 10, 11, 12, 13],
    ]);
  });

  it('skips empty documents', () => {
    expect(
      windows([[], range(0, 10), [], range(5, 15)], { ...disabled, prependBos: true, bosTokenId: 999 }),
    ).toEqual([
      [999, 0, 1, 2, 3],
      [999, 5, 6, 7, 8],
    ]);
  });
});

describe('batches', () => {
  it('groups windows into batches of batchSize, the last one partial, with global window ids', () => {
    const batches = [...packTokens([range(0, 23)], { ...plain, contextSize: 4, batchSize: 2 })];
    expect(batches.map((b) => b.batchSize)).toEqual([2, 2, 1]);
    expect(batches.map((b) => Array.from(b.seqIds))).toEqual([[0, 1], [2, 3], [4]]);
    expect(batches.every((b) => b.contextSize === 4)).toBe(true);
    expect(batches.map((b) => b.tokens.length)).toEqual([8, 8, 4]);
    expect(batches.map((b) => Array.from(b.tokens))).toEqual([range(0, 8), range(8, 16), range(16, 20)]);
    expect(batches[0]!.tokens).toBeInstanceOf(Int32Array);
  });

  it('emits nothing when no window is complete', () => {
    expect([...packTokens([[1, 2]], { ...plain, contextSize: 4, batchSize: 2 })]).toEqual([]);
  });

  it('does not reuse the buffers of emitted batches', () => {
    const batches = [...packTokens([range(0, 16)], { ...plain, contextSize: 4, batchSize: 2 })];
    expect(batches[0]!.tokens.buffer).not.toBe(batches[1]!.tokens.buffer);
    expect(Array.from(batches[0]!.tokens)).toEqual(range(0, 8));
  });

  it('accepts token documents, Int32Arrays and arrays alike', () => {
    const opts = { ...plain, contextSize: 3, batchSize: 4 };
    const a = [
      ...packTokens([{ id: 'a', tokens: Int32Array.from([1, 2, 3]) }, Int32Array.from([4, 5, 6])], opts),
    ];
    const b = [
      ...packTokens(
        [
          [1, 2, 3],
          [4, 5, 6],
        ],
        opts,
      ),
    ];
    expect(a).toEqual(b);
  });
});

describe('options', () => {
  it('rejects context_size below 2 or not an integer', () => {
    expect(() => new TokenPacker({ contextSize: 1, batchSize: 1 })).toThrow(UserError);
    expect(() => new TokenPacker({ contextSize: 1, batchSize: 1 })).toThrow(/context_size/);
    expect(() => new TokenPacker({ contextSize: 2.5, batchSize: 1 })).toThrow(/context_size/);
    expect(() => new TokenPacker({ contextSize: Number.NaN, batchSize: 1 })).toThrow(/context_size/);
  });

  it('rejects a batch size below 1', () => {
    expect(() => new TokenPacker({ contextSize: 8, batchSize: 0 })).toThrow(/batch_size/);
  });

  it('rejects special tokens that are not ids', () => {
    expect(() => new TokenPacker({ contextSize: 8, batchSize: 1, sequenceSeparatorToken: -1 })).toThrow(
      /sequence_separator_token/,
    );
    expect(
      () => new TokenPacker({ contextSize: 8, batchSize: 1, beginBatchToken: 'sep' as unknown as number }),
    ).toThrow(/begin_batch_token/);
  });

  it('the stage checks its options when it is built', () => {
    expect(() => pack({ contextSize: 0, batchSize: 4 })).toThrow(UserError);
  });
});

/**
 * A second, deliberately naive implementation of SAELens's algorithm (arrays and slicing, one step per
 * call, as in the Python), to compare against the buffer-based packer on random inputs.
 */
function referenceWindows(
  docs: number[][],
  o: { ctx: number; bb: number | null; bs: number | null; sep: number | null; disable: boolean },
): number[][] {
  const out: number[][] = [];
  if (o.disable) {
    const begin = o.bs ?? o.bb;
    for (let seq of docs) {
      if (begin !== null && seq.length >= o.ctx - 1 && seq[0] !== begin)
        seq = [begin, ...seq.slice(0, o.ctx - 1)];
      if (seq.length >= o.ctx) out.push(seq.slice(0, o.ctx));
    }
    return out;
  }
  let batch: number[] | null = null;
  for (const tokens of docs) {
    let offset = 0;
    let start = true;
    while (tokens.length - offset > 0) {
      const prefix: number[] = [];
      let first = tokens[offset];
      if (start && o.bs !== null && first !== o.bs) {
        prefix.unshift(o.bs);
        first = o.bs;
      }
      if (batch === null) {
        if (o.bb !== null && first !== o.bb) prefix.unshift(o.bb);
        const needed = Math.max(o.ctx - prefix.length, 0);
        batch = [...prefix.slice(0, o.ctx), ...tokens.slice(offset, offset + needed)];
        offset += needed;
      } else {
        if (o.sep !== null && first !== o.sep) prefix.unshift(o.sep);
        const needed = Math.max(o.ctx - batch.length - prefix.length, 0);
        batch = [
          ...batch,
          ...prefix.slice(0, Math.max(o.ctx - batch.length, 0)),
          ...tokens.slice(offset, offset + needed),
        ];
        offset += needed;
      }
      start = false;
      if (batch.length === o.ctx) {
        out.push(batch);
        batch = null;
      }
    }
  }
  return out;
}

describe('packTokens against a naive reference on random inputs', () => {
  it('agrees on 300 random cases across all modes', () => {
    const random = mulberry32(1234);
    const pick = () => (random() < 0.5 ? null : randomInt(random, 4));
    for (let trial = 0; trial < 300; trial++) {
      const docs = Array.from({ length: randomInt(random, 8) }, () =>
        Array.from({ length: randomInt(random, 15) }, () => randomInt(random, 5)),
      );
      const o = {
        ctx: 2 + randomInt(random, 6),
        bb: pick(),
        bs: pick(),
        sep: pick(),
        disable: random() < 0.3,
      };
      const opts: PackOptions = {
        contextSize: o.ctx,
        batchSize: 1 + randomInt(random, 4),
        beginBatchToken: o.bb,
        beginSequenceToken: o.bs,
        sequenceSeparatorToken: o.sep,
        disableConcatSequences: o.disable,
      };
      expect(windows(docs, opts), JSON.stringify({ docs, o })).toEqual(referenceWindows(docs, o));
    }
  });

  it('is deterministic', () => {
    const docs = Array.from({ length: 50 }, (_, i) => range(i * 7, i * 7 + (i % 13)));
    const opts = { contextSize: 16, batchSize: 3 };
    expect([...packTokens(docs, opts)]).toEqual([...packTokens(docs, opts)]);
  });
});

describe('pack stage', () => {
  it('emits what packTokens yields, flushing the partial batch on completion', async () => {
    const docs = docs19b.map((d, i) => ({ id: `d${i}`, tokens: Int32Array.from(d) }));
    const opts: PackOptions = { contextSize: 5, batchSize: 4, bosTokenId: 999 };
    const out: TokenBatch[] = await lastValueFrom(from(docs).pipe(pack(opts), toArray()));
    expect(out).toEqual([...packTokens(docs, opts)]);
    expect(out.map((b) => b.batchSize)).toEqual([4, 1]);
    expect(pack(opts).stageName).toBe('pack');
  });

  it('keeps separate state per subscription', async () => {
    const stage = pack({ contextSize: 3, batchSize: 1, prependBos: false, sequenceSeparatorToken: null });
    const source = from([{ id: 'a', tokens: Int32Array.from([1, 2, 3, 4]) }]);
    const first = await lastValueFrom(source.pipe(stage, toArray()));
    const second = await lastValueFrom(source.pipe(stage, toArray()));
    expect(second).toEqual(first);
    expect(first.map((b) => Array.from(b.seqIds))).toEqual([[0]]);
  });
});
