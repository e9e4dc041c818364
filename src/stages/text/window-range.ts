import { defer, filter, map, takeWhile } from 'rxjs';
import { defineStage, type Stage } from '../../pipeline/stage.js';
import type { TokenBatch } from './types.js';

function sliceRows(batch: TokenBatch, start: number, end: number): TokenBatch {
  return {
    tokens: batch.tokens.subarray(start * batch.contextSize, end * batch.contextSize),
    batchSize: end - start,
    contextSize: batch.contextSize,
    seqIds: batch.seqIds.subarray(start, end),
  };
}

/**
 * Keeps windows [skip, skip + take) of a token-batch stream (counted across batches) and completes once
 * the last one has passed, which unsubscribes the source: `take` is how `max_tokens` stops a run early,
 * `skip` is how a resumed run passes over windows it already processed without running the model on them.
 */
export function windowRange(range: { skip?: number; take?: number | null }): Stage<TokenBatch, TokenBatch> {
  const skip = range.skip ?? 0;
  const take = range.take ?? Infinity;
  if (!Number.isSafeInteger(skip) || skip < 0) throw new RangeError(`windowRange: bad skip ${skip}`);
  if (take !== Infinity && (!Number.isSafeInteger(take) || take < 0))
    throw new RangeError(`windowRange: bad take ${take}`);
  return defineStage('window-range', (source) =>
    defer(() => {
      const end = skip + take;
      let seen = 0;
      return source.pipe(
        takeWhile(() => seen < end),
        map((batch) => {
          const first = seen;
          seen += batch.batchSize;
          const from = Math.max(skip, first) - first;
          const to = Math.min(end, seen) - first;
          if (to <= from) return null;
          return from === 0 && to === batch.batchSize ? batch : sliceRows(batch, from, to);
        }),
        // Complete as soon as the last wanted window has passed, rather than on the next batch.
        takeWhile(() => seen < end, true),
        filter((b): b is TokenBatch => b !== null),
      );
    }),
  );
}
