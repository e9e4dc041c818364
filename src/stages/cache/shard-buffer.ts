import {
  type ActivationBatch,
  type ActivationLayout,
  activationIds,
  activationSchema,
  assembleBatch,
  hookData,
  hookValues,
  idData,
} from '../../arrow/index.js';
import type { Data } from 'apache-arrow';
import { float16ToFloat32, float32ToFloat16 } from '../../io/float16.js';

/**
 * Preallocated columns for one shard's rows in the cache's layout. Rows are copied in (converting the
 * element type when the input batch's differs), so a shard's bytes depend only on its rows and never on
 * how the upstream happened to split them into batches.
 */
export class ShardBuffer {
  private readonly seq: BigInt64Array | null;
  private readonly pos: Int32Array | null;
  private readonly token: Int32Array | null;
  private readonly hooks: (Float32Array | Uint16Array)[];
  private filled = 0;

  constructor(
    readonly layout: ActivationLayout,
    readonly capacity: number,
  ) {
    this.seq = layout.hasIds ? new BigInt64Array(capacity) : null;
    this.pos = layout.hasIds ? new Int32Array(capacity) : null;
    this.token = layout.hasIds ? new Int32Array(capacity) : null;
    this.hooks = layout.hooks.map((h) =>
      h.dtype === 'float16' ? new Uint16Array(capacity * h.d) : new Float32Array(capacity * h.d),
    );
  }

  get rows(): number {
    return this.filled;
  }

  get full(): boolean {
    return this.filled === this.capacity;
  }

  /**
   * Copies rows [start, start + count) of `batch` (which must hold every hook of the layout, and ids when
   * the layout has them) after the rows already held.
   */
  append(batch: ActivationBatch, start: number, count: number): void {
    if (count > this.capacity - this.filled) throw new RangeError(`ShardBuffer: ${count} rows do not fit`);
    const at = this.filled;
    if (this.seq && this.pos && this.token) {
      const ids = activationIds(batch);
      if (!ids) throw new TypeError('ShardBuffer: batch has no seq/pos/token columns');
      this.seq.set(ids.seq.subarray(start, start + count), at);
      this.pos.set(ids.pos.subarray(start, start + count), at);
      this.token.set(ids.token.subarray(start, start + count), at);
    }
    this.layout.hooks.forEach((h, i) => {
      const { values, d } = hookValues(batch, h.name);
      if (d !== h.d) throw new TypeError(`ShardBuffer: hook ${h.name} has width ${d}, the cache has ${h.d}`);
      const source = values.subarray(start * d, (start + count) * d);
      const target = this.hooks[i] as Float32Array | Uint16Array;
      const out = target.subarray(at * d, (at + count) * d);
      if (out instanceof Float32Array) {
        if (source instanceof Float32Array) out.set(source);
        else float16ToFloat32(source, out);
      } else if (source instanceof Uint16Array) out.set(source);
      else float32ToFloat16(source, out);
    });
    this.filled += count;
  }

  /** The rows held as a batch viewing this buffer: serialise it before appending again. */
  view(): ActivationBatch {
    const rows = this.filled;
    const columns: Data[] = [];
    if (this.seq && this.pos && this.token) {
      columns.push(
        ...idData(this.seq.subarray(0, rows), this.pos.subarray(0, rows), this.token.subarray(0, rows)),
      );
    }
    this.layout.hooks.forEach((h, i) => {
      columns.push(
        hookData((this.hooks[i] as Float32Array | Uint16Array).subarray(0, rows * h.d), h.d, h.dtype, rows),
      );
    });
    return assembleBatch(activationSchema(this.layout), columns, rows);
  }

  clear(): void {
    this.filled = 0;
  }
}
