import { defer, filter, map } from 'rxjs';
import { type ActivationBatch, sliceActivationBatch } from '../../arrow/index.js';
import { type Stage, defineStage } from '../../pipeline/stage.js';

/**
 * Drops the first `rows` rows of a stream of activation batches: how a resumed run skips what the cache
 * already holds (`openCacheForResume(dir).completeRows`) when its upstream cannot skip cheaper itself.
 */
export function skipActivationRows(rows: number): Stage<ActivationBatch, ActivationBatch> {
  if (!Number.isSafeInteger(rows) || rows < 0)
    throw new RangeError(`skipActivationRows: invalid row count ${rows}`);
  return defineStage('skip-rows', (source) =>
    defer(() => {
      let left = rows;
      return source.pipe(
        map((batch) => {
          if (left === 0) return batch;
          const skip = Math.min(left, batch.numRows);
          left -= skip;
          return skip === batch.numRows ? null : sliceActivationBatch(batch, skip);
        }),
        filter((b): b is ActivationBatch => b !== null),
      );
    }),
  );
}
