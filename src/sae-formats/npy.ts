/**
 * numpy's `.npy` format for plain float arrays: magic, version, a header that is a Python dict literal
 * (`{'descr': '<f4', 'fortran_order': False, 'shape': (16, 32), }`), then the raw data. The header is parsed
 * as data by a small literal parser (never evaluated), and anything that would need unpickling (object
 * arrays) or is not a float array is refused. Fortran-order arrays come back in C order.
 */
import type { Tensor } from '../io/safetensors.js';
import { UserError } from '../pipeline/errors.js';

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

type FloatDtype = 'F16' | 'F32' | 'F64';
const ITEM_SIZE: Record<FloatDtype, number> = { F16: 2, F32: 4, F64: 8 };

type Literal = string | number | boolean | null | Literal[] | { [key: string]: Literal };

/** Parses the subset of Python literals numpy writes in headers: dicts, tuples, lists, strings, ints, bools. */
function parseLiteral(text: string, where: string): Literal {
  let i = 0;
  const fail = (what: string): never => {
    throw new UserError(`${where}: malformed .npy header (${what} at character ${i}): ${text.slice(0, 200)}`);
  };
  const ws = () => {
    while (i < text.length && /\s/.test(text[i]!)) i++;
  };
  const value = (depth: number): Literal => {
    if (depth > 8) fail('nesting too deep');
    ws();
    const c = text[i];
    if (c === '{' || c === '(' || c === '[') {
      const close = c === '{' ? '}' : c === '(' ? ')' : ']';
      i++;
      const items: Literal[] = [];
      const dict: Record<string, Literal> = {};
      for (;;) {
        ws();
        if (text[i] === close) {
          i++;
          break;
        }
        if (c === '{') {
          const key = value(depth + 1);
          if (typeof key !== 'string') fail('a non-string key');
          ws();
          if (text[i] !== ':') fail("expected ':'");
          i++;
          Object.defineProperty(dict, key as string, {
            value: value(depth + 1),
            enumerable: true,
            writable: true,
            configurable: true,
          });
        } else {
          items.push(value(depth + 1));
        }
        ws();
        if (text[i] === ',') i++;
        else if (text[i] !== close) fail(`expected ',' or '${close}'`);
      }
      return c === '{' ? dict : items;
    }
    if (c === "'" || c === '"') {
      const end = text.indexOf(c, i + 1);
      if (end < 0) fail('unterminated string');
      const s = text.slice(i + 1, end);
      if (s.includes('\\')) fail('escape sequences are not expected');
      i = end + 1;
      return s;
    }
    const word = /^[A-Za-z_][A-Za-z0-9_]*|^-?\d+L?/.exec(text.slice(i))?.[0];
    if (word === undefined) return fail('unexpected character');
    i += word.length;
    if (word === 'True') return true;
    if (word === 'False') return false;
    if (word === 'None') return null;
    if (/^-?\d+L?$/.test(word)) return Number(word.replace('L', ''));
    return fail(`unexpected name '${word}'`);
  };
  const v = value(0);
  ws();
  if (i !== text.length) fail('trailing characters');
  return v;
}

function parseDescr(descr: Literal, where: string): { dtype: FloatDtype; bigEndian: boolean } {
  if (typeof descr !== 'string') {
    throw new UserError(`${where}: structured arrays (descr ${JSON.stringify(descr)}) are not supported`);
  }
  const m = /^([<>=|])([a-zA-Z])(\d+)$/.exec(descr);
  if (descr.includes('O') || m?.[2] === 'O') {
    throw new UserError(
      `${where}: dtype '${descr}' is an object array, which would need unpickling; refused (only float arrays are read)`,
    );
  }
  if (!m || m[2] !== 'f' || !['2', '4', '8'].includes(m[3]!)) {
    throw new UserError(
      `${where}: dtype '${descr}' is not supported (expected a float array: <f2, <f4 or <f8)`,
    );
  }
  const dtype = ({ '2': 'F16', '4': 'F32', '8': 'F64' } as const)[m[3] as '2' | '4' | '8'];
  return { dtype, bigEndian: m[1] === '>' };
}

function checkShape(shape: Literal, where: string): number[] {
  if (
    !Array.isArray(shape) ||
    !shape.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)
  ) {
    throw new UserError(
      `${where}: 'shape' must be a tuple of non-negative integers, got ${JSON.stringify(shape)}`,
    );
  }
  return shape as number[];
}

function swapBytes(bytes: Uint8Array, size: number): void {
  for (let p = 0; p < bytes.length; p += size) {
    for (let a = p, b = p + size - 1; a < b; a++, b--) {
      const t = bytes[a]!;
      bytes[a] = bytes[b]!;
      bytes[b] = t;
    }
  }
}

/** Reorders a Fortran-order (first index fastest) array into C order (last index fastest). */
function fortranToC<T extends Float32Array | Float64Array | Uint16Array>(src: T, shape: number[]): T {
  if (shape.length < 2) return src;
  const out = new (src.constructor as new (n: number) => T)(src.length);
  const rank = shape.length;
  // Stride of each axis in the Fortran-ordered source.
  const fStride = new Array<number>(rank);
  fStride[0] = 1;
  for (let a = 1; a < rank; a++) fStride[a] = fStride[a - 1]! * shape[a - 1]!;
  const index = new Array<number>(rank).fill(0);
  let srcPos = 0;
  for (let o = 0; o < out.length; o++) {
    out[o] = src[srcPos]!;
    // Advance the C-order multi-index (last axis fastest), keeping srcPos in step.
    for (let a = rank - 1; a >= 0; a--) {
      index[a]!++;
      srcPos += fStride[a]!;
      if (index[a]! < shape[a]!) break;
      srcPos -= fStride[a]! * shape[a]!;
      index[a] = 0;
    }
  }
  return out;
}

/**
 * Parses one `.npy` file held in memory into a tensor (F16 as raw bits, like safetensors). `where` names
 * the file (and member) in errors. The declared shape must account for the data exactly.
 */
export function parseNpy(bytes: Uint8Array, where: string): Tensor {
  if (bytes.length < 10 || MAGIC.some((b, i) => bytes[i] !== b)) {
    throw new UserError(`${where}: not a .npy array (bad magic bytes)`);
  }
  const major = bytes[6]!;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let headerLength: number;
  let headerStart: number;
  if (major === 1) {
    headerLength = dv.getUint16(8, true);
    headerStart = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) throw new UserError(`${where}: truncated .npy header`);
    headerLength = dv.getUint32(8, true);
    headerStart = 12;
  } else {
    throw new UserError(`${where}: .npy format version ${major}.${bytes[7]} is not supported`);
  }
  const dataStart = headerStart + headerLength;
  if (dataStart > bytes.length) {
    throw new UserError(
      `${where}: .npy header of ${headerLength} bytes runs past the end (${bytes.length} bytes; truncated?)`,
    );
  }
  const text = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(
    bytes.subarray(headerStart, dataStart),
  );
  const header = parseLiteral(text.trim(), where);
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new UserError(`${where}: .npy header is not a dict`);
  }
  for (const key of ['descr', 'fortran_order', 'shape']) {
    if (!Object.hasOwn(header, key)) throw new UserError(`${where}: .npy header lacks '${key}'`);
  }
  const { dtype, bigEndian } = parseDescr(header.descr!, where);
  const fortran = header.fortran_order;
  if (typeof fortran !== 'boolean') throw new UserError(`${where}: 'fortran_order' must be True or False`);
  const shape = checkShape(header.shape!, where);
  const count = shape.reduce((a, b) => a * b, 1);
  const itemSize = ITEM_SIZE[dtype];
  const have = bytes.length - dataStart;
  if (!Number.isSafeInteger(count * itemSize) || count * itemSize !== have) {
    throw new UserError(
      `${where}: shape [${shape.join(', ')}] of ${dtype === 'F16' ? 'float16' : dtype === 'F32' ? 'float32' : 'float64'} needs ${count * itemSize} data bytes, the array has ${have}${have < count * itemSize ? ' (truncated?)' : ''}`,
    );
  }
  // Copy into a fresh, aligned buffer (the member's offset need not be a multiple of the item size). Not
  // `bytes.slice`: on a Node Buffer that is a view into a shared pool, not a copy.
  const raw = new Uint8Array(bytes.subarray(dataStart));
  if (bigEndian) swapBytes(raw, itemSize);
  let data: Float32Array | Float64Array | Uint16Array =
    dtype === 'F32'
      ? new Float32Array(raw.buffer, 0, count)
      : dtype === 'F64'
        ? new Float64Array(raw.buffer, 0, count)
        : new Uint16Array(raw.buffer, 0, count);
  if (fortran) data = fortranToC(data, shape);
  return { dtype, shape, data };
}
