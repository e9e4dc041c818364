import { Mulberry32 } from '../../util/random.js';
import type { HookWidths, RowBlock } from './row-block.js';

/** What a resumed run needs to rebuild a buffer exactly: its rows (as stored) and its generator. */
export interface MixingBufferState {
  /** Physical storage per hook, [capacity, d]; only the rows named in `slots` are meaningful. */
  readonly data: Readonly<Record<string, Float32Array>>;
  /** The held rows in mixing order, as physical row numbers in `data`. */
  readonly slots: Uint32Array;
  readonly rngState: number;
}

/**
 * SAELens's mixing buffer (sae_lens/training/mixing_buffer.py): activations accumulate until the buffer
 * holds `bufferSize` rows; then it is shuffled, and whole batches amounting to half of it are served
 * while the other half stays to be mixed with the next activations. So every served batch mixes tokens
 * from many sequences, and consecutive batches share no ordering.
 *
 * Rows live in one preallocated array per hook and never move: the buffer keeps the order in which they
 * are mixed as a list of row numbers (`slots`), a refill copies the served rows out, and new rows fill the
 * slots they freed. So memory is the buffer itself plus the batches being served (each its own array, freed
 * as soon as it is trained), instead of the held rows plus a shuffled copy of all of them; what it serves
 * is exactly what shuffling the concatenation [kept rows, new rows] would serve.
 *
 * One deliberate difference from SAELens: at the end of the stream it serves the leftover rows in buffer
 * order; we shuffle them first (the leftovers include the unshuffled tail of the stream).
 */
export class MixingBuffer {
  private data: Record<string, Float32Array>;
  private capacity = 0;
  private slots = new Uint32Array(0);
  private count = 0;
  /** Physical rows not holding data, used as a stack. */
  private free = new Uint32Array(0);
  private freeCount = 0;

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
    this.data = Object.fromEntries(Object.keys(widths).map((h) => [h, new Float32Array(0)]));
  }

  /** A buffer holding exactly what `state` describes, continuing its generator. */
  static restore(
    widths: HookWidths,
    bufferSize: number,
    batchSize: number,
    state: MixingBufferState,
  ): MixingBuffer {
    const buffer = new MixingBuffer(widths, bufferSize, batchSize, Mulberry32.fromState(state.rngState));
    const [first, d] = Object.entries(widths)[0] as [string, number];
    const capacity = (state.data[first]?.length ?? 0) / d;
    for (const [hook, width] of Object.entries(widths)) {
      const data = state.data[hook];
      if (!data || data.length !== capacity * width)
        throw new RangeError(`mixing buffer state: hook ${hook} does not hold ${capacity} rows of ${width}`);
    }
    const used = new Uint8Array(capacity);
    for (const s of state.slots) {
      if (s >= capacity || used[s]) throw new RangeError(`mixing buffer state: bad or repeated slot ${s}`);
      used[s] = 1;
    }
    buffer.data = { ...state.data };
    buffer.capacity = capacity;
    buffer.slots = new Uint32Array(capacity);
    buffer.slots.set(state.slots);
    buffer.count = state.slots.length;
    buffer.free = new Uint32Array(capacity);
    for (let r = capacity - 1; r >= 0; r--) if (!used[r]) buffer.free[buffer.freeCount++] = r;
    return buffer;
  }

  /** Rows held now. */
  get rows(): number {
    return this.count;
  }

  /**
   * The buffer's state as views of its live arrays (no copy): write it out before the buffer is used again.
   */
  state(): MixingBufferState {
    return { data: this.data, slots: this.slots.subarray(0, this.count), rngState: this.random.state };
  }

  /**
   * Adds rows (only the rows listed in `keep`, when given); returns the batches that became ready
   * (possibly none). The rows are copied in, so `block` may be released afterwards.
   */
  push(block: RowBlock, keep?: ArrayLike<number>): RowBlock[] {
    const n = keep ? keep.length : block.rows;
    if (n === 0) return [];
    // Sized once for the largest overshoot one block can cause, so steady state never reallocates.
    this.reserve(this.count + n, this.bufferSize + n - 1);
    for (const [hook, d] of Object.entries(this.widths)) {
      const src = block.hooks[hook] as Float32Array;
      const dst = this.data[hook] as Float32Array;
      for (let i = 0; i < n; i++) {
        const r = keep ? (keep[i] as number) : i;
        const slot = this.free[this.freeCount - 1 - i] as number;
        dst.set(src.subarray(r * d, r * d + d), slot * d);
      }
    }
    for (let i = 0; i < n; i++) this.slots[this.count++] = this.free[--this.freeCount] as number;
    if (this.count < this.bufferSize) return [];
    const order = this.permutation(this.count);
    const serving = Math.max(1, Math.floor(order.length / (2 * this.batchSize)));
    const batches = this.serve(order, serving);
    const kept = new Uint32Array(this.capacity);
    for (let i = serving * this.batchSize; i < order.length; i++)
      kept[i - serving * this.batchSize] = this.slots[order[i] as number] as number;
    this.slots = kept;
    this.count = order.length - serving * this.batchSize;
    return batches;
  }

  /** At the end of the stream: the remaining whole batches, shuffled; a partial batch is dropped. */
  finish(): RowBlock[] {
    const order = this.permutation(this.count);
    const batches = this.serve(order, Math.floor(order.length / this.batchSize));
    this.data = Object.fromEntries(Object.keys(this.widths).map((h) => [h, new Float32Array(0)]));
    this.capacity = 0;
    this.slots = new Uint32Array(0);
    this.count = 0;
    this.free = new Uint32Array(0);
    this.freeCount = 0;
    return batches;
  }

  /** Copies the rows `order[0 .. count * batchSize)` out as `count` batches and frees their slots. */
  private serve(order: Uint32Array, count: number): RowBlock[] {
    const bs = this.batchSize;
    const batches: RowBlock[] = [];
    for (let b = 0; b < count; b++) {
      const hooks: Record<string, Float32Array> = {};
      for (const [hook, d] of Object.entries(this.widths)) {
        const src = this.data[hook] as Float32Array;
        const out = new Float32Array(bs * d);
        for (let i = 0; i < bs; i++) {
          const slot = this.slots[order[b * bs + i] as number] as number;
          out.set(src.subarray(slot * d, slot * d + d), i * d);
        }
        hooks[hook] = out;
      }
      batches.push({ rows: bs, hooks });
    }
    for (let i = 0; i < count * bs; i++)
      this.free[this.freeCount++] = this.slots[order[i] as number] as number;
    return batches;
  }

  /** Grows the storage to hold `needed` rows (to `preferred` when it must grow), keeping row numbers. */
  private reserve(needed: number, preferred: number): void {
    if (needed <= this.capacity) return;
    const capacity = Math.max(needed, preferred);
    for (const [hook, d] of Object.entries(this.widths)) {
      const grown = new Float32Array(capacity * d);
      grown.set(this.data[hook] as Float32Array);
      this.data[hook] = grown;
    }
    const slots = new Uint32Array(capacity);
    slots.set(this.slots.subarray(0, this.count));
    const free = new Uint32Array(capacity);
    free.set(this.free.subarray(0, this.freeCount));
    let freeCount = this.freeCount;
    // New rows go on the stack bottom-first so the lowest row numbers are used first.
    for (let r = capacity - 1; r >= this.capacity; r--) free[freeCount++] = r;
    this.slots = slots;
    this.free = free;
    this.freeCount = freeCount;
    this.capacity = capacity;
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
