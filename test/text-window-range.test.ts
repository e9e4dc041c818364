import { from, lastValueFrom, toArray, tap } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { windowRange } from '../src/stages/text/window-range.js';
import type { TokenBatch } from '../src/stages/text/types.js';

const batch = (first: number, n: number): TokenBatch => ({
  tokens: Int32Array.from({ length: n * 2 }, (_, i) => (first + Math.floor(i / 2)) * 10 + (i % 2)),
  batchSize: n,
  contextSize: 2,
  seqIds: Int32Array.from({ length: n }, (_, i) => first + i),
});

const run = async (skip: number, take: number | null) => {
  let pulled = 0;
  const out = await lastValueFrom(
    from([batch(0, 3), batch(3, 3), batch(6, 3), batch(9, 3)]).pipe(
      tap(() => pulled++),
      windowRange({ skip, take }),
      toArray(),
    ),
    { defaultValue: [] },
  );
  return { ids: out.flatMap((b) => Array.from(b.seqIds)), out, pulled };
};

describe('windowRange', () => {
  it('keeps the windows in range across batch boundaries, tokens and ids together', async () => {
    const { ids, out } = await run(2, 5);
    expect(ids).toEqual([2, 3, 4, 5, 6]);
    expect(Array.from(out[0]!.tokens)).toEqual([20, 21]);
    expect(out.every((b) => b.tokens.length === b.batchSize * 2)).toBe(true);
  });

  it('stops pulling once the last window has passed', async () => {
    const { pulled } = await run(0, 4);
    expect(pulled).toBe(2);
  });

  it('passes everything with no range and nothing with take 0', async () => {
    expect((await run(0, null)).ids).toHaveLength(12);
    expect((await run(12, null)).ids).toHaveLength(0);
    expect((await run(0, 0)).ids).toHaveLength(0);
  });
});
