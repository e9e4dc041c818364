import {
  type Data,
  type DataType,
  type Field,
  type FixedSizeList,
  type Float,
  type RecordBatch,
  Type,
  Precision,
} from 'apache-arrow';
import {
  type ActivationBatch,
  type ActivationDtype,
  type ActivationLayout,
  ID_COLUMNS,
  POS_COLUMN,
  SEQ_COLUMN,
  TOKEN_COLUMN,
  activationSchema,
  assembleBatch,
  hookData,
  idData,
} from '../../arrow/index.js';
import { UserError } from '../../pipeline/errors.js';

/**
 * Turns record batches read from Parquet into canonical activation batches. Accepts what pyarrow, DuckDB
 * and our writer produce for a hook column: `fixed_size_list<float|halffloat|double>[d]` or
 * `list<...>` / `large_list<...>` whose rows all have d elements, and any signed or unsigned integer
 * type for seq/pos/token. Anything else, nulls included, is a UserError naming the file, column and row.
 * Data is not copied unless its type changes (double -> float32, int32 -> int64, ...).
 */

/** How a column of a Parquet file maps to a hook: its list kind, width (null: unknown yet) and element type. */
export interface HookColumnShape {
  readonly kind: 'fixed' | 'list';
  readonly d: number | null;
  /** The element type as stored; float64 is read as float32. */
  readonly stored: 'float16' | 'float32' | 'float64';
}

function floatKind(t: DataType | undefined): HookColumnShape['stored'] | null {
  if (t?.typeId !== Type.Float) return null;
  const { precision } = t as Float;
  if (precision === Precision.HALF) return 'float16';
  if (precision === Precision.SINGLE) return 'float32';
  return 'float64';
}

/** The hook shape of a field, or null when the field is not a list of floats. */
export function hookColumnShape(field: Field): HookColumnShape | null {
  const t = field.type;
  if (t.typeId === Type.FixedSizeList) {
    const stored = floatKind(t.children[0]?.type);
    return stored ? { kind: 'fixed', d: t.listSize as number, stored } : null;
  }
  if (t.typeId === Type.List || t.typeId === Type.LargeList) {
    const stored = floatKind(t.children[0]?.type);
    return stored ? { kind: 'list', d: null, stored } : null;
  }
  return null;
}

export function isIdField(field: Field): boolean {
  return ID_COLUMNS.includes(field.name) && field.type.typeId === Type.Int;
}

export function dtypeOfStored(stored: HookColumnShape['stored']): ActivationDtype {
  return stored === 'float16' ? 'float16' : 'float32';
}

function firstNullRow(data: Data): number {
  for (let i = 0; i < data.length; i++) if (!data.getValid(i)) return i;
  return -1;
}

/**
 * The row-major values of one hook column, checked to have exactly `d` non-null elements per row.
 * `firstRow` is the batch's first row within the file, for error messages.
 */
export function hookColumnValues(
  data: Data,
  name: string,
  d: number,
  file: string,
  firstRow: number,
): Float32Array | Uint16Array {
  const where = (row: number) => `${file}: column ${name}, row ${firstRow + row}`;
  const rows = data.length;
  if (data.nullCount > 0)
    throw new UserError(`${where(firstNullRow(data))}: null instead of a list of ${d} values`);
  const child = data.children[0] as Data;
  let start = 0;
  if (data.type.typeId === Type.FixedSizeList) {
    const size = (data.type as FixedSizeList).listSize;
    if (size !== d) throw new UserError(`${where(0)}: lists of ${size} values, expected ${d}`);
  } else {
    const offsets = data.valueOffsets as Int32Array | BigInt64Array;
    start = Number(offsets[0]);
    for (let i = 0; i < rows; i++) {
      const len = Number(offsets[i + 1]) - Number(offsets[i]);
      if (len !== d) throw new UserError(`${where(i)}: a list of ${len} values, expected ${d}`);
    }
  }
  const values = child.values as Float32Array | Uint16Array | Float64Array;
  // Element validity is checked only on the slice this batch uses.
  if (child.nullCount > 0) {
    for (let i = start; i < start + rows * d; i++) {
      if (!child.getValid(i)) throw new UserError(`${where(Math.floor((i - start) / d))}: null element`);
    }
  }
  const slice = values.subarray(start, start + rows * d);
  if (slice.length !== rows * d) throw new UserError(`${where(0)}: holds fewer values than its lists claim`);
  checkPlausible(slice, d, (i) => where(Math.floor(i / d)));
  return slice instanceof Float64Array ? new Float32Array(slice) : slice;
}

/**
 * Activations beyond this magnitude come from damaged data, not from a model (GPT-2's largest residual
 * activations are in the thousands); Parquet pages have no checksums we can verify, so flipped bytes in
 * a plain file surface here, typically as huge exponents.
 */
export const ACTIVATION_MAGNITUDE_LIMIT = 1e10;

function checkPlausible(
  values: Float32Array | Uint16Array | Float64Array,
  d: number,
  where: (index: number) => string,
): void {
  const bad = (i: number, what: string) =>
    new UserError(
      `${where(i)}, element ${i % d}: ${what} (damaged data? activations stay within ±${ACTIVATION_MAGNITUDE_LIMIT})`,
    );
  if (values instanceof Uint16Array) {
    // float16 bits: an all-ones exponent is Infinity or NaN; finite values are below 65504 anyway.
    for (let i = 0; i < values.length; i++) {
      if (((values[i] as number) & 0x7c00) === 0x7c00) throw bad(i, 'a non-finite value');
    }
    return;
  }
  // The scan runs on the trainer's thread between steps: one loop per array type keeps it monomorphic
  // (a loop over the union was several times slower).
  const i = values instanceof Float32Array ? firstImplausible32(values) : firstImplausible64(values);
  if (i >= 0) {
    const v = values[i]!;
    throw bad(i, Number.isFinite(v) ? `${v} is implausibly large` : `a non-finite value (${v})`);
  }
}

// Two comparisons per value on the common path; NaN fails them too.
function firstImplausible32(values: Float32Array): number {
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (!(v <= ACTIVATION_MAGNITUDE_LIMIT && v >= -ACTIVATION_MAGNITUDE_LIMIT)) return i;
  }
  return -1;
}

function firstImplausible64(values: Float64Array): number {
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (!(v <= ACTIVATION_MAGNITUDE_LIMIT && v >= -ACTIVATION_MAGNITUDE_LIMIT)) return i;
  }
  return -1;
}

function idColumn<A extends BigInt64Array | Int32Array>(
  data: Data,
  name: string,
  file: string,
  firstRow: number,
  wide: boolean,
): A {
  if (data.nullCount > 0)
    throw new UserError(`${file}: column ${name}, row ${firstRow + firstNullRow(data)}: null`);
  const values = (
    data.values as ArrayLike<number | bigint> & { subarray(a: number, b: number): unknown }
  ).subarray(0, data.length) as BigInt64Array | Int32Array | ArrayLike<number | bigint>;
  if (wide) {
    if (values instanceof BigInt64Array) return values as A;
    const out = new BigInt64Array(data.length);
    for (let i = 0; i < data.length; i++) out[i] = BigInt(values[i] as number | bigint);
    return out as A;
  }
  if (values instanceof Int32Array) return values as A;
  const out = new Int32Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const v = Number(values[i]);
    if (!Number.isSafeInteger(v) || v < -(2 ** 31) || v >= 2 ** 31) {
      throw new UserError(
        `${file}: column ${name}, row ${firstRow + i}: ${String(values[i])} does not fit in int32`,
      );
    }
    out[i] = v;
  }
  return out as A;
}

/**
 * A batch holding `layout`'s columns (ids when `layout.hasIds`) from a batch read out of `file`, whose
 * first row is row `firstRow` of the file. The layout's dtypes are what the hooks are stored as.
 */
export function normalizeBatch(
  raw: RecordBatch,
  layout: ActivationLayout,
  file: string,
  firstRow: number,
): ActivationBatch {
  const column = (name: string): Data => {
    const index = raw.schema.fields.findIndex((f) => f.name === name);
    if (index < 0) throw new UserError(`${file}: has no column ${name}`);
    return raw.data.children[index] as Data;
  };
  const rows = raw.numRows;
  const columns: Data[] = [];
  if (layout.hasIds) {
    columns.push(
      ...idData(
        idColumn<BigInt64Array>(column(SEQ_COLUMN), SEQ_COLUMN, file, firstRow, true),
        idColumn<Int32Array>(column(POS_COLUMN), POS_COLUMN, file, firstRow, false),
        idColumn<Int32Array>(column(TOKEN_COLUMN), TOKEN_COLUMN, file, firstRow, false),
      ),
    );
  }
  for (const h of layout.hooks) {
    const values = hookColumnValues(column(h.name), h.name, h.d, file, firstRow);
    const got: ActivationDtype = values instanceof Uint16Array ? 'float16' : 'float32';
    if (got !== h.dtype)
      throw new UserError(`${file}: column ${h.name} holds ${got} values, expected ${h.dtype}`);
    columns.push(hookData(values, h.d, h.dtype, rows));
  }
  return assembleBatch(activationSchema(layout), columns, rows);
}
