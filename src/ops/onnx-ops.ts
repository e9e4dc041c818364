/**
 * The op layer's graph backend: every call adds ONNX nodes (opset 17) to a GraphBuilder and returns the
 * name of their output. Kernel choices measured on onnxruntime's CPU provider (`npx tsx
 * bench/onnx-kernels.ts`): masks are Cast(comparison) floats, which run 3-5x faster per element than
 * Where/Sign; transposed operands of 2-D products are Gemm attributes, read in place by MLAS; and column
 * sums of squares are squares + ReduceSum, since ReduceSumSquare over the leading axis is ~5x slower.
 *
 * Beyond `Ops`, the graph shell: `input` declares graph inputs and `output` names graph outputs.
 */
import { GraphBuilder } from '../engine/onnx/graph-builder.js';
import { ONNX_IR_VERSION, ONNX_OPSET, TensorElemType } from '../engine/onnx/onnx-proto.js';
import type { AttributeValue, OnnxModel, OnnxValueInfo } from '../engine/onnx/onnx-proto.js';
import { SharingGraphBuilder } from '../engine/onnx/sharing-builder.js';
import type { Weight } from '../io/weight-file.js';
import type { GeluApproximation, IntArg, MatMulOptions, Ops } from './ops.js';

const int = (value: number): AttributeValue => ({ kind: 'int', value });
const ints = (value: readonly number[]): AttributeValue => ({ kind: 'ints', value });
const floatTensor = (name: string, value: number): AttributeValue => ({
  kind: 'tensor',
  value: { name, dims: [1], elemType: TensorElemType.FLOAT, data: Float32Array.of(value) },
});

export class OnnxOps implements Ops<string> {
  readonly backend = 'onnx' as const;
  readonly inputs: OnnxValueInfo[] = [];
  readonly outputs: OnnxValueInfo[] = [];
  private prefix: string;

  constructor(
    readonly b: GraphBuilder = new GraphBuilder(),
    prefix = 'g',
  ) {
    this.prefix = prefix;
  }

  private op(type: string, inputs: string[], attrs?: Record<string, AttributeValue>): string {
    return this.b.op(type, inputs, this.prefix, undefined, attrs);
  }

  /** An onnxruntime contrib op (a fused CPU kernel; onnxruntime-web has them too). */
  private contrib(type: string, inputs: string[]): string {
    return this.b.op(type, inputs, this.prefix, undefined, undefined, 'com.microsoft');
  }

  private i64(values: readonly number[]): string {
    return this.b.int64(`c.i64_${values.join('_')}`, values);
  }

  // ---- graph shell

  /** Declares a graph input (float32 unless told) and returns its name. */
  input(
    name: string,
    dims: ReadonlyArray<number | string>,
    elemType: TensorElemType = TensorElemType.FLOAT,
  ): string {
    this.inputs.push({ name, elemType, dims });
    return name;
  }

  /**
   * Makes `value` the graph output `name`. The node that computed it is renamed when it can be (no copy);
   * an input, an initializer, a value already output, or a value of a sharing builder gets an Identity.
   */
  output(
    value: string,
    name: string,
    dims: ReadonlyArray<number | string> | null = null,
    elemType: TensorElemType = TensorElemType.FLOAT,
  ): string {
    this.outputs.push({ name, elemType, dims });
    if (value === name) return name;
    const producer = this.b.nodes.find((n) => n.outputs.includes(value));
    const taken = this.outputs.some((o) => o.name === value);
    if (producer === undefined || taken || this.b instanceof SharingGraphBuilder) {
      this.b.op('Identity', [value], this.prefix, name);
      return name;
    }
    producer.outputs = producer.outputs.map((o) => (o === value ? name : o));
    for (const n of this.b.nodes) n.inputs = n.inputs.map((i) => (i === value ? name : i));
    return name;
  }

  /** The model of everything built so far. */
  model(graphName: string): OnnxModel {
    return {
      graph: {
        name: graphName,
        nodes: this.b.nodes,
        initializers: this.b.initializers,
        inputs: this.inputs,
        outputs: this.outputs,
      },
      opset: ONNX_OPSET,
      irVersion: ONNX_IR_VERSION,
      producer: 'saeflow',
    };
  }

  // ---- values

  scalar(value: number): string {
    return this.b.scalar(`c.f${value}`, value);
  }

  constant(key: string, shape: readonly number[], data: Weight): string {
    return this.b.constant(key, shape, data);
  }

  zerosLike(like: string): string {
    return this.op('ConstantOfShape', [this.op('Shape', [like])], { value: floatTensor('zero', 0) });
  }

  // ---- elementwise

  add = (a: string, b: string): string => this.op('Add', [a, b]);
  sub = (a: string, b: string): string => this.op('Sub', [a, b]);
  mul = (a: string, b: string): string => this.op('Mul', [a, b]);
  div = (a: string, b: string): string => this.op('Div', [a, b]);
  minimum = (a: string, b: string): string => this.op('Min', [a, b]);
  maximum = (a: string, b: string): string => this.op('Max', [a, b]);
  neg = (a: string): string => this.op('Neg', [a]);
  abs = (a: string): string => this.op('Abs', [a]);
  sqrt = (a: string): string => this.op('Sqrt', [a]);
  exp = (a: string): string => this.op('Exp', [a]);
  log = (a: string): string => this.op('Log', [a]);
  tanh = (a: string): string => this.op('Tanh', [a]);
  erf = (a: string): string => this.op('Erf', [a]);
  // One pass over the tensor instead of the formula's eight (gelu_new) or five (exact): the MLP's widest
  // activations, so these are most of a forward's elementwise time. Same formulas, float32 throughout.
  gelu = (a: string, approximate: GeluApproximation): string =>
    this.contrib(approximate === 'tanh' ? 'FastGelu' : 'Gelu', [a]);
  relu = (a: string): string => this.op('Relu', [a]);
  private toFloat = (a: string): string => this.op('Cast', [a], { to: int(TensorElemType.FLOAT) });
  greater = (a: string, b: string): string => this.toFloat(this.op('Greater', [a, b]));
  greaterEqual = (a: string, b: string): string => this.toFloat(this.op('GreaterOrEqual', [a, b]));
  less = (a: string, b: string): string => this.toFloat(this.op('Less', [a, b]));
  select = (mask: string, a: string, b: string): string =>
    this.op('Where', [this.op('Cast', [mask], { to: int(TensorElemType.BOOL) }), a, b]);

  // ---- products

  matMul(a: string, b: string, opts: MatMulOptions<string> = {}): string {
    const attrs: Record<string, AttributeValue> = {};
    if (opts.transA) attrs.transA = int(1);
    if (opts.transB) attrs.transB = int(1);
    return this.op('Gemm', opts.bias === undefined ? [a, b] : [a, b, opts.bias], attrs);
  }

  batchMatMul = (a: string, b: string): string => this.op('MatMul', [a, b]);

  // ---- reductions

  sum(a: string, axis?: number, keepDims = false): string {
    if (axis === undefined) return this.op('ReduceSum', [a], { keepdims: int(0) });
    return this.op('ReduceSum', [a, this.i64([axis])], { keepdims: int(keepDims ? 1 : 0) });
  }

  sumSquares = (a: string): string => this.op('ReduceSumSquare', [a], { keepdims: int(0) });

  mean = (a: string, axis: number, keepDims = false): string =>
    this.op('ReduceMean', [a], { axes: ints([axis]), keepdims: int(keepDims ? 1 : 0) });

  private reduce(type: string, a: string, axis: number | undefined, keepDims: boolean): string {
    if (axis === undefined) return this.op(type, [a], { keepdims: int(0) });
    return this.op(type, [a], { axes: ints([axis]), keepdims: int(keepDims ? 1 : 0) });
  }

  min = (a: string, axis?: number, keepDims = false): string => this.reduce('ReduceMin', a, axis, keepDims);
  max = (a: string, axis?: number, keepDims = false): string => this.reduce('ReduceMax', a, axis, keepDims);

  topKValues(a: string, k: IntArg<string>): string {
    const kName = typeof k === 'number' ? this.i64([k]) : k;
    return this.b.multi('TopK', [a, kName], this.prefix, 2, {
      axis: int(-1),
      largest: int(1),
      sorted: int(0),
    })[0]!;
  }

  softmax = (a: string): string => this.op('Softmax', [a], { axis: int(-1) });
  logSoftmax = (a: string): string => this.op('LogSoftmax', [a], { axis: int(-1) });

  // ---- shapes

  reshape = (a: string, shape: readonly number[]): string => this.op('Reshape', [a, this.i64(shape)]);
  transpose = (a: string, perm: readonly number[]): string => this.op('Transpose', [a], { perm: ints(perm) });
  concat = (parts: readonly string[], axis: number): string =>
    this.op('Concat', [...parts], { axis: int(axis) });

  split(a: string, sizes: readonly number[]): string[] {
    return this.b.multi('Split', [a, this.i64(sizes)], this.prefix, sizes.length, { axis: int(-1) });
  }

  slice(a: string, axis: number, start: number, end: number): string {
    const stop = Math.min(end, 2 ** 62);
    return this.op('Slice', [a, this.i64([start]), this.i64([stop]), this.i64([axis])]);
  }

  sliceLike(a: string, like: string, likeAxis: number): string {
    const shape = this.op('Shape', [like]);
    const n = this.op('Slice', [shape, this.i64([likeAxis]), this.i64([likeAxis + 1])]);
    return this.op('Slice', [a, this.i64([0]), n, this.i64([0])]);
  }

  expandLike = (a: string, like: string): string => this.op('Expand', [a, this.op('Shape', [like])]);

  gather = (table: string, ids: string, axis = 0): string =>
    this.op('Gather', [table, ids], { axis: int(axis) });

  gatherLast = (a: string, ids: string): string =>
    this.op('GatherElements', [a, this.op('Cast', [ids], { to: int(TensorElemType.INT64) })], {
      axis: int(-1),
    });

  // ---- fused layers

  layerNorm = (x: string, weight: string, bias: string, eps: number): string =>
    this.op('LayerNormalization', [x, weight, bias], {
      axis: int(-1),
      epsilon: { kind: 'float', value: eps },
    });

  private sizeOf(like: string, axis: number): string {
    return this.op('Slice', [
      this.op('Shape', [like]),
      this.i64([axis]),
      this.i64([axis === -1 ? 2 ** 62 : axis + 1]),
    ]);
  }

  causalMask(like: string, likeAxis: number, window?: number): string {
    const n = this.sizeOf(like, likeAxis);
    const square = this.op('Concat', [n, n], { axis: int(0) });
    const full = this.op('ConstantOfShape', [square], { value: floatTensor('neg_inf', -Infinity) });
    // Trilu with upper=1 and k=1 keeps what lies strictly above the diagonal, zeroing the rest.
    const future = this.op('Trilu', [full, this.b.int64('c.one_scalar', [1], true)], { upper: int(1) });
    if (window === undefined) return future;
    // upper=0, k=-window keeps key <= query - window: the keys that slid out of the window.
    const k = this.b.int64(`c.i64_scalar_${-window}`, [-window], true);
    return this.op('Add', [future, this.op('Trilu', [full, k], { upper: int(0) })]);
  }

  // ---- appended for the model families

  linear(x: string, w: string, opts: { bias?: string; transB?: boolean } = {}): string {
    // MatMul broadcasts over x's leading axes; MLAS reads w [k, n] as is.
    if (!opts.transB && opts.bias === undefined) return this.op('MatMul', [x, w]);
    // Gemm reads a transposed w in place (no copy of a [vocab, d] unembedding) and adds the bias inside the
    // product instead of in a pass of its own, but only on 2-D operands: x's leading axes are flattened.
    const xShape = this.op('Shape', [x]);
    const lead = this.op('Slice', [xShape, this.i64([0]), this.i64([-1])]);
    const n = this.op('Slice', [
      this.op('Shape', [w]),
      this.i64(opts.transB ? [0] : [1]),
      this.i64(opts.transB ? [1] : [2]),
    ]);
    const k = this.op('Slice', [xShape, this.i64([-1]), this.i64([2 ** 62])]);
    const rows = this.op('Reshape', [x, this.op('Concat', [this.i64([-1]), k], { axis: int(0) })]);
    const flat = this.matMul(rows, w, { transB: opts.transB, bias: opts.bias });
    return this.op('Reshape', [flat, this.op('Concat', [lead, n], { axis: int(0) })]);
  }

  reshapeLike = (a: string, like: string): string => this.op('Reshape', [a, this.op('Shape', [like])]);
  sigmoid = (a: string): string => this.op('Sigmoid', [a]);
  cos = (a: string): string => this.op('Cos', [a]);
  sin = (a: string): string => this.op('Sin', [a]);
  tile = (a: string, reps: readonly number[]): string => this.op('Tile', [a, this.i64(reps)]);

  positions(like: string, likeAxis: number): string {
    const n = this.op('Squeeze', [this.sizeOf(like, likeAxis), this.i64([0])]);
    const range = this.op('Range', [
      this.b.int64('c.i64_scalar_0', [0], true),
      n,
      this.b.int64('c.one_scalar', [1], true),
    ]);
    return this.toFloat(range);
  }

  // ---- appended for the sparse TopK step

  topK(a: string, k: IntArg<string>): { values: string; indices: string } {
    const kName = typeof k === 'number' ? this.i64([k]) : k;
    const [values, indices] = this.b.multi('TopK', [a, kName], this.prefix, 2, {
      axis: int(-1),
      largest: int(1),
      sorted: int(0),
    });
    return { values: values!, indices: indices! };
  }

  scatterAddRows(base: string, ids: string, updates: string): string {
    // ScatterND reads [..., 1] int64 row indices; its reduction loop is single-threaded, so callers keep
    // `updates` to the selected rows only (bench/onnx-kernels.ts times it against the dense GEMM).
    const index = this.op('Unsqueeze', [
      this.op('Cast', [ids], { to: int(TensorElemType.INT64) }),
      this.i64([-1]),
    ]);
    return this.op('ScatterND', [base, index, updates], { reduction: { kind: 'string', value: 'add' } });
  }

  intArg = (a: string): string =>
    this.op('Reshape', [this.op('Cast', [a], { to: int(TensorElemType.INT64) }), this.i64([1])]);

  scope<R>(name: string, fn: () => R): R {
    const saved = this.prefix;
    this.prefix = name;
    try {
      return fn();
    } finally {
      this.prefix = saved;
    }
  }
}

/** Ops over a builder that shares identical nodes (several forwards of one model in one graph). */
export function sharingOnnxOps(prefix = 'g'): OnnxOps {
  return new OnnxOps(new SharingGraphBuilder(), prefix);
}
