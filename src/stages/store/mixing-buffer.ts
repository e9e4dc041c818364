import type { Mulberry32 } from '../../util/random.js';
import { emptyBlock, gatherFromBlocks, sliceBlock, type HookWidths, type RowBlock } from './row-block.js';

/**
 * SAELens's mixing buffer (sae_lens/training/mixing_buffer.py): activations accumulate until the buffer
 * holds `bufferSize` rows; then it is shuffled, and whole batches amounting to half of it are served
 * while the other half stays to be mixed with the next activations. So every served batch mixes tokens
 * from many sequences, and consecutive batches share no ordering.
 *
 * One deliberate difference: at the end of the stream SAELens serves the leftover rows in buffer order;
 * we shuffle them first (the leftovers include the unshuffled tail of the stream).
 */
export class MixingBuffer {
  private storage: RowBlock;
  private pending: RowBlock[] = [];
  private pendingRows = 0;

  constructor(
    private readonly widths: HookWidths,
    readonly bufferSize: number,
    readonly batchSize: number,
    private readonly random: Mulberry32,
  ) {
    if (!Number.isInteger(batchSize) || batchSize < 1)
      throw new RangeError(`batchSize must be >= 1, got ${batchSize}`);
    if (!Number.isInteger(bufferSize) || bufferSize < batchSize) {
      throw new RangeError(`bufferSize (${bufferSize}) must be an integer >= batchSize (${batchSize})`);
    }
    this.storage = emptyBlock(widths);
  }

  /** Rows held now (storage plus not yet mixed input). */
  get rows(): number {
    return this.storage.rows + this.pendingRows;
  }

  /** Adds rows; returns the batches that became ready (possibly none). */
  push(block: RowBlock): RowBlock[] {
    if (block.rows === 0) return [];
    this.pending.push(block);
    this.pendingRows += block.rows;
    if (this.rows < this.bufferSize) return [];
    // The served rows and the kept rows are gathered into two arrays straight from the held blocks: the
    // peak is the held rows plus one shuffled copy (2x the buffer), not a concatenated copy as well,
    // and the served batches' array is released independently of the kept half.
    const { sources, order } = this.takeAll();
    const serving = Math.max(1, Math.floor(order.length / (2 * this.batchSize)));
    const cutoff = serving * this.batchSize;
    const served = gatherFromBlocks(sources, this.widths, order, 0, cutoff);
    this.storage = gatherFromBlocks(sources, this.widths, order, cutoff, order.length);
    const batches: RowBlock[] = [];
    for (let i = 0; i < serving; i++) {
      batches.push(sliceBlock(served, this.widths, i * this.batchSize, (i + 1) * this.batchSize));
    }
    return batches;
  }

  /** At the end of the stream: the remaining whole batches, shuffled; a partial batch is dropped. */
  finish(): RowBlock[] {
    const all = this.mixAll();
    const n = Math.floor(all.rows / this.batchSize);
    const batches = Array.from({ length: n }, (_, i) =>
      sliceBlock(all, this.widths, i * this.batchSize, (i + 1) * this.batchSize),
    );
    this.storage = emptyBlock(this.widths);
    return batches;
  }

  private mixAll(): RowBlock {
    const { sources, order } = this.takeAll();
    return gatherFromBlocks(sources, this.widths, order);
  }

  /** Everything held, with the permutation that mixes it; the buffer is left empty. */
  private takeAll(): { sources: RowBlock[]; order: Uint32Array } {
    const sources = [this.storage, ...this.pending].filter((b) => b.rows > 0);
    this.storage = emptyBlock(this.widths);
    this.pending = [];
    this.pendingRows = 0;
    return { sources, order: this.permutation(sources.reduce((n, b) => n + b.rows, 0)) };
  }

  private permutation(n: number): Uint32Array {
    const order = new Uint32Array(n);
    for (let i = 0; i < n; i++) order[i] = i;
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(this.random.next() * (i + 1));
      const t = order[i] as number;
      order[i] = order[j] as number;
      order[j] = t;
    }
    return order;
  }
}
