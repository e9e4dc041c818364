/**
 * The op layer's eager backend: every call runs TensorFlow.js kernels at once. Callers wrap a computation
 * in `tf.tidy` so its intermediates are freed. Kernel choices measured on the wasm backend (the one that
 * installs everywhere):
 * - transposed operands are materialised and multiplied plainly: wasm runs matMul with transposeA/B
 *   10-40x slower; for aᵀb with a narrower than b, (bᵀa)ᵀ keeps the product's output narrow (~35% faster);
 * - sums over the leading axis of a matrix are a ones-row product: wasm's Sum transposes for any other
 *   axis than the last (~75 ms against ~2 ms on [1024, 6144]);
 * - masks are `step` arithmetic: wasm's broadcast comparisons against a column take ~0.8 s on
 *   [1024, 6144], sub + step ~20 ms, and both are exact for finite floats (x - t > 0 exactly when x > t).
 *
 * Constants are created once per key and kept until `dispose`.
 */
import * as tf from '@tensorflow/tfjs-core';
import { inMemory } from '../io/weight-file.js';
import type { Weight } from '../io/weight-file.js';
import { geluFormula } from './gelu.js';
import type { GeluApproximation, IntArg, MatMulOptions, Ops } from './ops.js';

type Tensor = tf.Tensor;

/** NumPy broadcasting of two shapes. */
function broadcastShape(a: readonly number[], b: readonly number[]): number[] {
  const rank = Math.max(a.length, b.length);
  return Array.from({ length: rank }, (_, i) => {
    const x = a[a.length - rank + i] ?? 1;
    const y = b[b.length - rank + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1)
      throw new Error(`shapes [${a.join(', ')}] and [${b.join(', ')}] do not broadcast`);
    return x === 1 ? y : x;
  });
}

function intValue(k: IntArg<Tensor>): number {
  return typeof k === 'number' ? k : Number((k.dataSync() as ArrayLike<number>)[0]);
}

export class TfjsOps implements Ops<Tensor> {
  readonly backend = 'tfjs' as const;
  private readonly constants = new Map<string, Tensor>();

  scalar(value: number): Tensor {
    return tf.scalar(value, 'float32');
  }

  constant(key: string, shape: readonly number[], data: Weight): Tensor {
    let t = this.constants.get(key);
    if (t === undefined) {
      t = tf.keep(tf.tensor(inMemory(data), [...shape], 'float32'));
      this.constants.set(key, t);
    }
    return t;
  }

  zerosLike = (like: Tensor): Tensor => tf.zerosLike(like);

  add = (a: Tensor, b: Tensor): Tensor => tf.add(a, b);
  sub = (a: Tensor, b: Tensor): Tensor => tf.sub(a, b);
  mul = (a: Tensor, b: Tensor): Tensor => tf.mul(a, b);
  div = (a: Tensor, b: Tensor): Tensor => tf.div(a, b);
  minimum = (a: Tensor, b: Tensor): Tensor => tf.minimum(a, b);
  maximum = (a: Tensor, b: Tensor): Tensor => tf.maximum(a, b);
  neg = (a: Tensor): Tensor => tf.neg(a);
  abs = (a: Tensor): Tensor => tf.abs(a);
  sqrt = (a: Tensor): Tensor => tf.sqrt(a);
  exp = (a: Tensor): Tensor => tf.exp(a);
  log = (a: Tensor): Tensor => tf.log(a);
  tanh = (a: Tensor): Tensor => tf.tanh(a);
  erf = (a: Tensor): Tensor => tf.erf(a);
  gelu = (a: Tensor, approximate: GeluApproximation): Tensor => geluFormula(this, a, approximate);
  relu = (a: Tensor): Tensor => tf.relu(a);
  greater = (a: Tensor, b: Tensor): Tensor => tf.step(tf.sub(a, b));
  greaterEqual = (a: Tensor, b: Tensor): Tensor => tf.sub(1, tf.step(tf.sub(b, a)));
  less = (a: Tensor, b: Tensor): Tensor => tf.step(tf.sub(b, a));

  select(mask: Tensor, a: Tensor, b: Tensor): Tensor {
    const shape = broadcastShape(broadcastShape(mask.shape, a.shape), b.shape);
    const cond = tf.broadcastTo(tf.cast(mask, 'bool'), shape);
    return tf.where(cond, tf.broadcastTo(a, shape), tf.broadcastTo(b, shape));
  }

  matMul(a: Tensor, b: Tensor, opts: MatMulOptions<Tensor> = {}): Tensor {
    let left = a as tf.Tensor2D;
    let right = b as tf.Tensor2D;
    const bias = opts.bias;
    // The fused kernel takes a row bias only; a matrix bias (accumulated products) is a plain add.
    if (bias !== undefined && bias.rank !== 1)
      return tf.add(this.matMul(a, b, { ...opts, bias: undefined }), bias);
    if (opts.transA && !opts.transB && bias === undefined && left.shape[1] < right.shape[1]) {
      // aᵀb = (bᵀa)ᵀ: the product's output has the fewer columns.
      return tf.transpose(tf.matMul(tf.transpose(right), left));
    }
    if (opts.transA) left = tf.transpose(left);
    if (opts.transB) right = tf.transpose(right);
    if (bias === undefined) return tf.matMul(left, right);
    return tf.fused.matMul({ a: left, b: right, bias });
  }

  batchMatMul = (a: Tensor, b: Tensor): Tensor => tf.matMul(a as tf.Tensor3D, b as tf.Tensor3D);

  sum(a: Tensor, axis?: number, keepDims = false): Tensor {
    if (axis === 0 && a.rank === 2) {
      const [rows, cols] = a.shape as [number, number];
      return tf.reshape(tf.matMul(tf.ones([1, rows]), a as tf.Tensor2D), keepDims ? [1, cols] : [cols]);
    }
    return tf.sum(a, axis, keepDims);
  }

  sumSquares = (a: Tensor): Tensor => tf.sum(tf.square(a));
  mean = (a: Tensor, axis: number, keepDims = false): Tensor => tf.mean(a, axis, keepDims);
  min = (a: Tensor, axis?: number, keepDims = false): Tensor => tf.min(a, axis, keepDims);
  max = (a: Tensor, axis?: number, keepDims = false): Tensor => tf.max(a, axis, keepDims);

  topKValues(a: Tensor, k: IntArg<Tensor>): Tensor {
    return tf.topk(a, intValue(k), false).values;
  }

  softmax = (a: Tensor): Tensor => tf.softmax(a);
  logSoftmax = (a: Tensor): Tensor => tf.logSoftmax(a);

  reshape(a: Tensor, shape: readonly number[]): Tensor {
    return tf.reshape(
      a,
      shape.map((d, i) => (d === 0 ? a.shape[i]! : d)),
    );
  }

  transpose = (a: Tensor, perm: readonly number[]): Tensor => tf.transpose(a, [...perm]);
  concat = (parts: readonly Tensor[], axis: number): Tensor =>
    parts.length === 1 ? tf.clone(parts[0]!) : tf.concat([...parts], axis);
  split = (a: Tensor, sizes: readonly number[]): Tensor[] => tf.split(a, [...sizes], -1);

  slice(a: Tensor, axis: number, start: number, end: number): Tensor {
    const ax = axis < 0 ? a.rank + axis : axis;
    const size = a.shape.map((d, i) => (i === ax ? Math.max(0, Math.min(end, d) - start) : -1));
    const begin = a.shape.map((_, i) => (i === ax ? start : 0));
    return tf.slice(a, begin, size);
  }

  sliceLike(a: Tensor, like: Tensor, likeAxis: number): Tensor {
    const n = like.shape[likeAxis < 0 ? like.rank + likeAxis : likeAxis]!;
    return this.slice(a, 0, 0, n);
  }

  expandLike = (a: Tensor, like: Tensor): Tensor => tf.broadcastTo(a, like.shape);

  gather = (table: Tensor, ids: Tensor, axis = 0): Tensor => tf.gather(table, tf.cast(ids, 'int32'), axis);

  gatherLast(a: Tensor, ids: Tensor): Tensor {
    // ONNX GatherElements: ids may be shorter than `a` on the leading axes; only that corner is read.
    const width = a.shape[a.rank - 1]!;
    const lead = ids.shape.slice(0, -1);
    const corner = tf.slice(
      a,
      a.shape.map(() => 0),
      [...lead, width],
    );
    const rows = lead.reduce((x, y) => x * y, 1);
    const picks = ids.shape[ids.rank - 1]!;
    // Flat positions row * width + id, read from the flattened corner.
    const rowStart = tf.mul(tf.reshape(tf.range(0, rows, 1, 'int32'), [rows, 1]), tf.scalar(width, 'int32'));
    const flatIds = tf.add(tf.reshape(tf.cast(ids, 'int32'), [rows, picks]), rowStart);
    return tf.reshape(tf.gather(tf.reshape(corner, [-1]), tf.reshape(flatIds, [-1])), ids.shape);
  }

  topK(a: Tensor, k: IntArg<Tensor>): { values: Tensor; indices: Tensor } {
    const { values, indices } = tf.topk(a, intValue(k), false);
    return { values, indices };
  }

  scatterAddRows(base: Tensor, ids: Tensor, updates: Tensor): Tensor {
    // tf.scatterND sums the updates of repeated indices, as ScatterND's reduction add does.
    const index = tf.expandDims(tf.cast(ids, 'int32'), -1);
    return tf.add(base, tf.scatterND(index, updates, base.shape));
  }

  intArg = (a: Tensor): number => Math.round(Number((a.dataSync() as ArrayLike<number>)[0]));

  layerNorm(x: Tensor, weight: Tensor, bias: Tensor, eps: number): Tensor {
    const { mean, variance } = tf.moments(x, -1, true);
    return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps))), weight), bias);
  }

  causalMask(like: Tensor, likeAxis: number, window?: number): Tensor {
    const n = like.shape[likeAxis < 0 ? like.rank + likeAxis : likeAxis]!;
    const data = new Float32Array(n * n);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++)
        if (j > i || (window !== undefined && i - j >= window)) data[i * n + j] = -Infinity;
    }
    return tf.tensor2d(data, [n, n]);
  }

  // ---- appended for the model families

  /** Transposes of constants, made once: wasm multiplies transposed operands 10-40x slower. */
  private readonly transposed = new Map<Tensor, Tensor>();

  linear(x: Tensor, w: Tensor, opts: { bias?: Tensor; transB?: boolean } = {}): Tensor {
    let right = w as tf.Tensor2D;
    if (opts.transB) {
      const isConstant = [...this.constants.values()].includes(w);
      const cached = isConstant ? this.transposed.get(w) : undefined;
      if (cached) right = cached as tf.Tensor2D;
      else {
        right = tf.transpose(w) as tf.Tensor2D;
        if (isConstant) this.transposed.set(w, tf.keep(right));
      }
    }
    const k = x.shape[x.rank - 1]!;
    const n = right.shape[1];
    // 2-D products: wasm hands only those to XNNPACK.
    const rows = tf.reshape(x, [-1, k]) as tf.Tensor2D;
    const y =
      opts.bias === undefined
        ? tf.matMul(rows, right)
        : tf.fused.matMul({ a: rows, b: right, bias: opts.bias });
    return tf.reshape(y, [...x.shape.slice(0, -1), n]);
  }

  reshapeLike = (a: Tensor, like: Tensor): Tensor => tf.reshape(a, like.shape);
  sigmoid = (a: Tensor): Tensor => tf.sigmoid(a);
  cos = (a: Tensor): Tensor => tf.cos(a);
  sin = (a: Tensor): Tensor => tf.sin(a);
  tile = (a: Tensor, reps: readonly number[]): Tensor => tf.tile(a, [...reps]);

  positions(like: Tensor, likeAxis: number): Tensor {
    return tf.range(0, like.shape[likeAxis < 0 ? like.rank + likeAxis : likeAxis]!, 1, 'float32');
  }

  scope<R>(_name: string, fn: () => R): R {
    return fn();
  }

  /** Frees the constants. */
  dispose(): void {
    for (const t of this.constants.values()) t.dispose();
    this.constants.clear();
    for (const t of this.transposed.values()) t.dispose();
    this.transposed.clear();
  }
}
