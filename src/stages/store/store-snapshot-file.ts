/**
 * The activation store's part of a training checkpoint (`store.safetensors`): the buffer's rows, the
 * normalisation sample and the batches served but not yet trained on, as float32 tensors; positions,
 * widths and the generator's state as JSON metadata. With it a resumed run continues the store exactly
 * without feeding it again what it had already received (no model forward over those windows).
 *
 * It is written synchronously: the buffer's arrays are live and change with the next input batch, and a
 * synchronous write cannot be interleaved with one.
 */
import { join } from 'node:path';
import { readSafetensors, writeSafetensorsSync, type Tensor } from '../../io/safetensors.js';
import { UserError } from '../../pipeline/errors.js';
import type { StoreTracker } from './activation-store.js';
import type { RowBlock } from './row-block.js';
import type { StoreSnapshot } from './store-core.js';

export const STORE_SNAPSHOT_FILE = 'store.safetensors';
const META_KEY = 'saeflow_store';
const FORMAT = 'saeflow-activation-store';
const VERSION = 1;

interface Meta {
  format: string;
  version: number;
  input_batches: number;
  input_rows: number;
  next_index: number;
  widths: Record<string, number>;
  factors: Record<string, number> | null;
  rng_state: number;
  /** Rows of each sample block, then of each queued batch, in order. */
  sample_rows: number[];
  queued_rows: number[];
}

function blockTensors(prefix: string, blocks: readonly RowBlock[], widths: Record<string, number>) {
  const tensors: Record<string, Tensor> = {};
  blocks.forEach((b, i) => {
    for (const [hook, d] of Object.entries(widths))
      tensors[`${prefix}.${i}.${hook}`] = {
        dtype: 'F32',
        shape: [b.rows, d],
        data: b.hooks[hook] as Float32Array,
      };
  });
  return tensors;
}

export function writeStoreSnapshotSync(path: string, snapshot: StoreSnapshot): void {
  const widths = { ...snapshot.widths };
  const tensors: Record<string, Tensor> = {
    ...blockTensors('sample', snapshot.sample, widths),
    ...blockTensors('queued', snapshot.queued, widths),
  };
  const slots = snapshot.buffer.slots;
  tensors.buffer_slots = {
    dtype: 'I32',
    shape: [slots.length],
    data: new Int32Array(slots.buffer, slots.byteOffset, slots.length),
  };
  for (const [hook, d] of Object.entries(widths)) {
    const data = snapshot.buffer.data[hook] as Float32Array;
    tensors[`buffer.${hook}`] = { dtype: 'F32', shape: [data.length / d, d], data };
  }
  const meta: Meta = {
    format: FORMAT,
    version: VERSION,
    input_batches: snapshot.inputBatches,
    input_rows: snapshot.inputRows,
    next_index: snapshot.nextIndex,
    widths,
    factors: snapshot.factors === null ? null : { ...snapshot.factors },
    rng_state: snapshot.buffer.rngState,
    sample_rows: snapshot.sample.map((b) => b.rows),
    queued_rows: snapshot.queued.map((b) => b.rows),
  };
  writeSafetensorsSync(path, tensors, { [META_KEY]: JSON.stringify(meta) });
}

/**
 * A checkpoint part (`SaeTrainer.addCheckpointPart`) that saves the store `tracker` follows into the
 * checkpoint directory; before the store has received anything there is nothing to save.
 */
export function storeCheckpointPart(tracker: StoreTracker): (dir: string) => void {
  return (dir) => {
    const snapshot = tracker.snapshot();
    if (snapshot) writeStoreSnapshotSync(join(dir, STORE_SNAPSHOT_FILE), snapshot);
  };
}

const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

function checkMeta(raw: string | undefined, file: string): Meta {
  if (raw === undefined)
    throw new UserError(`${file}: not a saeflow activation store (no '${META_KEY}' metadata)`);
  let meta: Meta;
  try {
    meta = JSON.parse(raw) as Meta;
  } catch (e) {
    throw new UserError(`${file}: invalid '${META_KEY}' metadata (${(e as Error).message})`);
  }
  if (meta?.format !== FORMAT || meta.version !== VERSION)
    throw new UserError(`${file}: not a saeflow activation store of version ${VERSION}`);
  const counts = ['input_batches', 'input_rows', 'next_index', 'rng_state'] as const;
  for (const key of counts) {
    if (!Number.isSafeInteger(meta[key]) || (key !== 'rng_state' && !isCount(meta[key])))
      throw new UserError(`${file}: field ${key} is ${JSON.stringify(meta[key])}, not a count`);
  }
  for (const key of ['sample_rows', 'queued_rows'] as const) {
    if (!Array.isArray(meta[key]) || !meta[key].every(isCount))
      throw new UserError(`${file}: field ${key} is not a list of row counts`);
  }
  if (
    typeof meta.widths !== 'object' ||
    meta.widths === null ||
    !Object.values(meta.widths).every((d) => isCount(d) && d > 0)
  )
    throw new UserError(`${file}: field widths is not a map of hook widths`);
  return meta;
}

/** Every hook's buffer holds the same rows, and the slots name distinct rows among them. */
function checkSlots(
  file: string,
  slots: Int32Array,
  buffer: Record<string, Float32Array>,
  widths: Record<string, number>,
): void {
  const capacities = new Set(
    Object.entries(widths).map(([hook, d]) => (buffer[hook] as Float32Array).length / d),
  );
  if (capacities.size !== 1)
    throw new UserError(
      `${file}: the buffer tensors hold different numbers of rows (${[...capacities].join(', ')})`,
    );
  const capacity = [...capacities][0] as number;
  const used = new Uint8Array(capacity);
  for (const s of slots) {
    if (s < 0 || s >= capacity || used[s])
      throw new UserError(
        `${file}: buffer_slots names row ${s}, outside the buffer's ${capacity} rows or twice`,
      );
    used[s] = 1;
  }
}

/** Reads `store.safetensors`; anything missing or inconsistent is a UserError naming the file and the part. */
export async function readStoreSnapshot(file: string): Promise<StoreSnapshot> {
  const { metadata, tensors } = await readSafetensors(file);
  const meta = checkMeta(metadata[META_KEY], file);
  const tensor = (name: string, dtype: 'F32' | 'I32', rows: number | null, d: number) => {
    const t = tensors.get(name);
    if (!t) throw new UserError(`${file}: tensor '${name}' is missing`);
    const shapeOk = t.shape.length === (dtype === 'I32' ? 1 : 2) && (rows === null || t.shape[0] === rows);
    if (t.dtype !== dtype || !shapeOk || (dtype === 'F32' && t.shape[1] !== d))
      throw new UserError(
        `${file}: tensor '${name}' is ${t.dtype} [${t.shape.join(', ')}], not what the store saved`,
      );
    return t.data;
  };
  const blocks = (prefix: string, rows: number[]): RowBlock[] =>
    rows.map((n, i) => ({
      rows: n,
      hooks: Object.fromEntries(
        Object.entries(meta.widths).map(([hook, d]) => [
          hook,
          tensor(`${prefix}.${i}.${hook}`, 'F32', n, d) as Float32Array,
        ]),
      ),
    }));
  const slots = tensor('buffer_slots', 'I32', null, 1) as Int32Array;
  const buffer = Object.fromEntries(
    Object.entries(meta.widths).map(([hook, d]) => [
      hook,
      tensor(`buffer.${hook}`, 'F32', null, d) as Float32Array,
    ]),
  );
  checkSlots(file, slots, buffer, meta.widths);
  return {
    inputBatches: meta.input_batches,
    inputRows: meta.input_rows,
    nextIndex: meta.next_index,
    widths: meta.widths,
    factors: meta.factors,
    buffer: {
      data: buffer,
      slots: new Uint32Array(slots.buffer, slots.byteOffset, slots.length),
      rngState: meta.rng_state,
    },
    sample: blocks('sample', meta.sample_rows),
    queued: blocks('queued', meta.queued_rows),
  };
}
