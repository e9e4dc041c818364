import {
  type Data,
  Field,
  FixedSizeList,
  Float16,
  Float32,
  Int32,
  Int64,
  Precision,
  RecordBatch,
  Schema,
  Struct,
  Type,
  makeData,
} from 'apache-arrow';
import { float16ToFloat32, float32ToFloat16 } from '../io/float16.js';

/**
 * Activation batches: one Arrow row per token, with `seq` (int64), `pos` (int32), `token` (int32) and
 * one `FixedSizeList<Float32 | Float16>[d]` column per hook, named exactly by the hook.
 *
 * Float16 columns hold the IEEE half-precision bit patterns in a Uint16Array (that is how apache-arrow 21
 * stores `Float16` data); `hookMatrix` widens them to float32.
 */
export type ActivationBatch = RecordBatch;

export type ActivationDtype = 'float32' | 'float16';
export const ACTIVATION_DTYPES: readonly ActivationDtype[] = ['float32', 'float16'];

export const SEQ_COLUMN = 'seq';
export const POS_COLUMN = 'pos';
export const TOKEN_COLUMN = 'token';
export const ID_COLUMNS: readonly string[] = [SEQ_COLUMN, POS_COLUMN, TOKEN_COLUMN];

/** One hook column: its name, width and element type. */
export interface HookSpec {
  readonly name: string;
  readonly d: number;
  readonly dtype: ActivationDtype;
}

/** What an activation batch holds: its hooks (in column order) and whether the id columns are present. */
export interface ActivationLayout {
  readonly hasIds: boolean;
  readonly hooks: readonly HookSpec[];
}

export type HookColumnType = FixedSizeList<Float32> | FixedSizeList<Float16>;

/** The id columns of a batch, as typed-array views (no copy). */
export interface ActivationIds {
  readonly seq: BigInt64Array;
  readonly pos: Int32Array;
  readonly token: Int32Array;
}

/** Hook values as stored: float32 values or float16 bit patterns, row-major [rows, d]. */
export interface HookValues {
  readonly dtype: ActivationDtype;
  readonly d: number;
  readonly values: Float32Array | Uint16Array;
}

export function bytesPerElement(dtype: ActivationDtype): number {
  return dtype === 'float16' ? 2 : 4;
}

/** Bytes one row takes in memory (ids plus every hook), used to size shards from a byte budget. */
export function rowBytes(layout: ActivationLayout): number {
  const ids = layout.hasIds ? 8 + 4 + 4 : 0;
  return layout.hooks.reduce((sum, h) => sum + h.d * bytesPerElement(h.dtype), ids);
}

function elementType(dtype: ActivationDtype): Float32 | Float16 {
  return dtype === 'float16' ? new Float16() : new Float32();
}

export function hookColumnType(d: number, dtype: ActivationDtype): HookColumnType {
  return new FixedSizeList(d, new Field('item', elementType(dtype), false)) as HookColumnType;
}

/** The Arrow schema of activation batches with this layout (the canonical column order: ids, then hooks). */
export function activationSchema(layout: ActivationLayout): Schema {
  const fields: Field[] = [];
  if (layout.hasIds) {
    fields.push(
      new Field(SEQ_COLUMN, new Int64(), false),
      new Field(POS_COLUMN, new Int32(), false),
      new Field(TOKEN_COLUMN, new Int32(), false),
    );
  }
  for (const h of layout.hooks) fields.push(new Field(h.name, hookColumnType(h.d, h.dtype), false));
  return new Schema(fields);
}

export interface HookInput {
  /** Row-major [rows, d]: float32 values, or float16 bit patterns when a Uint16Array. */
  readonly data: Float32Array | Uint16Array;
  readonly d: number;
}

export interface MakeActivationBatchInput {
  /** Sequence ids; omit all three id columns for batches read from files that have none. */
  readonly seq?: BigInt64Array | ArrayLike<number>;
  readonly pos?: Int32Array;
  readonly token?: Int32Array;
  readonly hooks: Readonly<Record<string, HookInput>>;
  /** Element type of the hook columns (default float32); inputs of the other type are converted. */
  readonly dtype?: ActivationDtype;
}

/**
 * Builds an activation batch from typed arrays. Arrays already in the target type are used without a copy
 * (the batch keeps a reference to them), so callers must not reuse them afterwards.
 */
export function makeActivationBatch(input: MakeActivationBatchInput): ActivationBatch {
  const dtype = input.dtype ?? 'float32';
  const hookNames = Object.keys(input.hooks);
  const idCount = [input.seq, input.pos, input.token].filter((x) => x !== undefined).length;
  if (idCount !== 0 && idCount !== 3)
    throw new TypeError('makeActivationBatch: give all of seq, pos, token or none');
  if (hookNames.length === 0 && idCount === 0) throw new TypeError('makeActivationBatch: no columns');
  const rows = inferRows(input, hookNames);

  const columns: Data[] = [];
  const hooks: HookSpec[] = [];
  if (idCount === 3) {
    const seq = toBigInt64(input.seq as BigInt64Array | ArrayLike<number>);
    const pos = input.pos as Int32Array;
    const token = input.token as Int32Array;
    for (const [name, arr] of [
      [SEQ_COLUMN, seq],
      [POS_COLUMN, pos],
      [TOKEN_COLUMN, token],
    ] as const) {
      if (arr.length !== rows)
        throw new TypeError(`makeActivationBatch: ${name} has ${arr.length} rows, expected ${rows}`);
    }
    columns.push(...idData(seq, pos, token));
  }
  for (const name of hookNames) {
    const { data, d } = input.hooks[name] as HookInput;
    if (!Number.isInteger(d) || d < 1)
      throw new TypeError(`makeActivationBatch: hook ${name} has invalid width ${d}`);
    if (data.length !== rows * d) {
      throw new TypeError(
        `makeActivationBatch: hook ${name} has ${data.length} values, expected ${rows} x ${d}`,
      );
    }
    columns.push(hookData(convertValues(data, dtype), d, dtype, rows));
    hooks.push({ name, d, dtype });
  }
  return assembleBatch(activationSchema({ hasIds: idCount === 3, hooks }), columns, rows);
}

function inferRows(input: MakeActivationBatchInput, hookNames: string[]): number {
  if (input.pos) return input.pos.length;
  const first = input.hooks[hookNames[0] as string] as HookInput;
  return Math.floor(first.data.length / first.d);
}

function toBigInt64(seq: BigInt64Array | ArrayLike<number>): BigInt64Array {
  if (seq instanceof BigInt64Array) return seq;
  const out = new BigInt64Array(seq.length);
  for (let i = 0; i < seq.length; i++) out[i] = BigInt(seq[i] as number);
  return out;
}

/** Converts hook values to the requested element type (float16 bits travel as Uint16Array). */
export function convertValues(
  values: Float32Array | Uint16Array,
  dtype: ActivationDtype,
): Float32Array | Uint16Array {
  if (dtype === 'float32') return values instanceof Float32Array ? values : float16ToFloat32(values);
  return values instanceof Uint16Array ? values : float32ToFloat16(values);
}

/** The Arrow data of the seq, pos and token columns (no copy). */
export function idData(seq: BigInt64Array, pos: Int32Array, token: Int32Array): [Data, Data, Data] {
  const rows = pos.length;
  return [
    makeData({ type: new Int64(), length: rows, nullCount: 0, data: seq }),
    makeData({ type: new Int32(), length: rows, nullCount: 0, data: pos }),
    makeData({ type: new Int32(), length: rows, nullCount: 0, data: token }),
  ];
}

/** Wraps row-major values as the Arrow data of one hook column. */
export function hookData(
  values: Float32Array | Uint16Array,
  d: number,
  dtype: ActivationDtype,
  rows: number,
): Data<HookColumnType> {
  if ((dtype === 'float16') !== values instanceof Uint16Array || values.length !== rows * d) {
    throw new TypeError(
      `hookData: ${values.constructor.name}(${values.length}) is not ${rows} x ${d} ${dtype} values`,
    );
  }
  const child =
    dtype === 'float16'
      ? makeData({ type: new Float16(), length: rows * d, nullCount: 0, data: values as Uint16Array })
      : makeData({ type: new Float32(), length: rows * d, nullCount: 0, data: values as Float32Array });
  return makeData({
    type: hookColumnType(d, dtype),
    length: rows,
    nullCount: 0,
    child,
  }) as Data<HookColumnType>;
}

/** A RecordBatch from column data that already matches `schema` field by field. */
export function assembleBatch(schema: Schema, columns: Data[], rows: number): ActivationBatch {
  const struct = makeData({ type: new Struct(schema.fields), length: rows, nullCount: 0, children: columns });
  return new RecordBatch(schema, struct);
}

/**
 * Reads the layout of a batch and checks it follows the contract. Throws a TypeError naming the column
 * otherwise: batches from files are normalised by the cache reader before they get here.
 */
export function activationLayout(batch: ActivationBatch): ActivationLayout {
  const names = batch.schema.fields.map((f) => f.name);
  const idPresent = ID_COLUMNS.filter((c) => names.includes(c));
  if (idPresent.length !== 0 && idPresent.length !== 3) {
    throw new TypeError(`activation batch has ${idPresent.join(', ')} but not all of seq, pos, token`);
  }
  const hooks: HookSpec[] = [];
  for (const field of batch.schema.fields) {
    if (ID_COLUMNS.includes(field.name)) {
      checkIdType(field);
      continue;
    }
    hooks.push({ name: field.name, ...hookFieldShape(field) });
  }
  return { hasIds: idPresent.length === 3, hooks };
}

function checkIdType(field: Field): void {
  const t = field.type;
  const bits = field.name === SEQ_COLUMN ? 64 : 32;
  if (t.typeId !== Type.Int || t.bitWidth !== bits || !t.isSigned) {
    throw new TypeError(`activation batch column ${field.name} is ${String(t)}, expected Int${bits}`);
  }
}

/** Width and element type of a hook field; TypeError when it is not FixedSizeList<Float32 | Float16>. */
export function hookFieldShape(field: Field): { d: number; dtype: ActivationDtype } {
  const t = field.type;
  if (t.typeId === Type.FixedSizeList) {
    const child = (t as FixedSizeList).children[0]?.type;
    if (child?.typeId === Type.Float) {
      if (child.precision === Precision.HALF) return { d: (t as FixedSizeList).listSize, dtype: 'float16' };
      if (child.precision === Precision.SINGLE) return { d: (t as FixedSizeList).listSize, dtype: 'float32' };
    }
  }
  throw new TypeError(
    `activation batch column ${field.name} is ${String(t)}, expected FixedSizeList<Float32 | Float16>`,
  );
}

export function hookNames(batch: ActivationBatch): string[] {
  return batch.schema.fields.map((f) => f.name).filter((n) => !ID_COLUMNS.includes(n));
}

function columnData(batch: ActivationBatch, name: string): Data {
  const index = batch.schema.fields.findIndex((f) => f.name === name);
  if (index < 0) {
    throw new TypeError(
      `activation batch has no column ${name}; it has ${batch.schema.fields.map((f) => f.name).join(', ')}`,
    );
  }
  return batch.data.children[index] as Data;
}

/**
 * The stored values of one hook column as a view into the batch (no copy): float32 values or float16 bits,
 * row-major [rows, d]. A sliced batch gives the view of its rows only.
 */
export function hookValues(batch: ActivationBatch, hook: string): HookValues {
  const field = batch.schema.fields.find((f) => f.name === hook);
  if (!field || ID_COLUMNS.includes(hook)) {
    throw new TypeError(
      `activation batch has no hook ${hook}; it has ${hookNames(batch).join(', ') || 'none'}`,
    );
  }
  const { d, dtype } = hookFieldShape(field);
  const data = columnData(batch, hook);
  const child = data.children[0] as Data;
  if (data.nullCount > 0 || child.nullCount > 0)
    throw new TypeError(`activation batch hook ${hook} has null values`);
  // Arrow slices FixedSizeList children eagerly, so the child's values start at this batch's first row.
  const values = (child.values as Float32Array | Uint16Array).subarray(0, data.length * d);
  return { dtype, d, values };
}

/**
 * One hook column as float32, row-major [rows, d]. For float32 columns this is a view into the batch
 * unless `copy` is set (then it is safe to modify); float16 columns are always converted into a new array.
 */
export function hookMatrix(
  batch: ActivationBatch,
  hook: string,
  options: { copy?: boolean } = {},
): Float32Array {
  const { values } = hookValues(batch, hook);
  if (values instanceof Uint16Array) return float16ToFloat32(values);
  return options.copy ? values.slice() : values;
}

/** The seq/pos/token columns as views, or null when the batch has none (plain Parquet files without ids). */
export function activationIds(batch: ActivationBatch): ActivationIds | null {
  const names = batch.schema.fields.map((f) => f.name);
  if (!names.includes(SEQ_COLUMN)) return null;
  const view = <A extends BigInt64Array | Int32Array>(name: string): A => {
    const data = columnData(batch, name);
    if (data.nullCount > 0) throw new TypeError(`activation batch column ${name} has null values`);
    return (data.values as A).subarray(0, data.length) as A;
  };
  return {
    seq: view<BigInt64Array>(SEQ_COLUMN),
    pos: view<Int32Array>(POS_COLUMN),
    token: view<Int32Array>(TOKEN_COLUMN),
  };
}
