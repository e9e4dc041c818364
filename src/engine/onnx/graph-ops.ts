/**
 * Typed shorthands over GraphBuilder for float32 graphs written as formulas (the SAE training steps):
 * every method adds one node and returns its output name. Opset 17 semantics: ReduceSum takes its axes as
 * an input, the other reductions as an attribute.
 */
import type { GraphBuilder } from './graph-builder.js';
import type { AttributeValue } from './onnx-proto.js';

const int = (value: number): AttributeValue => ({ kind: 'int', value });
const ints = (value: number[]): AttributeValue => ({ kind: 'ints', value });

export class GraphOps {
  constructor(
    readonly b: GraphBuilder,
    /** Prefix of generated names, so a failing node names the part of the step it belongs to. */
    public scope = 'g',
  ) {}

  private op(type: string, inputs: string[], attrs?: Record<string, AttributeValue>, out?: string): string {
    return this.b.op(type, inputs, this.scope, out, attrs);
  }

  /** A float32 scalar constant. */
  c(value: number): string {
    return this.b.scalar(`c.f${value}`, value);
  }

  add = (a: string, b: string, out?: string): string => this.op('Add', [a, b], undefined, out);
  sub = (a: string, b: string, out?: string): string => this.op('Sub', [a, b], undefined, out);
  mul = (a: string, b: string, out?: string): string => this.op('Mul', [a, b], undefined, out);
  div = (a: string, b: string, out?: string): string => this.op('Div', [a, b], undefined, out);
  min = (a: string, b: string): string => this.op('Min', [a, b]);
  max = (a: string, b: string): string => this.op('Max', [a, b]);
  neg = (a: string): string => this.op('Neg', [a]);
  abs = (a: string): string => this.op('Abs', [a]);
  sqrt = (a: string): string => this.op('Sqrt', [a]);
  exp = (a: string): string => this.op('Exp', [a]);
  relu = (a: string): string => this.op('Relu', [a]);
  /** 1 where a > 0, else 0 (a float mask; the derivative of relu at a). */
  positive = (a: string): string => this.toFloat(this.greater(a, this.c(0)));
  greater = (a: string, b: string): string => this.op('Greater', [a, b]);
  greaterOrEqual = (a: string, b: string): string => this.op('GreaterOrEqual', [a, b]);
  less = (a: string, b: string): string => this.op('Less', [a, b]);
  toFloat = (a: string): string => this.op('Cast', [a], { to: int(1) });
  toInt64 = (a: string): string => this.op('Cast', [a], { to: int(7) });

  /** A Bᵀ-style product with optional transposes and bias (MLAS reads transposed operands in place). */
  gemm(a: string, b: string, opts: { transA?: boolean; transB?: boolean; bias?: string } = {}): string {
    const attrs: Record<string, AttributeValue> = {};
    if (opts.transA) attrs.transA = int(1);
    if (opts.transB) attrs.transB = int(1);
    return this.op('Gemm', opts.bias === undefined ? [a, b] : [a, b, opts.bias], attrs);
  }

  /** Σ over `axis` without keeping it; no axis sums everything to a scalar. */
  sum(a: string, axis?: number): string {
    if (axis === undefined) return this.op('ReduceSum', [a], { keepdims: int(0) });
    return this.op('ReduceSum', [a, this.b.int64(`c.axes${axis}`, [axis])], { keepdims: int(0) });
  }

  sumSquare = (a: string): string => this.op('ReduceSumSquare', [a], { keepdims: int(0) });
  mean = (a: string, axis: number): string =>
    this.op('ReduceMean', [a], { axes: ints([axis]), keepdims: int(0) });
  minAll = (a: string): string => this.op('ReduceMin', [a], { keepdims: int(0) });
  /** Minimum of each row of a [R, C] matrix, kept as a [R, 1] column. */
  rowMin = (a: string): string => this.op('ReduceMin', [a], { axes: ints([1]), keepdims: int(1) });
  /**
   * ‖column‖² of every column of a matrix, as a vector. Squares then ReduceSum: onnxruntime's
   * ReduceSumSquare over the leading axis runs ~5x slower than its ReduceSum there.
   */
  colSumSquare = (a: string): string => this.sum(this.mul(a, a), 0);

  /** The k largest values along the last axis (k an int64 [1] tensor name). */
  topkValues(a: string, k: string): string {
    return this.b.multi('TopK', [a, k], this.scope, 2, {
      axis: int(-1),
      largest: int(1),
      sorted: int(0),
    })[0]!;
  }

  reshape = (a: string, shape: number[]): string =>
    this.op('Reshape', [a, this.b.int64(`c.shape${shape.join('_')}`, shape)]);
  /** A column [n, 1] from a vector [n]. */
  column = (a: string): string => this.reshape(a, [-1, 1]);
  concat = (parts: string[], out?: string): string => this.op('Concat', parts, { axis: int(0) }, out);
}
