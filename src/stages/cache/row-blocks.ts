import { createHash } from 'node:crypto';
import { concatMap, defer, filter, from, tap } from 'rxjs';
import { type ActivationBatch, activationIds, sliceActivationBatch } from '../../arrow/index.js';
import { type Stage, defineStage } from '../../pipeline/stage.js';
import type { TokenBatch } from '../text/types.js';

/**
 * Which rows of the token stream one cache task writes.
 *
 * The stream (documents packed into windows, one row per token) is cut into blocks of `rowsPerBlock` rows,
 * which are exactly the shards a single run would write; task `index` of `count` owns blocks index,
 * index + count, ... Every task packs the same whole stream, so windows, model batches and shard contents
 * are those of the single run, and the merged cache is the single run's, shard for shard. A task's own rows,
 * in order, are its cache; it skips the first `skipRows` of them (already written before an interruption).
 */
export interface RowBlockPlan {
  readonly index: number;
  readonly count: number;
  readonly rowsPerBlock: number;
  readonly skipRows: number;
}

/** A plan that keeps every row after the first `skipRows`: an unsplit run, fresh or resumed. */
export function wholeStreamPlan(rowsPerBlock: number, skipRows: number): RowBlockPlan {
  return { index: 0, count: 1, rowsPerBlock, skipRows };
}

function checkPlan(p: RowBlockPlan): void {
  const ok =
    Number.isSafeInteger(p.count) &&
    p.count >= 1 &&
    Number.isSafeInteger(p.index) &&
    p.index >= 0 &&
    p.index < p.count &&
    Number.isSafeInteger(p.rowsPerBlock) &&
    p.rowsPerBlock >= 1 &&
    Number.isSafeInteger(p.skipRows) &&
    p.skipRows >= 0;
  if (!ok) throw new RangeError(`row block plan: invalid ${JSON.stringify(p)}`);
}

/** The global row where the task's kept rows start: its `skipRows`-th own row. */
function firstKeptRow(p: RowBlockPlan): number {
  const block = p.index + Math.floor(p.skipRows / p.rowsPerBlock) * p.count;
  return block * p.rowsPerBlock + (p.skipRows % p.rowsPerBlock);
}

/** The task's kept rows within global rows [start, end), as [from, to) runs in order. */
export function keptRuns(p: RowBlockPlan, start: number, end: number): Array<[number, number]> {
  const runs: Array<[number, number]> = [];
  const from = Math.max(start, firstKeptRow(p));
  const R = p.rowsPerBlock;
  for (let block = Math.floor(from / R); block * R < end; block++) {
    if (block % p.count !== p.index) continue;
    const a = Math.max(from, block * R);
    const b = Math.min(end, (block + 1) * R);
    if (a >= b) continue;
    const last = runs[runs.length - 1];
    if (last && last[1] === a) last[1] = b;
    else runs.push([a, b]);
  }
  return runs;
}

/**
 * Token batches whose windows hold a kept row pass whole (the model must see the single run's batches:
 * kernels may round differently for other batch shapes); the others are dropped before the model runs.
 */
export function selectPlannedBatches(plan: RowBlockPlan): Stage<TokenBatch, TokenBatch> {
  checkPlan(plan);
  return defineStage(
    'select-row-blocks',
    filter((b: TokenBatch) => {
      const first = b.seqIds[0];
      if (first === undefined) return false;
      const start = first * b.contextSize;
      return keptRuns(plan, start, start + b.batchSize * b.contextSize).length > 0;
    }),
  );
}

/** Cuts the kept rows out of the model's activation batches (rows carry their window and position). */
export function keepPlannedRows(
  plan: RowBlockPlan,
  contextSize: number,
): Stage<ActivationBatch, ActivationBatch> {
  checkPlan(plan);
  return defineStage(
    'keep-row-blocks',
    concatMap((batch: ActivationBatch) => {
      const ids = activationIds(batch);
      if (!ids)
        throw new Error('keep-row-blocks: activation batches need seq/pos to be placed in the stream');
      const start = Number(ids.seq[0] ?? 0n) * contextSize + (ids.pos[0] ?? 0);
      return from(
        keptRuns(plan, start, start + batch.numRows).map(([a, b]) =>
          sliceActivationBatch(batch, a - start, b - start),
        ),
      );
    }),
  );
}

/** What every task of a split cache run saw of the whole token stream; all of them must agree. */
export interface StreamSummary {
  windows: number;
  /** sha256 over every window's token ids (int32, little-endian) in stream order. */
  tokensSha256: string;
}

/**
 * Counts and hashes every window of the stream as it passes (before any task selects its blocks), so the
 * finishing step can tell whether the tasks read the same data: a dataset that differs between machines
 * would otherwise give a cache stitched from two streams. `done` is called when the stream completes.
 */
export function summarizeStream(done: (summary: StreamSummary) => void): Stage<TokenBatch, TokenBatch> {
  return defineStage('summarize-stream', (source) =>
    defer(() => {
      const hash = createHash('sha256');
      let windows = 0;
      return source.pipe(
        tap({
          next: (b) => {
            windows += b.batchSize;
            hash.update(
              new Uint8Array(b.tokens.buffer, b.tokens.byteOffset, b.batchSize * b.contextSize * 4),
            );
          },
          complete: () => done({ windows, tokensSha256: hash.digest('hex') }),
        }),
      );
    }),
  );
}
