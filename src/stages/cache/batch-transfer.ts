/**
 * Activation batches across threads: the id and hook columns copied into buffers of their own (which
 * postMessage transfers instead of copying again), and the batch rebuilt from them on the other side.
 */
import {
  type ActivationBatch,
  type ActivationLayout,
  activationIds,
  activationLayout,
  activationSchema,
  assembleBatch,
  hookData,
  hookValues,
  idData,
} from '../../arrow/index.js';

export interface TransferredBatch {
  layout: ActivationLayout;
  rows: number;
  ids: { seq: BigInt64Array; pos: Int32Array; token: Int32Array } | null;
  hooks: Array<Float32Array | Uint16Array>;
}

export function packBatch(batch: ActivationBatch): { message: TransferredBatch; transfer: ArrayBuffer[] } {
  const layout = activationLayout(batch);
  const ids = activationIds(batch);
  const copied = ids && { seq: ids.seq.slice(), pos: ids.pos.slice(), token: ids.token.slice() };
  const hooks = layout.hooks.map((h) => hookValues(batch, h.name).values.slice());
  const transfer = [
    ...(copied ? [copied.seq.buffer, copied.pos.buffer, copied.token.buffer] : []),
    ...hooks.map((v) => v.buffer),
  ] as ArrayBuffer[];
  return { message: { layout, rows: batch.numRows, ids: copied, hooks }, transfer };
}

export function unpackBatch(m: TransferredBatch): ActivationBatch {
  const columns = [
    ...(m.ids ? idData(m.ids.seq, m.ids.pos, m.ids.token) : []),
    ...m.layout.hooks.map((h, i) => hookData(m.hooks[i]!, h.d, h.dtype, m.rows)),
  ];
  return assembleBatch(activationSchema(m.layout), columns, m.rows);
}
