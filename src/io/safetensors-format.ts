/**
 * The safetensors container format: dtype table, header validation and header encoding.
 *
 * Layout: u64 little-endian header length N, N bytes of UTF-8 JSON, then the raw little-endian tensor
 * bytes; `data_offsets` are relative to the end of the header. Everything here is pure (no I/O) so the
 * file reader and the in-memory parser share one validator, run before any tensor memory is allocated.
 */
import { UserError } from '../pipeline/errors.js';

export type SafetensorsDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export type TensorData =
  | Float64Array
  | Float32Array
  | Uint16Array /* F16, BF16 raw bits */
  | BigInt64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint8Array;

export interface Tensor {
  dtype: SafetensorsDtype;
  shape: number[];
  data: TensorData;
}

export interface TensorInfo {
  dtype: SafetensorsDtype;
  shape: number[];
  dataOffsets: [number, number];
}

export interface SafetensorsHeader {
  metadata: Record<string, string>;
  tensors: Record<string, TensorInfo>;
  /** Absolute file offset of the data area (8 + header length). */
  dataStart: number;
  fileSize: number;
}

type TypedArrayConstructor =
  | Float64ArrayConstructor
  | Float32ArrayConstructor
  | Uint16ArrayConstructor
  | BigInt64ArrayConstructor
  | Int32ArrayConstructor
  | Int16ArrayConstructor
  | Int8ArrayConstructor
  | Uint8ArrayConstructor;

interface DtypeInfo {
  size: number;
  array: TypedArrayConstructor;
  /**
   * Position in the Rust library's `Dtype` enum order. Its writer lays tensors out by descending rank,
   * then by name, so matching it keeps our files byte-identical to `safetensors.save_file`.
   */
  rank: number;
}

export const DTYPES: Readonly<Record<SafetensorsDtype, DtypeInfo>> = {
  BOOL: { size: 1, array: Uint8Array, rank: 0 },
  U8: { size: 1, array: Uint8Array, rank: 1 },
  I8: { size: 1, array: Int8Array, rank: 2 },
  I16: { size: 2, array: Int16Array, rank: 3 },
  F16: { size: 2, array: Uint16Array, rank: 4 },
  BF16: { size: 2, array: Uint16Array, rank: 5 },
  I32: { size: 4, array: Int32Array, rank: 6 },
  F32: { size: 4, array: Float32Array, rank: 7 },
  F64: { size: 8, array: Float64Array, rank: 8 },
  I64: { size: 8, array: BigInt64Array, rank: 9 },
};

/** The Rust library refuses headers above this size; so do we, before reading them. */
export const MAX_HEADER_BYTES = 100_000_000;

export function isSafetensorsDtype(value: unknown): value is SafetensorsDtype {
  return typeof value === 'string' && Object.hasOwn(DTYPES, value);
}

/** Number of elements of a shape; `[]` is a scalar with one element. Throws if it exceeds 2^53. */
export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  if (!Number.isSafeInteger(n)) throw new RangeError(`shape [${shape.join(', ')}] has too many elements`);
  return n;
}

/** Reads the u64 header length, refusing values that cannot be a header of this file. */
export function parseHeaderLength(prefix: Uint8Array, fileSize: number, source: string): number {
  if (fileSize < 8) {
    throw new UserError(
      `${source}: not a safetensors file: ${fileSize} bytes, shorter than the 8-byte header length`,
    );
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new UserError(
      `${source}: header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit (corrupt file?)`,
    );
  }
  if (8n + n > BigInt(fileSize)) {
    throw new UserError(
      `${source}: header length ${n} runs past the end of the file (${fileSize} bytes; truncated?)`,
    );
  }
  return Number(n);
}

function describe(value: unknown): string {
  const text = JSON.stringify(value);
  return text === undefined ? String(value) : text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** Assigns even a key such as `__proto__` as an own property (files are untrusted input). */
export function setOwn<T>(target: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function parseMetadata(value: unknown, source: string): Record<string, string> {
  // The Rust library declares metadata as Option<HashMap<String, String>>: null means absent.
  if (value === undefined || value === null) return {};
  if (!isPlainObject(value))
    throw new UserError(`${source}: __metadata__ must be an object, got ${describe(value)}`);
  const metadata: Record<string, string> = {};
  for (const [key, v] of Object.entries(value)) {
    if (typeof v !== 'string') {
      throw new UserError(`${source}: __metadata__ entry '${key}' must be a string, got ${describe(v)}`);
    }
    setOwn(metadata, key, v);
  }
  return metadata;
}

function parseTensorInfo(name: string, value: unknown, dataSize: number, source: string): TensorInfo {
  const where = `${source}: tensor '${name}'`;
  if (!isPlainObject(value)) throw new UserError(`${where}: entry must be an object, got ${describe(value)}`);
  const { dtype, shape, data_offsets: offsets } = value;
  if (!isSafetensorsDtype(dtype)) {
    throw new UserError(
      `${where}: unsupported dtype ${describe(dtype)} (supported: ${Object.keys(DTYPES).join(', ')})`,
    );
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new UserError(`${where}: shape must be a list of non-negative integers, got ${describe(shape)}`);
  }
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
    offsets[0] > offsets[1]
  ) {
    throw new UserError(
      `${where}: data_offsets must be [begin, end] with 0 <= begin <= end, got ${describe(offsets)}`,
    );
  }
  const [begin, end] = offsets as [number, number];
  if (end > dataSize) {
    throw new UserError(
      `${where}: data_offsets [${begin}, ${end}] run past the end of the data area (${dataSize} bytes; truncated file?)`,
    );
  }
  let expected: number;
  try {
    expected = elementCount(shape as number[]) * DTYPES[dtype].size;
  } catch {
    expected = Number.POSITIVE_INFINITY;
  }
  if (end - begin !== expected) {
    throw new UserError(
      `${where}: shape [${shape.join(', ')}] of ${dtype} needs ${expected} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`,
    );
  }
  return { dtype, shape: [...(shape as number[])], dataOffsets: [begin, end] };
}

function checkNoOverlap(tensors: Record<string, TensorInfo>, source: string): void {
  const spans = Object.entries(tensors).sort(
    ([, a], [, b]) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1],
  );
  for (let i = 1; i < spans.length; i++) {
    const [prevName, prev] = spans[i - 1]!;
    const [name, info] = spans[i]!;
    if (info.dataOffsets[0] < prev.dataOffsets[1]) {
      throw new UserError(
        `${source}: tensor '${name}' (bytes ${info.dataOffsets[0]}..${info.dataOffsets[1]}) overlaps tensor '${prevName}' (bytes ${prev.dataOffsets[0]}..${prev.dataOffsets[1]})`,
      );
    }
  }
}

/**
 * Validates the JSON header of a file whose data area has `dataSize` bytes.
 * Unlike the Rust reader we accept gaps between tensors and trailing bytes; overlaps are refused.
 */
export function parseHeaderJson(
  headerBytes: Uint8Array,
  dataStart: number,
  fileSize: number,
  source: string,
): SafetensorsHeader {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    throw new UserError(`${source}: header is not valid UTF-8`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${source}: header is not valid JSON (${(e as Error).message})`);
  }
  if (!isPlainObject(json))
    throw new UserError(`${source}: header must be a JSON object, got ${describe(json)}`);
  const dataSize = fileSize - dataStart;
  const tensors: Record<string, TensorInfo> = {};
  let metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(json)) {
    if (name === '__metadata__') metadata = parseMetadata(value, source);
    else setOwn(tensors, name, parseTensorInfo(name, value, dataSize, source));
  }
  checkNoOverlap(tensors, source);
  return { metadata, tensors, dataStart, fileSize };
}

/** Compares names as UTF-8 bytes, the order Rust's `String` sorts in (JS sorts UTF-16 code units). */
function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

export interface LayoutEntry {
  name: string;
  tensor: Tensor;
  begin: number;
  end: number;
}

/** Where each tensor goes in the data area, in the Rust writer's order: dtype rank descending, then name. */
export function layoutTensors(tensors: Record<string, Tensor>): LayoutEntry[] {
  const names = Object.keys(tensors).sort(
    (a, b) => DTYPES[tensors[b]!.dtype].rank - DTYPES[tensors[a]!.dtype].rank || compareUtf8(a, b),
  );
  let offset = 0;
  return names.map((name) => {
    const tensor = tensors[name]!;
    const begin = offset;
    offset += tensor.data.byteLength;
    return { name, tensor, begin, end: offset };
  });
}

/**
 * The 8-byte length prefix plus the JSON header, padded with spaces so the data area starts 8-byte
 * aligned (as the Rust writer does). Metadata keys keep their insertion order; the Rust writer uses a
 * hash map, so with more than one key its order is arbitrary anyway.
 */
export function encodeHeader(layout: readonly LayoutEntry[], metadata?: Record<string, string>): Uint8Array {
  const parts: string[] = [];
  if (metadata !== undefined) parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  for (const { name, tensor, begin, end } of layout) {
    // Built by hand rather than from one object: JSON.parse/stringify would move integer-like names first.
    parts.push(
      `${JSON.stringify(name)}:{"dtype":${JSON.stringify(tensor.dtype)},"shape":${JSON.stringify(tensor.shape)},"data_offsets":[${begin},${end}]}`,
    );
  }
  const json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  const padded = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + padded);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length);
  return out;
}
