/**
 * A minimal Thrift compact-protocol reader and writer, for Parquet's page headers and footer.
 *
 * Structs decode into a generic tree (field id, wire type, value) rather than into typed objects, so a field we
 * do not interpret (statistics, key-value metadata, fields added to parquet.thrift after this was written)
 * survives a decode/encode round trip with its meaning unchanged. The encoder is canonical (shortest varints,
 * short-form field headers whenever the id delta allows): a writer that chose longer forms gets the same
 * values back in fewer bytes, which is why callers must re-derive every offset after re-encoding.
 *
 * Spec: https://github.com/apache/thrift/blob/master/doc/specs/thrift-compact-protocol.md
 */

export const enum CType {
  Stop = 0,
  BoolTrue = 1,
  BoolFalse = 2,
  Byte = 3,
  I16 = 4,
  I32 = 5,
  I64 = 6,
  Double = 7,
  Binary = 8,
  List = 9,
  Set = 10,
  Map = 11,
  Struct = 12,
}

/** Booleans use `BoolTrue` as their type whatever their value, so a field's type says how to encode it. */
export type TValue =
  | { readonly type: CType.BoolTrue; readonly value: boolean }
  | { readonly type: CType.Byte | CType.I16 | CType.I32; readonly value: number }
  | { readonly type: CType.I64; readonly value: bigint }
  | { readonly type: CType.Double; readonly value: number }
  | { readonly type: CType.Binary; readonly value: Uint8Array }
  | { readonly type: CType.List | CType.Set; readonly elem: CType; readonly value: TValue[] }
  | {
      readonly type: CType.Map;
      readonly key: CType;
      readonly val: CType;
      readonly value: [TValue, TValue][];
    }
  | { readonly type: CType.Struct; readonly value: TStruct };

export interface TField {
  readonly id: number;
  value: TValue;
}

/** Fields in wire order (Parquet writers emit ascending ids; `setField` keeps it so). */
export type TStruct = TField[];

/** Malformed compact-protocol bytes; callers turn it into a UserError naming the file and offset. */
export class ThriftError extends Error {
  override name = 'ThriftError';
}

// Nesting in parquet.thrift is a handful of levels; anything deeper is damage, and the bound keeps a
// crafted file from exhausting the stack.
const MAX_DEPTH = 64;

export class CompactReader {
  pos: number;

  constructor(
    private readonly bytes: Uint8Array,
    start = 0,
    private readonly end = bytes.length,
  ) {
    this.pos = start;
  }

  private byte(): number {
    if (this.pos >= this.end) throw new ThriftError(`truncated at byte ${this.pos}`);
    return this.bytes[this.pos++] as number;
  }

  private varint(): bigint {
    let result = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      const b = this.byte();
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
    }
    throw new ThriftError(`varint longer than 10 bytes at byte ${this.pos}`);
  }

  // 32-bit varints are decoded without BigInt: page headers are parsed per page, on the read path.
  private varint32(): number {
    let result = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const b = this.byte();
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) {
        if (result > 0xffffffff) throw new ThriftError(`32-bit varint overflows at byte ${this.pos}`);
        return result;
      }
    }
    throw new ThriftError(`varint longer than 5 bytes at byte ${this.pos}`);
  }

  private zigzag32(): number {
    const n = this.varint32();
    return (n >>> 1) ^ -(n & 1);
  }

  private zigzag64(): bigint {
    const n = this.varint();
    return BigInt.asIntN(64, (n >> 1n) ^ -(n & 1n));
  }

  private size(): number {
    const n = this.varint32();
    if (n > this.end - this.pos) throw new ThriftError(`length ${n} runs past the end at byte ${this.pos}`);
    return n;
  }

  readStruct(depth = 0): TStruct {
    if (depth > MAX_DEPTH) throw new ThriftError(`nested deeper than ${MAX_DEPTH} at byte ${this.pos}`);
    const fields: TStruct = [];
    let lastId = 0;
    for (;;) {
      const head = this.byte();
      const type = head & 0x0f;
      if (type === CType.Stop) return fields;
      const delta = head >> 4;
      const id = delta === 0 ? this.zigzag32() : lastId + delta;
      lastId = id;
      if (type === CType.BoolTrue || type === CType.BoolFalse) {
        fields.push({ id, value: { type: CType.BoolTrue, value: type === CType.BoolTrue } });
      } else {
        fields.push({ id, value: this.readValue(type, depth) });
      }
    }
  }

  private readValue(type: number, depth: number): TValue {
    if (depth > MAX_DEPTH) throw new ThriftError(`nested deeper than ${MAX_DEPTH} at byte ${this.pos}`);
    switch (type) {
      case CType.BoolTrue:
      case CType.BoolFalse: {
        // Only inside lists, sets and maps: one byte, 1 for true (2 is also written for false, 0 by some).
        const b = this.byte();
        return { type: CType.BoolTrue, value: b === 1 };
      }
      case CType.Byte: {
        const b = this.byte();
        return { type: CType.Byte, value: (b << 24) >> 24 };
      }
      case CType.I16:
      case CType.I32:
        return { type, value: this.zigzag32() };
      case CType.I64:
        return { type: CType.I64, value: this.zigzag64() };
      case CType.Double: {
        if (this.end - this.pos < 8) throw new ThriftError(`truncated double at byte ${this.pos}`);
        const view = new DataView(this.bytes.buffer, this.bytes.byteOffset + this.pos, 8);
        this.pos += 8;
        return { type: CType.Double, value: view.getFloat64(0, true) };
      }
      case CType.Binary: {
        const n = this.size();
        const value = this.bytes.slice(this.pos, this.pos + n);
        this.pos += n;
        return { type: CType.Binary, value };
      }
      case CType.List:
      case CType.Set: {
        const head = this.byte();
        const elem = head & 0x0f;
        const count = head >> 4 === 15 ? this.size() : head >> 4;
        const value: TValue[] = [];
        for (let i = 0; i < count; i++) value.push(this.readValue(elem, depth + 1));
        return { type, elem: normalizeBool(elem), value };
      }
      case CType.Map: {
        const count = this.size();
        if (count === 0) return { type: CType.Map, key: CType.Stop, val: CType.Stop, value: [] };
        const kv = this.byte();
        const key = kv >> 4;
        const val = kv & 0x0f;
        const value: [TValue, TValue][] = [];
        for (let i = 0; i < count; i++) {
          value.push([this.readValue(key, depth + 1), this.readValue(val, depth + 1)]);
        }
        return { type: CType.Map, key: normalizeBool(key), val: normalizeBool(val), value };
      }
      case CType.Struct:
        return { type: CType.Struct, value: this.readStruct(depth + 1) };
      default:
        throw new ThriftError(`unknown compact type ${type} at byte ${this.pos - 1}`);
    }
  }
}

function normalizeBool(t: number): CType {
  return t === CType.BoolFalse ? CType.BoolTrue : (t as CType);
}

export class CompactWriter {
  private buf = new Uint8Array(256);
  private len = 0;

  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.len + n));
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  private byte(b: number): void {
    this.ensure(1);
    this.buf[this.len++] = b & 0xff;
  }

  private varint(n: bigint): void {
    let v = BigInt.asUintN(64, n);
    while (v >= 0x80n) {
      this.byte(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.byte(Number(v));
  }

  private varint32(n: number): void {
    let v = n >>> 0;
    while (v >= 0x80) {
      this.byte((v & 0x7f) | 0x80);
      v >>>= 7;
    }
    this.byte(v);
  }

  private zigzag32(n: number): void {
    this.varint32(((n << 1) ^ (n >> 31)) >>> 0);
  }

  private zigzag64(n: bigint): void {
    const v = BigInt.asIntN(64, n);
    this.varint(BigInt.asUintN(64, (v << 1n) ^ (v >> 63n)));
  }

  writeStruct(fields: TStruct): this {
    let lastId = 0;
    for (const f of fields) {
      const wire = f.value.type === CType.BoolTrue && !f.value.value ? CType.BoolFalse : f.value.type;
      const delta = f.id - lastId;
      if (delta > 0 && delta <= 15) {
        this.byte((delta << 4) | wire);
      } else {
        this.byte(wire);
        this.zigzag32(f.id);
      }
      lastId = f.id;
      if (f.value.type !== CType.BoolTrue) this.writeValue(f.value);
    }
    this.byte(CType.Stop);
    return this;
  }

  private writeValue(v: TValue): void {
    switch (v.type) {
      case CType.BoolTrue:
        this.byte(v.value ? 1 : 2);
        return;
      case CType.Byte:
        this.byte(v.value);
        return;
      case CType.I16:
      case CType.I32:
        this.zigzag32(v.value);
        return;
      case CType.I64:
        this.zigzag64(v.value);
        return;
      case CType.Double: {
        this.ensure(8);
        new DataView(this.buf.buffer, this.len, 8).setFloat64(0, v.value, true);
        this.len += 8;
        return;
      }
      case CType.Binary:
        this.varint32(v.value.length);
        this.ensure(v.value.length);
        this.buf.set(v.value, this.len);
        this.len += v.value.length;
        return;
      case CType.List:
      case CType.Set: {
        const n = v.value.length;
        if (n < 15) this.byte((n << 4) | v.elem);
        else {
          this.byte(0xf0 | v.elem);
          this.varint32(n);
        }
        for (const e of v.value) this.writeValue(e);
        return;
      }
      case CType.Map:
        this.varint32(v.value.length);
        if (v.value.length === 0) return;
        this.byte((v.key << 4) | v.val);
        for (const [k, x] of v.value) {
          this.writeValue(k);
          this.writeValue(x);
        }
        return;
      case CType.Struct:
        this.writeStruct(v.value);
        return;
    }
  }

  bytes(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

export function encodeStruct(fields: TStruct): Uint8Array {
  return new CompactWriter().writeStruct(fields).bytes();
}

// Accessors for the few fields we interpret. A field of an unexpected wire type counts as damage.

export function getField(s: TStruct, id: number): TValue | undefined {
  for (const f of s) if (f.id === id) return f.value;
  return undefined;
}

export function getI32(s: TStruct, id: number): number | undefined {
  const v = getField(s, id);
  if (v === undefined) return undefined;
  if (v.type !== CType.I32) throw new ThriftError(`field ${id} is not an i32`);
  return v.value;
}

export function getI64(s: TStruct, id: number): bigint | undefined {
  const v = getField(s, id);
  if (v === undefined) return undefined;
  if (v.type !== CType.I64) throw new ThriftError(`field ${id} is not an i64`);
  return v.value;
}

export function getStruct(s: TStruct, id: number): TStruct | undefined {
  const v = getField(s, id);
  if (v === undefined) return undefined;
  if (v.type !== CType.Struct) throw new ThriftError(`field ${id} is not a struct`);
  return v.value;
}

export function getStructList(s: TStruct, id: number): TStruct[] {
  const v = getField(s, id);
  if (v === undefined) return [];
  if (v.type !== CType.List || v.elem !== CType.Struct)
    throw new ThriftError(`field ${id} is not a struct list`);
  return v.value.map((e) => (e as { value: TStruct }).value);
}

/** Sets (or replaces) field `id`, keeping the fields in ascending id order. */
export function setField(s: TStruct, id: number, value: TValue): void {
  const at = s.findIndex((f) => f.id >= id);
  if (at === -1) s.push({ id, value });
  else if ((s[at] as TField).id === id) (s[at] as TField).value = value;
  else s.splice(at, 0, { id, value });
}
