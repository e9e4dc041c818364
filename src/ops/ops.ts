/**
 * The op layer: the operations that models, SAEs, losses and optimisers are written against, once.
 * Two backends implement it (TensorFlow.js core's ops / kernels / backends split, in small):
 * - `OnnxOps` (src/ops/onnx-ops.ts) adds a node to an ONNX graph per call, for onnxruntime (the fast
 *   engine): a computation written on `Ops` becomes a graph by running it once with symbolic values.
 * - `TfjsOps` (src/ops/tfjs-ops.ts) runs each call eagerly on TensorFlow.js tensors; the caller wraps
 *   the computation in `tf.tidy` so intermediates are freed.
 *
 * `T` is the backend's value handle (a tensor name in a graph, a tf.Tensor eagerly). Values are float32
 * unless an op says otherwise; comparisons return 0/1 float masks, which both backends compute faster
 * than boolean selects and which compose by multiplication. Shapes follow NumPy broadcasting. Where a
 * size is only known at run time (batch, sequence length), ops take it from another value (`like`
 * arguments) or as a value (`k` of topK), so a graph stays valid for every size.
 */
import type { Weight } from '../io/weight-file.js';

/** A number, or (for int64 inputs of a graph) a value holding it: TopK's k, say. */
export type IntArg<T> = number | T;

/** GELU's form: exact (erf) or the tanh approximation (GPT-2's gelu_new, PyTorch's approximate='tanh'). */
export type GeluApproximation = 'none' | 'tanh';

export interface MatMulOptions<T> {
  /** Use aᵀ (a is [k, m]). */
  transA?: boolean;
  /** Use bᵀ (b is [n, k]). */
  transB?: boolean;
  /** Added to every row of the product ([n]). */
  bias?: T;
}

export interface Ops<T> {
  /** The backend's name, for messages. */
  readonly backend: 'onnx' | 'tfjs';

  // ---- values
  /** A float32 scalar. */
  scalar(value: number): T;
  /**
   * A constant float32 tensor of fixed shape (model weights, SAE parameters at inference). `key` names it
   * (one initializer per key in a graph; the same array under two keys is stored twice). A weight stored
   * in a weight file (src/io/weight-file.ts) stays there for a graph (external data) and is read eagerly.
   */
  constant(key: string, shape: readonly number[], data: Weight): T;
  /** Zeros shaped like `like`. */
  zerosLike(like: T): T;

  // ---- elementwise, broadcasting
  add(a: T, b: T): T;
  sub(a: T, b: T): T;
  mul(a: T, b: T): T;
  div(a: T, b: T): T;
  minimum(a: T, b: T): T;
  maximum(a: T, b: T): T;
  neg(a: T): T;
  abs(a: T): T;
  sqrt(a: T): T;
  exp(a: T): T;
  log(a: T): T;
  tanh(a: T): T;
  erf(a: T): T;
  /** x Φ(x), or its tanh approximation. */
  gelu(a: T, approximate: GeluApproximation): T;
  relu(a: T): T;
  /** 1 where a > b, else 0. */
  greater(a: T, b: T): T;
  /** 1 where a >= b, else 0. */
  greaterEqual(a: T, b: T): T;
  /** 1 where a < b, else 0. */
  less(a: T, b: T): T;
  /** `a` where mask (0/1) is 1, `b` where it is 0; exact even where the unselected side is not finite. */
  select(mask: T, a: T, b: T): T;

  // ---- products
  /** 2-D product a·b with optional transposes and bias (a Gemm). */
  matMul(a: T, b: T, opts?: MatMulOptions<T>): T;
  /** Batched product over leading axes (rank >= 3, same leading dims): [..., m, k] · [..., k, n]. */
  batchMatMul(a: T, b: T): T;

  // ---- reductions (keepDims false unless given)
  /** Σ over `axis`; no axis sums everything to a scalar. */
  sum(a: T, axis?: number, keepDims?: boolean): T;
  /** Σ a² over everything, a scalar. */
  sumSquares(a: T): T;
  mean(a: T, axis: number, keepDims?: boolean): T;
  /** Minimum over `axis`; no axis takes the minimum of everything (a scalar). */
  min(a: T, axis?: number, keepDims?: boolean): T;
  max(a: T, axis?: number, keepDims?: boolean): T;
  /** The k largest values along the last axis, in no particular order. */
  topKValues(a: T, k: IntArg<T>): T;
  softmax(a: T): T;
  logSoftmax(a: T): T;

  // ---- shapes
  /** ONNX Reshape semantics: a 0 copies the input's size on that axis, one -1 is inferred. */
  reshape(a: T, shape: readonly number[]): T;
  transpose(a: T, perm: readonly number[]): T;
  concat(parts: readonly T[], axis: number): T;
  /** Splits along the last axis into parts of the given sizes. */
  split(a: T, sizes: readonly number[]): T[];
  /** a[start:end] along `axis` (end may exceed the size: it is clamped). */
  slice(a: T, axis: number, start: number, end: number): T;
  /** The first `like.shape[likeAxis]` entries of `a` along axis 0. */
  sliceLike(a: T, like: T, likeAxis: number): T;
  /** `a` repeated over leading axes to the shape of `like` (trailing axes must match or be 1). */
  expandLike(a: T, like: T): T;
  /**
   * Slices of `table` at int ids (any shape) along `axis` (default 0): rows of [n, d] give [...ids.shape, d];
   * axis 1 of [b, n] gives [b, ...ids.shape].
   */
  gather(table: T, ids: T, axis?: number): T;
  /** a[..., idx[...]] along the last axis for int ids shaped as `a` but with last axis 1. */
  gatherLast(a: T, ids: T): T;

  // ---- fused layers (one kernel where the backend has one)
  /** Layer norm over the last axis with weight and bias. */
  layerNorm(x: T, weight: T, bias: T, eps: number): T;
  /**
   * [n, n] additive causal mask for axis `likeAxis` of `like` (n = like.shape[likeAxis]): 0 on and below the
   * diagonal, -inf above. With `window`, also -inf where the query is `window` or more positions after the
   * key (sliding-window attention: each query sees itself and the window - 1 keys before it).
   */
  causalMask(like: T, likeAxis: number, window?: number): T;

  /** Runs `fn` with node names prefixed by `name` (graph readability; eager backends just call it). */
  scope<R>(name: string, fn: () => R): R;

  // ---- appended for the model families (src/model/)
  /**
   * x [..., k] times w [k, n] (with `transB`, w is [n, k] and wᵀ is used), plus `bias` [n]: one product over
   * every leading axis of x, which keeps its leading shape ([..., n]).
   */
  linear(x: T, w: T, opts?: { bias?: T; transB?: boolean }): T;
  /** `a` reshaped to the shape of `like` (same number of elements). */
  reshapeLike(a: T, like: T): T;
  sigmoid(a: T): T;
  cos(a: T): T;
  sin(a: T): T;
  /** `a` repeated `reps[i]` times along axis i (reps has a's rank). */
  tile(a: T, reps: readonly number[]): T;
  /** The positions 0, 1, ..., n - 1 as float32 [n], n = like.shape[likeAxis]. */
  positions(like: T, likeAxis: number): T;

  // ---- appended for the sparse TopK step (src/sae/architectures/sparse-topk.ts)
  /**
   * The k largest values along the last axis and their int indices (int64 in a graph, int32 eagerly; only
   * ops taking ids read them), in no particular order but paired: values[i] = a[..., indices[i]].
   */
  topK(a: T, k: IntArg<T>): { values: T; indices: T };
  /**
   * `base` [n, ...rest] plus `updates` [...ids.shape, ...rest] added at the int row ids (any shape); repeated
   * ids add up (ScatterND with reduction add).
   */
  scatterAddRows(base: T, ids: T, updates: T): T;
  /** A float scalar holding a whole number, as a size other ops take (TopK's k). */
  intArg(a: T): IntArg<T>;
}

/** What a formula written in elementwise ops needs (src/ops/gelu.ts). */
export type ElementwiseOps<T> = Pick<Ops<T>, 'scalar' | 'add' | 'mul' | 'tanh' | 'erf'>;
