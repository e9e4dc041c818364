/**
 * The op layer's two backends agree: every op of `Ops`, run as an ONNX graph in onnxruntime and eagerly on
 * TensorFlow.js, on the same inputs, against a hand-computed expectation where one is easy to write.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/pipeline/backend.js';
import { evaluateOnnx, evaluateTfjs } from '../src/ops/evaluate.js';
import type { HostArray, HostResult, OpsProgram } from '../src/ops/evaluate.js';
import { mulberry32 } from '../src/util/random.js';

function randomArray(shape: number[], seed: number, scale = 1): HostArray {
  const rand = mulberry32(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return { shape, data: Float32Array.from({ length: n }, () => (rand() * 2 - 1) * scale) };
}

const f = (shape: number[], values: number[]): HostArray => ({ shape, data: Float32Array.from(values) });

async function both(
  program: OpsProgram,
  inputs: Record<string, HostArray>,
): Promise<{ onnx: Record<string, HostResult>; tfjs: Record<string, HostResult> }> {
  return { onnx: await evaluateOnnx(program, inputs), tfjs: evaluateTfjs(program, inputs) };
}

function expectClose(a: HostResult, b: HostResult, tol = 1e-5): void {
  expect(a.shape).toEqual(b.shape);
  const x = Array.from(a.data);
  const y = Array.from(b.data);
  for (let i = 0; i < x.length; i++) {
    if (Number.isFinite(x[i]!) || Number.isFinite(y[i]!))
      expect(Math.abs(x[i]! - y[i]!), `element ${i}: ${x[i]} vs ${y[i]}`).toBeLessThanOrEqual(
        tol * Math.max(1, Math.abs(x[i]!)),
      );
    else expect(x[i]).toBe(y[i]);
  }
}

async function agree(program: OpsProgram, inputs: Record<string, HostArray>, tol = 1e-5) {
  const { onnx, tfjs } = await both(program, inputs);
  expect(Object.keys(onnx).sort()).toEqual(Object.keys(tfjs).sort());
  for (const name of Object.keys(onnx)) expectClose(onnx[name]!, tfjs[name]!, tol);
  return onnx;
}

describe('op layer: onnx and tfjs backends agree', () => {
  beforeAll(async () => {
    await selectBackend('wasm');
  });

  const a = randomArray([5, 7], 1);
  const b = randomArray([5, 7], 2);
  const row = randomArray([7], 3);

  it('elementwise ops with broadcasting', async () => {
    const out = await agree(
      (o, { a, b, row }) => ({
        add: o.add(a!, row!),
        sub: o.sub(a!, b!),
        mul: o.mul(a!, o.scalar(3)),
        div: o.div(a!, o.add(o.abs(b!), o.scalar(1))),
        min: o.minimum(a!, b!),
        max: o.maximum(a!, row!),
        neg: o.neg(a!),
        sqrt: o.sqrt(o.abs(a!)),
        exp: o.exp(a!),
        log: o.log(o.add(o.abs(a!), o.scalar(0.5))),
        tanh: o.tanh(a!),
        erf: o.erf(a!),
        relu: o.relu(a!),
      }),
      { a, b, row },
    );
    const x = a.data as Float32Array;
    expect(out.relu!.data[3]).toBe(Math.max(0, x[3]!));
    expect(out.neg!.data[0]).toBeCloseTo(-x[0]!, 6);
  });

  it('gelu, exact and tanh-approximated, as the formulas (fused kernels on onnx)', async () => {
    const x = randomArray([3, 4, 9], 21, 4);
    const out = await agree((o, { x }) => ({ exact: o.gelu(x!, 'none'), tanh: o.gelu(x!, 'tanh') }), { x });
    const v = x.data as Float32Array;
    for (let i = 0; i < v.length; i++) {
      const t = v[i]!;
      const tanhForm = 0.5 * t * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (t + 0.044715 * t ** 3)));
      expect(out.tanh!.data[i]).toBeCloseTo(tanhForm, 5);
    }
    // GELU(1) = Φ(1) = 0.8413447460685429; the approximation differs from it in the 4th decimal.
    const one = await evaluateOnnx((o, { x }) => ({ e: o.gelu(x!, 'none'), t: o.gelu(x!, 'tanh') }), {
      x: f([1], [1]),
    });
    expect(one.e!.data[0]).toBeCloseTo(0.8413447, 6);
    expect(Math.abs(one.t!.data[0]! - 0.8413447)).toBeGreaterThan(1e-4);
  });

  it('masks are 0/1 floats, ties included, and select picks exactly', async () => {
    const x = f([2, 3], [1, 2, 3, 3, 2, 1]);
    const t = f([2, 1], [2, 2]);
    const out = await agree(
      (o, { x, t }) => ({
        gt: o.greater(x!, t!),
        ge: o.greaterEqual(x!, t!),
        lt: o.less(x!, t!),
        sel: o.select(o.greater(x!, t!), x!, o.zerosLike(x!)),
      }),
      { x, t },
    );
    expect(Array.from(out.gt!.data)).toEqual([0, 0, 1, 1, 0, 0]);
    expect(Array.from(out.ge!.data)).toEqual([0, 1, 1, 1, 1, 0]);
    expect(Array.from(out.lt!.data)).toEqual([1, 0, 0, 0, 0, 1]);
    expect(Array.from(out.sel!.data)).toEqual([0, 0, 3, 3, 0, 0]);
  });

  it('2-D products with every transpose and a bias, and batched products', async () => {
    const p = randomArray([4, 6], 4);
    const q = randomArray([6, 3], 5);
    const qt = randomArray([3, 6], 6);
    const pt = randomArray([6, 4], 7);
    const wide = randomArray([6, 9], 8);
    const bias = randomArray([3], 9);
    const x3 = randomArray([2, 4, 5], 10);
    const y3 = randomArray([2, 5, 3], 11);
    const out = await agree(
      (o, i) => ({
        plain: o.matMul(i.p!, i.q!),
        bias: o.matMul(i.p!, i.q!, { bias: i.bias }),
        transB: o.matMul(i.p!, i.qt!, { transB: true, bias: i.bias }),
        transA: o.matMul(i.pt!, i.q!, { transA: true }),
        transAwide: o.matMul(i.pt!, i.wide!, { transA: true }),
        both: o.matMul(i.q!, i.qt!, { transA: true, transB: true }),
        batch: o.batchMatMul(i.x3!, i.y3!),
      }),
      { p, q, qt, pt, wide, bias, x3, y3 },
    );
    const P = p.data as Float32Array;
    const Q = q.data as Float32Array;
    let v = 0;
    for (let k = 0; k < 6; k++) v += P[k]! * Q[k * 3]!;
    expect(out.plain!.data[0]).toBeCloseTo(v, 5);
    expect(out.transAwide!.shape).toEqual([4, 9]);
    expect(out.both!.shape).toEqual([3, 3]);
  });

  it('reductions, top-k values, softmax', async () => {
    const k = { shape: [1], data: BigInt64Array.of(2n) };
    const out = await agree(
      (o, { a, k }) => ({
        sumAll: o.sum(a!),
        sum0: o.sum(a!, 0),
        sum1keep: o.sum(a!, 1, true),
        sumSq: o.sumSquares(a!),
        mean0: o.mean(a!, 0),
        min: o.min(a!),
        min1: o.min(a!, 1, true),
        max0: o.max(a!, 0),
        // Sorted so both backends' unordered top-k compare equal.
        top3: o.neg(o.max(o.neg(o.topKValues(a!, 3)), 1)),
        topK: o.min(o.topKValues(a!, k!), 1),
        softmax: o.softmax(a!),
        logSoftmax: o.logSoftmax(a!),
      }),
      { a, k },
    );
    const x = Array.from(a.data as Float32Array);
    expect(out.sumAll!.data[0]).toBeCloseTo(
      x.reduce((s, v) => s + v, 0),
      5,
    );
    expect(out.sum0!.shape).toEqual([7]);
    expect(out.sum1keep!.shape).toEqual([5, 1]);
    const row0 = x.slice(0, 7).sort((p, q) => q - p);
    expect(out.top3!.data[0]).toBeCloseTo(row0[2]!, 6);
    expect(out.topK!.data[0]).toBeCloseTo(row0[1]!, 6);
  });

  it('shapes: reshape with copied sizes, transpose, concat, split, slice, gather', async () => {
    const x = randomArray([2, 3, 8], 12);
    const table = randomArray([10, 4], 13);
    const ids = { shape: [2, 3], data: Int32Array.from([1, 0, 9, 4, 4, 2]) };
    const next = { shape: [2, 2, 1], data: Int32Array.from([3, 1, 0, 7]) };
    const logits = randomArray([2, 3, 8], 14);
    const out = await agree(
      (o, i) => {
        const [s1, s2] = o.split(i.x!, [3, 5]);
        return {
          heads: o.reshape(i.x!, [0, 0, 2, 4]),
          perm: o.transpose(o.reshape(i.x!, [0, 0, 2, 4]), [0, 2, 1, 3]),
          cat: o.concat([i.x!, i.x!], 1),
          s1: s1!,
          s2: s2!,
          slice: o.slice(i.x!, 1, 1, 100),
          sliceLike: o.sliceLike(i.table!, i.ids!, 1),
          expand: o.expandLike(o.sliceLike(i.table!, i.ids!, 1), o.gather(i.table!, i.ids!)),
          gather: o.gather(i.table!, i.ids!),
          gatherLast: o.gatherLast(i.logits!, i.next!),
        };
      },
      { x, table, ids, next, logits },
    );
    expect(out.heads!.shape).toEqual([2, 3, 2, 4]);
    expect(out.perm!.shape).toEqual([2, 2, 3, 4]);
    expect(out.s2!.shape).toEqual([2, 3, 5]);
    expect(out.slice!.shape).toEqual([2, 2, 8]);
    expect(out.sliceLike!.shape).toEqual([3, 4]);
    expect(out.expand!.shape).toEqual([2, 3, 4]);
    expect(out.gather!.data[0]).toBe(table.data[4]);
    expect(out.gatherLast!.shape).toEqual([2, 2, 1]);
    expect(out.gatherLast!.data[1]).toBe(logits.data[8 + 1]);
  });

  it('layer norm and the causal mask', async () => {
    const x = randomArray([2, 3, 8], 15, 3);
    const w = randomArray([8], 16);
    const bias = randomArray([8], 17);
    const out = await agree(
      (o, i) => ({
        ln: o.layerNorm(i.x!, i.w!, i.bias!, 1e-5),
        mask: o.causalMask(i.x!, 1),
      }),
      { x, w, bias },
      1e-4,
    );
    expect(Array.from(out.mask!.data)).toEqual([0, -Infinity, -Infinity, 0, 0, -Infinity, 0, 0, 0]);
  });

  it('sliding-window causal mask, positions, sigmoid, cos, sin, tile', async () => {
    const x = randomArray([1, 5, 3], 22, 4);
    const out = await agree(
      (o, i) => ({
        window: o.causalMask(i.x!, 1, 2),
        positions: o.positions(i.x!, 1),
        sigmoid: o.sigmoid(i.x!),
        cos: o.cos(i.x!),
        sin: o.sin(i.x!),
        tiled: o.tile(o.reshape(i.x!, [1, 5, 3, 1]), [1, 1, 1, 2]),
      }),
      { x },
      1e-5,
    );
    const I = -Infinity;
    // Query i sees keys i - 1 and i only.
    expect(Array.from(out.window!.data)).toEqual([
      0,
      I,
      I,
      I,
      I,
      0,
      0,
      I,
      I,
      I,
      I,
      0,
      0,
      I,
      I,
      I,
      I,
      0,
      0,
      I,
      I,
      I,
      I,
      0,
      0,
    ]);
    expect(Array.from(out.positions!.data)).toEqual([0, 1, 2, 3, 4]);
    const X = x.data as Float32Array;
    expect(out.sigmoid!.data[4]).toBeCloseTo(1 / (1 + Math.exp(-X[4]!)), 6);
    expect(out.cos!.data[7]).toBeCloseTo(Math.cos(X[7]!), 6);
    expect(out.sin!.data[7]).toBeCloseTo(Math.sin(X[7]!), 6);
    expect(out.tiled!.shape).toEqual([1, 5, 3, 2]);
    expect(out.tiled!.data[2 * 3 * 2 + 1 * 2 + 1]).toBe(X[2 * 3 + 1]);
  });

  it('constants are named once and usable together', async () => {
    const data = Float32Array.from([1, 2, 3]);
    const out = await agree(
      (o, { a }) => ({
        c: o.add(o.constant('w', [3], data), o.constant('w', [3], data)),
        z: o.zerosLike(a!),
      }),
      { a },
    );
    expect(Array.from(out.c!.data)).toEqual([2, 4, 6]);
  });
  it('linear over leading axes, with bias and a transposed weight; reshapeLike', async () => {
    const x = randomArray([2, 3, 4], 18);
    const w = randomArray([4, 5], 19);
    const wt = randomArray([5, 4], 20);
    const bias = randomArray([5], 21);
    const out = await agree(
      (o, i) => ({
        plain: o.linear(i.x!, i.w!),
        biased: o.linear(i.x!, i.w!, { bias: i.bias! }),
        // A constant's transpose is cached by the eager backend: used twice, the same numbers.
        t1: o.linear(i.x!, o.constant('wt', [5, 4], wt.data as Float32Array), { transB: true }),
        t2: o.linear(i.x!, o.constant('wt', [5, 4], wt.data as Float32Array), {
          transB: true,
          bias: i.bias!,
        }),
        back: o.reshapeLike(o.reshape(i.x!, [-1, 4]), i.x!),
      }),
      { x, w, bias },
      1e-5,
    );
    expect(out.plain!.shape).toEqual([2, 3, 5]);
    expect(out.t1!.shape).toEqual([2, 3, 5]);
    expect(out.back!.shape).toEqual([2, 3, 4]);
    // Row (1, 2) of x times w, by hand.
    const X = x.data as Float32Array;
    const W = w.data as Float32Array;
    const WT = wt.data as Float32Array;
    for (let n = 0; n < 5; n++) {
      let s = 0;
      let st = 0;
      for (let k = 0; k < 4; k++) {
        s += X[(1 * 3 + 2) * 4 + k]! * W[k * 5 + n]!;
        st += X[(1 * 3 + 2) * 4 + k]! * WT[n * 4 + k]!;
      }
      expect(out.plain!.data[(1 * 3 + 2) * 5 + n]).toBeCloseTo(s, 5);
      expect(out.biased!.data[(1 * 3 + 2) * 5 + n]).toBeCloseTo(s + (bias.data as Float32Array)[n]!, 5);
      expect(out.t1!.data[(1 * 3 + 2) * 5 + n]).toBeCloseTo(st, 5);
      expect(out.t2!.data[(1 * 3 + 2) * 5 + n]).toBeCloseTo(st + (bias.data as Float32Array)[n]!, 5);
    }
  });

  it('sparse selections: top-k values with indices, gathers along an axis, scatter-adds of rows', async () => {
    const a = randomArray([4, 9], 30);
    const table = randomArray([9, 3], 31);
    // Repeated ids (3 twice, 0 twice) must add up.
    const ids = { shape: [2, 3], data: Int32Array.from([3, 0, 3, 8, 0, 1]) };
    const upd = randomArray([2, 3, 3], 32);
    const count = f([], [2]);
    const { onnx, tfjs } = await both(
      (o, i) => {
        const top = o.topK(i.a!, 3);
        return {
          // Paired values and indices: reading a at the indices gives the values.
          values: top.values,
          readBack: o.gatherLast(i.a!, top.indices),
          // Rows of the table at the indices: [4, 3, 3]; backends may order ties differently, so
          // sum over the k axis (order-free) before comparing.
          rowSums: o.sum(o.gather(i.table!, top.indices), 1),
          columns: o.gather(i.a!, i.ids!, 1),
          scattered: o.scatterAddRows(i.table!, i.ids!, i.upd!),
          scatteredVector: o.scatterAddRows(
            o.zerosLike(o.slice(o.reshape(i.table!, [-1]), 0, 0, 9)),
            i.ids!,
            o.sum(i.upd!, 2),
          ),
          dynamicK: o.topK(i.a!, o.intArg(i.count!)).values,
        };
      },
      { a, table, ids, upd, count },
    );
    // The k values come in no particular order (the backends differ): compare them sorted, the rest as is.
    const sortedRows = (r: HostResult, k: number): number[] =>
      Array.from({ length: r.data.length / k }, (_, i) =>
        Array.from(r.data.slice(i * k, i * k + k)).sort((p, q) => q - p),
      ).flat();
    for (const name of ['rowSums', 'columns', 'scattered', 'scatteredVector'])
      expectClose(onnx[name]!, tfjs[name]!);
    expect(sortedRows(onnx.values!, 3)).toEqual(sortedRows(tfjs.values!, 3));
    expect(sortedRows(onnx.dynamicK!, 2)).toEqual(sortedRows(tfjs.dynamicK!, 2));
    expect(Array.from(tfjs.readBack!.data)).toEqual(Array.from(tfjs.values!.data));
    const out = onnx;
    const A = a.data as Float32Array;
    for (let r = 0; r < 4; r++) {
      const row = Array.from(A.slice(r * 9, r * 9 + 9)).sort((p, q) => q - p);
      const got = Array.from(out.values!.data.slice(r * 3, r * 3 + 3)).sort((p, q) => q - p);
      for (let j = 0; j < 3; j++) expect(got[j]).toBeCloseTo(row[j]!, 6);
    }
    expect(Array.from(out.readBack!.data)).toEqual(Array.from(out.values!.data));
    expect(out.rowSums!.shape).toEqual([4, 3]);
    expect(out.columns!.shape).toEqual([4, 2, 3]);
    expect(out.columns!.data[1 * 6 + 1 * 3 + 0]).toBe(A[1 * 9 + 8]);
    expect(out.dynamicK!.shape).toEqual([4, 2]);
    // Row 3 of the table received updates (0, 0) and (0, 2); row 0 received (0, 1) and (1, 1).
    const T = table.data as Float32Array;
    const U = upd.data as Float32Array;
    for (let c = 0; c < 3; c++) {
      expect(out.scattered!.data[3 * 3 + c]).toBeCloseTo(T[3 * 3 + c]! + U[0 * 3 + c]! + U[2 * 3 + c]!, 5);
      expect(out.scattered!.data[0 * 3 + c]).toBeCloseTo(T[0 * 3 + c]! + U[1 * 3 + c]! + U[4 * 3 + c]!, 5);
      expect(out.scattered!.data[2 * 3 + c]).toBe(T[2 * 3 + c]);
    }
    const rowSum = (r: number): number => U[r * 3]! + U[r * 3 + 1]! + U[r * 3 + 2]!;
    expect(out.scatteredVector!.data[3]).toBeCloseTo(rowSum(0) + rowSum(2), 5);
    expect(out.scatteredVector!.data[5]).toBe(0);
  });
});
