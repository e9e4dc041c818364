/**
 * Encodes the small subset of ONNX's protobuf schema (onnx.proto3) that a GPT-2 graph needs: ModelProto,
 * GraphProto, NodeProto, AttributeProto, TensorProto and ValueInfoProto. Hand-written rather than a
 * generated protobuf library because the subset is tiny and weights can then be referenced as views of the
 * caller's Float32Arrays, copied exactly once into the final buffer.
 */

/** The opset every saeflow graph is written against, and the IR version that goes with it. */
export const ONNX_OPSET = 17;
export const ONNX_IR_VERSION = 8;

export const TensorElemType = { FLOAT: 1, INT32: 6, INT64: 7, BOOL: 9, FLOAT16: 10 } as const;
export type TensorElemType = (typeof TensorElemType)[keyof typeof TensorElemType];

export type AttributeValue =
  | { kind: 'int'; value: number }
  | { kind: 'float'; value: number }
  | { kind: 'ints'; value: readonly number[] }
  /** ScatterND's and ScatterElements' `reduction` ("add"). */
  | { kind: 'string'; value: string }
  | { kind: 'tensor'; value: OnnxTensor }
  /** A subgraph (Loop's body); it may read the enclosing graph's values by name. */
  | { kind: 'graph'; value: OnnxGraph };

export interface OnnxNode {
  opType: string;
  name: string;
  inputs: string[];
  outputs: string[];
  attributes?: Record<string, AttributeValue>;
  /** The operator set the op belongs to: '' (the default) is ONNX's, 'com.microsoft' onnxruntime's own. */
  domain?: string;
}

/**
 * Where a tensor's little-endian bytes lie in a file beside the model (ONNX external data): onnxruntime
 * resolves `location` against the model file's directory and maps the file rather than copying it.
 */
export interface ExternalData {
  location: string;
  offset: number;
  length: number;
}

export interface OnnxTensor {
  name: string;
  dims: readonly number[];
  elemType: TensorElemType;
  /**
   * Little-endian element bytes (raw_data), or where they are in an external data file. FLOAT16 tensors
   * are their bit patterns in a Uint16Array (Node 20 has no Float16Array).
   */
  data: Float32Array | Int32Array | BigInt64Array | Uint16Array | ExternalData;
}

export function isExternal(data: OnnxTensor['data']): data is ExternalData {
  return !ArrayBuffer.isView(data);
}

/** Bytes a tensor's data takes, wherever it lies. */
export function tensorBytes(t: OnnxTensor): number {
  return isExternal(t.data) ? t.data.length : t.data.byteLength;
}

export interface OnnxValueInfo {
  name: string;
  elemType: TensorElemType;
  /** A number is a fixed size, a string a symbolic one (`batch`, `seq`); null leaves the shape unknown. */
  dims: ReadonlyArray<number | string> | null;
}

export interface OnnxGraph {
  name: string;
  nodes: OnnxNode[];
  initializers: OnnxTensor[];
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
}

export interface OnnxModel {
  graph: OnnxGraph;
  opset: number;
  irVersion: number;
  producer: string;
}

/** An encoded message as a list of byte pieces plus their total length, so nesting never re-copies. */
class Message {
  readonly parts: Uint8Array[] = [];
  length = 0;

  private push(bytes: Uint8Array): void {
    this.parts.push(bytes);
    this.length += bytes.length;
  }

  private varint(v: bigint | number): void {
    let n = BigInt.asUintN(64, BigInt(v));
    const out: number[] = [];
    while (n >= 0x80n) {
      out.push(Number(n & 0x7fn) | 0x80);
      n >>= 7n;
    }
    out.push(Number(n));
    this.push(Uint8Array.from(out));
  }

  private tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  int(field: number, v: number | bigint): this {
    this.tag(field, 0);
    this.varint(v);
    return this;
  }

  float(field: number, v: number): this {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.push(b);
    return this;
  }

  bytes(field: number, b: Uint8Array): this {
    this.tag(field, 2);
    this.varint(b.length);
    this.push(b);
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }

  message(field: number, m: Message): this {
    this.tag(field, 2);
    this.varint(m.length);
    for (const p of m.parts) this.push(p);
    return this;
  }

  packedInts(field: number, values: readonly number[]): this {
    const inner = new Message();
    for (const v of values) inner.varint(v);
    return this.message(field, inner);
  }

  concat(): Uint8Array {
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
}

function tensorMessage(t: OnnxTensor): Message {
  const m = new Message();
  m.packedInts(1, t.dims).int(2, t.elemType).string(8, t.name);
  if (isExternal(t.data)) {
    // TensorProto.external_data (StringStringEntryProto key/value pairs) and data_location = EXTERNAL.
    const entry = (key: string, value: string) => new Message().string(1, key).string(2, value);
    m.message(13, entry('location', t.data.location));
    m.message(13, entry('offset', String(t.data.offset)));
    m.message(13, entry('length', String(t.data.length)));
    return m.int(14, 1);
  }
  // Typed arrays are little-endian on every platform Node supports.
  m.bytes(9, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  return m;
}

// AttributeProto.AttributeType values.
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_STRING = 3;
const ATTR_TENSOR = 4;
const ATTR_GRAPH = 5;
const ATTR_INTS = 7;

function attributeMessage(name: string, a: AttributeValue): Message {
  const m = new Message().string(1, name);
  switch (a.kind) {
    case 'float':
      return m.float(2, a.value).int(20, ATTR_FLOAT);
    case 'int':
      return m.int(3, a.value).int(20, ATTR_INT);
    case 'tensor':
      return m.message(5, tensorMessage(a.value)).int(20, ATTR_TENSOR);
    case 'ints':
      return m.packedInts(8, a.value).int(20, ATTR_INTS);
    case 'string':
      return m.string(4, a.value).int(20, ATTR_STRING);
    case 'graph':
      return m.message(6, graphMessage(a.value)).int(20, ATTR_GRAPH);
  }
}

function nodeMessage(n: OnnxNode): Message {
  const m = new Message();
  for (const i of n.inputs) m.string(1, i);
  for (const o of n.outputs) m.string(2, o);
  m.string(3, n.name).string(4, n.opType);
  for (const [k, v] of Object.entries(n.attributes ?? {})) m.message(5, attributeMessage(k, v));
  if (n.domain) m.string(7, n.domain);
  return m;
}

function valueInfoMessage(v: OnnxValueInfo): Message {
  const tensorType = new Message().int(1, v.elemType);
  if (v.dims !== null) {
    const shape = new Message();
    for (const d of v.dims) {
      const dim = typeof d === 'number' ? new Message().int(1, d) : new Message().string(2, d);
      shape.message(1, dim);
    }
    tensorType.message(2, shape);
  }
  return new Message().string(1, v.name).message(2, new Message().message(1, tensorType));
}

function graphMessage(graph: OnnxGraph): Message {
  const g = new Message();
  for (const n of graph.nodes) g.message(1, nodeMessage(n));
  g.string(2, graph.name);
  for (const t of graph.initializers) g.message(5, tensorMessage(t));
  for (const i of graph.inputs) g.message(11, valueInfoMessage(i));
  for (const o of graph.outputs) g.message(12, valueInfoMessage(o));
  return g;
}

/** Serialises a model to ONNX protobuf bytes, ready for `InferenceSession.create`. */
export function encodeOnnxModel(model: OnnxModel): Uint8Array {
  const m = new Message()
    .int(1, model.irVersion)
    .string(2, model.producer)
    .message(7, graphMessage(model.graph));
  m.message(8, new Message().string(1, '').int(2, model.opset));
  // onnxruntime's contrib ops (fused kernels such as FastGelu) are version 1 of their own domain.
  const domains = new Set(model.graph.nodes.map((n) => n.domain ?? '').filter((d) => d !== ''));
  for (const d of domains) m.message(8, new Message().string(1, d).int(2, 1));
  return m.concat();
}

/** A serialised protobuf message may not reach 2 GiB; keep room for the graph itself. */
export const PROTOBUF_LIMIT = 2 ** 31 - 2 ** 24;
