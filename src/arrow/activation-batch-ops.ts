import type { Data } from 'apache-arrow';
import {
  type ActivationBatch,
  type ActivationDtype,
  type ActivationLayout,
  activationIds,
  activationLayout,
  activationSchema,
  assembleBatch,
  convertValues,
  type ActivationIds,
  hookData,
  hookValues,
  idData,
} from './activation-batch.js';

function sameLayout(a: ActivationLayout, b: ActivationLayout): boolean {
  return (
    a.hasIds === b.hasIds &&
    a.hooks.length === b.hooks.length &&
    a.hooks.every((h, i) => {
      const o = b.hooks[i];
      return o !== undefined && o.name === h.name && o.d === h.d && o.dtype === h.dtype;
    })
  );
}

function describeLayout(l: ActivationLayout): string {
  const hooks = l.hooks.map((h) => `${h.name}:${h.dtype}[${h.d}]`).join(', ');
  return `${l.hasIds ? 'seq, pos, token, ' : ''}${hooks}`;
}

/** Several batches with the same layout copied into one contiguous batch (typed-array copies only). */
export function concatActivationBatches(batches: readonly ActivationBatch[]): ActivationBatch {
  const first = batches[0];
  if (!first) throw new TypeError('concatActivationBatches: no batches');
  if (batches.length === 1) return first;
  const layout = activationLayout(first);
  for (const b of batches) {
    const l = activationLayout(b);
    if (!sameLayout(layout, l)) {
      throw new TypeError(
        `concatActivationBatches: layouts differ (${describeLayout(layout)} vs ${describeLayout(l)})`,
      );
    }
  }
  const rows = batches.reduce((n, b) => n + b.numRows, 0);
  const columns: Data[] = [];
  if (layout.hasIds) {
    const seq = new BigInt64Array(rows);
    const pos = new Int32Array(rows);
    const token = new Int32Array(rows);
    let at = 0;
    for (const b of batches) {
      const ids = activationIds(b) as ActivationIds;
      seq.set(ids.seq, at);
      pos.set(ids.pos, at);
      token.set(ids.token, at);
      at += b.numRows;
    }
    columns.push(...idData(seq, pos, token));
  }
  for (const h of layout.hooks) {
    const out = h.dtype === 'float16' ? new Uint16Array(rows * h.d) : new Float32Array(rows * h.d);
    let at = 0;
    for (const b of batches) {
      const { values } = hookValues(b, h.name);
      if (out instanceof Uint16Array) out.set(values as Uint16Array, at);
      else out.set(values as Float32Array, at);
      at += values.length;
    }
    columns.push(hookData(out, h.d, h.dtype, rows));
  }
  return assembleBatch(activationSchema(layout), columns, rows);
}

/** Rows [start, end) of a batch, without copying. */
export function sliceActivationBatch(
  batch: ActivationBatch,
  start: number,
  end: number = batch.numRows,
): ActivationBatch {
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > batch.numRows || start > end) {
    throw new RangeError(`sliceActivationBatch: invalid range [${start}, ${end}) of ${batch.numRows} rows`);
  }
  if (start === 0 && end === batch.numRows) return batch;
  return batch.slice(start, end);
}

/** The same rows with every hook column stored as `dtype` (a no-op when it already is). */
export function castActivationBatch(batch: ActivationBatch, dtype: ActivationDtype): ActivationBatch {
  const layout = activationLayout(batch);
  if (layout.hooks.every((h) => h.dtype === dtype)) return batch;
  const rows = batch.numRows;
  const columns: Data[] = [];
  const target: ActivationLayout = {
    hasIds: layout.hasIds,
    hooks: layout.hooks.map((h) => ({ ...h, dtype })),
  };
  const schema = activationSchema(target);
  for (const field of schema.fields) {
    const index = batch.schema.fields.findIndex((f) => f.name === field.name);
    const hook = target.hooks.find((h) => h.name === field.name);
    if (!hook) {
      columns.push(batch.data.children[index] as Data);
      continue;
    }
    const { values } = hookValues(batch, hook.name);
    columns.push(hookData(convertValues(values, dtype), hook.d, dtype, rows));
  }
  return assembleBatch(schema, columns, rows);
}

/** Only the id columns (when present) and the named hooks, in that order, without copying. */
export function selectHooks(batch: ActivationBatch, hooks: readonly string[]): ActivationBatch {
  const layout = activationLayout(batch);
  for (const h of hooks) {
    if (!layout.hooks.some((x) => x.name === h)) {
      throw new TypeError(
        `activation batch has no hook ${h}; it has ${layout.hooks.map((x) => x.name).join(', ')}`,
      );
    }
  }
  const keep = [...(layout.hasIds ? ['seq', 'pos', 'token'] : []), ...hooks];
  return batch.select(keep);
}

/**
 * Regroups a stream of batches into batches of exactly `rows` rows (the last one may be shorter).
 * Batches that already line up pass through without a copy; others are sliced and concatenated.
 */
export class ActivationRechunker {
  private pending: ActivationBatch[] = [];
  private pendingRows = 0;

  constructor(readonly rows: number) {
    if (!Number.isInteger(rows) || rows < 1)
      throw new RangeError(`batch rows must be a positive integer, got ${rows}`);
  }

  /** Feeds one batch; returns the complete batches it finished. */
  push(batch: ActivationBatch): ActivationBatch[] {
    const out: ActivationBatch[] = [];
    let offset = 0;
    while (offset < batch.numRows) {
      const take = Math.min(this.rows - this.pendingRows, batch.numRows - offset);
      this.pending.push(sliceActivationBatch(batch, offset, offset + take));
      this.pendingRows += take;
      offset += take;
      if (this.pendingRows === this.rows) out.push(this.take());
    }
    return out;
  }

  /** The rows still held (fewer than `rows`), or null when none. */
  flush(): ActivationBatch | null {
    return this.pendingRows > 0 ? this.take() : null;
  }

  private take(): ActivationBatch {
    const batch = concatActivationBatches(this.pending);
    this.pending = [];
    this.pendingRows = 0;
    return batch;
  }
}
