// onnxruntime-node kernel timings behind the choices in src/engine/onnx/sae-step-graph.ts and
// sae-step-loop.ts (docs/compute-engine.md quotes them): GEMM operand layouts at the small SAE step's
// shapes, mask and reduction ops over a [batch, d_sae] or [d_in, d_sae] tensor, and what a session run costs
// beyond its kernels when it returns a large output. Kernel times come from onnxruntime's profiler
// (median of the runs after two warm-ups); one node per session.
//
// The sparse TopK kernels (gathering the k selected decoder rows, products over them, scatter-adds of
// gradient rows) are timed against the dense GEMMs they would replace (`--sparse-only` skips the rest).
//
//   npx tsx bench/onnx-kernels.ts [--batch 1024] [--d_in 768] [--d_sae 6144] [--k 32] [--runs 8] [--sparse-only]
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../src/engine/onnx/graph-builder.js';
import { OnnxOps } from '../src/ops/onnx-ops.js';
import {
  ONNX_IR_VERSION,
  ONNX_OPSET,
  TensorElemType,
  encodeOnnxModel,
} from '../src/engine/onnx/onnx-proto.js';

const { values } = parseArgs({
  options: {
    batch: { type: 'string', default: '1024' },
    d_in: { type: 'string', default: '768' },
    d_sae: { type: 'string', default: '6144' },
    runs: { type: 'string', default: '8' },
    k: { type: 'string', default: '32' },
    'sparse-only': { type: 'boolean', default: false },
  },
});
const [B, D, S, runs] = [values.batch, values.d_in, values.d_sae, values.runs].map(Number) as [
  number,
  number,
  number,
  number,
];

interface Timing {
  kernelMs: number;
  wallMs: number;
}

/** Median kernel time of the op nodes (not `skip`) and median wall time of `session.run`. */
async function time(
  build: (g: OnnxOps) => string,
  inputs: Record<string, number[]>,
  skip: string | ((opType: string) => boolean) = 'ReduceMax',
  reduce = true,
): Promise<Timing> {
  const skipped =
    typeof skip === 'string'
      ? (t: string | undefined) => t === skip
      : (t: string | undefined) => skip(t ?? '');
  const b = new GraphBuilder();
  const out = build(new OnnxOps(b, 'k'));
  // A scalar output keeps the copy back to JavaScript out of the measurement, unless asked for.
  const result = reduce
    ? b.op('ReduceMax', [out], 'r', 'result', { keepdims: { kind: 'int', value: 0 } })
    : out;
  const model = {
    graph: {
      name: 'k',
      nodes: b.nodes,
      initializers: b.initializers,
      inputs: Object.entries(inputs).map(([name, dims]) => ({ name, elemType: TensorElemType.FLOAT, dims })),
      outputs: [{ name: result, elemType: TensorElemType.FLOAT, dims: reduce ? [] : ['n'] }],
    },
    opset: ONNX_OPSET,
    irVersion: ONNX_IR_VERSION,
    producer: 'bench',
  };
  const dir = mkdtempSync(path.join(tmpdir(), 'onnx-kernels-'));
  const session = await ort.InferenceSession.create(encodeOnnxModel(model), {
    intraOpNumThreads: availableParallelism(),
    graphOptimizationLevel: 'all',
    enableProfiling: true,
    profileFilePrefix: path.join(dir, 'p'),
    extra: { session: { set_denormal_as_zero: '1' } },
  });
  const feeds: Record<string, ort.Tensor> = {};
  for (const [name, dims] of Object.entries(inputs)) {
    const data = new Float32Array(dims.reduce((a, c) => a * c, 1));
    // Relu-like values: ~30% positive, the rest exact zeros.
    for (let i = 0; i < data.length; i++) data[i] = Math.max(0, Math.random() - 0.7);
    feeds[name] = new ort.Tensor('float32', data, dims);
  }
  const walls: number[] = [];
  for (let r = 0; r < runs + 2; r++) {
    const t = performance.now();
    await session.run(feeds);
    if (r >= 2) walls.push(performance.now() - t);
  }
  await session.release();
  const events = JSON.parse(readFileSync(path.join(dir, readdirSync(dir)[0]!), 'utf8')) as Array<{
    cat: string;
    name: string;
    dur: number;
    args?: { op_name?: string };
  }>;
  rmSync(dir, { recursive: true });
  const kernels = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time'));
  const perRun = kernels.filter((e) => !skipped(e.args?.op_name)).length / (runs + 2);
  const sums: number[] = [];
  let acc = 0;
  let n = 0;
  for (const e of kernels) {
    if (skipped(e.args?.op_name)) continue;
    acc += e.dur / 1000;
    if (++n % perRun === 0) {
      sums.push(acc);
      acc = 0;
    }
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  return { kernelMs: median(sums.slice(2)), wallMs: median(walls) };
}

const rows: [string, string][] = [];
const gemm = (
  label: string,
  a: number[],
  b: number[],
  transA: boolean,
  transB: boolean,
  m: number,
  n: number,
  k: number,
) =>
  time((g) => g.matMul('a', 'b', { transA, transB }), { a, b }).then((t) => {
    rows.push([
      label,
      `${t.kernelMs.toFixed(1)} ms (${((2 * m * n * k) / t.kernelMs / 1e6).toFixed(0)} GFLOP/s)`,
    ]);
  });

const K = Number(values.k);
if (!values['sparse-only']) {
  await gemm(`x·W, W [d_in, d_sae]`, [B, D], [D, S], false, false, B, S, D);
  await gemm(`x·Wᵀ, W [d_sae, d_in]`, [B, D], [S, D], false, true, B, S, D);
  await gemm(`f·Wᵀ, W [d_in, d_sae] (decode)`, [B, S], [D, S], false, true, B, D, S);
  await gemm(`Aᵀ·B, wide Aᵀ: fᵀ·G -> [d_sae, d_in]`, [B, S], [B, D], true, false, S, D, B);
  await gemm(`Aᵀ·B, narrow Aᵀ: Gᵀ·f -> [d_in, d_sae]`, [B, D], [B, S], true, false, D, S, B);

  const ew = async (label: string, build: (g: OnnxOps) => string, dims: number[]): Promise<void> => {
    const t = await time(build, { a: dims });
    rows.push([label, `${t.kernelMs.toFixed(2)} ms`]);
  };
  const act = [B, S];
  await ew(`Sign, [${act}]`, (g) => g.b.op('Sign', ['a'], 'k'), act);
  await ew(`Cast(Greater(a, 0)), [${act}]`, (g) => g.greater('a', g.scalar(0)), act);
  await ew(
    `Where(Greater(a, 0), a, 0), [${act}]`,
    (g) => g.b.op('Where', [g.b.op('Greater', ['a', g.scalar(0)], 'k'), 'a', g.scalar(0)], 'k'),
    act,
  );
  await ew(`Mul(a, a), [${act}]`, (g) => g.mul('a', 'a'), act);
  const w = [D, S];
  await ew(
    `ReduceSumSquare over axis 0, [${w}]`,
    (g) =>
      g.b.op('ReduceSumSquare', ['a'], 'k', undefined, {
        axes: { kind: 'ints', value: [0] },
        keepdims: { kind: 'int', value: 0 },
      }),
    w,
  );
  await ew(`Mul then ReduceSum over axis 0, [${w}]`, (g) => g.sum(g.mul('a', 'a'), 0), w);

  // A run whose output is as large as the small step's parameters and moments (3 x 2 x d_in x d_sae floats).
  const state = 6 * D * S;
  const copy = await time((g) => g.add('a', g.scalar(1)), { a: [state] }, '', false);
  rows.push([
    `run returning ${((state * 4) / 1e6).toFixed(0)} MB (a + 1)`,
    `kernel ${copy.kernelMs.toFixed(1)} ms, session.run ${copy.wallMs.toFixed(1)} ms`,
  ]);
}

// ---- sparse TopK pieces: indices of the k largest of each row of a [B, d_sae] input (TopK itself is not
// counted), rows of a [d_sae, d_in] matrix gathered at them, and what the step would do with those rows.
const only =
  (...types: string[]) =>
  (t: string): boolean =>
    !types.includes(t);
const topIdx = (g: OnnxOps): string =>
  g.b.multi('TopK', ['h', g.b.int64(`c.k${K}`, [K])], 'k', 2, {
    axis: { kind: 'int', value: -1 },
    largest: { kind: 'int', value: 1 },
    sorted: { kind: 'int', value: 0 },
  })[1]!;
const sparse = async (
  label: string,
  build: (g: OnnxOps) => string,
  types: string[],
  inputs: Record<string, number[]>,
  denseGemmMs?: string,
): Promise<void> => {
  const t = await time(build, inputs, only(...types));
  rows.push([label, `${t.kernelMs.toFixed(2)} ms${denseGemmMs ?? ''}`]);
};
const gathered = (g: OnnxOps): string =>
  g.b.op('Gather', ['w', topIdx(g)], 'k', undefined, { axis: { kind: 'int', value: 0 } });
await gemm(`dense decode f·Wᵀ, W [d_in, d_sae]`, [B, S], [D, S], false, true, B, D, S);
await sparse(
  `Gather of k rows: W [d_sae, d_in] at [B, k] ids -> [B, k, d_in] (${((B * K * D * 4) / 1e6).toFixed(0)} MB)`,
  gathered,
  ['Gather'],
  { h: [B, S], w: [S, D] },
);
await sparse(
  `decode from gathered rows: [B, 1, k]·[B, k, d_in] (MatMul)`,
  (g) => g.batchMatMul(g.reshape('a', [B, 1, K]), gathered(g)),
  ['MatMul'],
  { h: [B, S], w: [S, D], a: [B, K] },
);
await sparse(
  `dL/da at the selected: [B, k, d_in]·[B, d_in, 1] (MatMul)`,
  (g) => g.batchMatMul(gathered(g), g.reshape('gr', [B, D, 1])),
  ['MatMul'],
  { h: [B, S], w: [S, D], gr: [B, D] },
);
await sparse(
  `gradient rows a_bj·G_b: [B, k, 1]·[B, 1, d_in] (MatMul)`,
  (g) => g.batchMatMul(g.reshape('a', [B, K, 1]), g.reshape('gr', [B, 1, D])),
  ['MatMul'],
  { a: [B, K], gr: [B, D] },
);
await sparse(
  `ScatterND add of [B·k, d_in] rows into zeros [d_sae, d_in]`,
  (g) => {
    const ids = g.reshape(topIdx(g), [B * K, 1]);
    const upd = g.reshape(g.batchMatMul(g.reshape('a', [B, K, 1]), g.reshape('gr', [B, 1, D])), [B * K, D]);
    return g.b.op('ScatterND', [g.zerosLike('w'), ids, upd], 'k', undefined, {
      reduction: { kind: 'string', value: 'add' },
    });
  },
  ['ScatterND'],
  { h: [B, S], w: [S, D], a: [B, K], gr: [B, D] },
);
await sparse(
  `ScatterElements add of [B, k] values into zeros [B, d_sae] (sparse -> dense acts)`,
  (g) =>
    g.b.op('ScatterElements', [g.zerosLike('h'), topIdx(g), 'a'], 'k', undefined, {
      axis: { kind: 'int', value: 1 },
      reduction: { kind: 'string', value: 'add' },
    }),
  ['ScatterElements', 'ConstantOfShape', 'Shape'],
  { h: [B, S], a: [B, K] },
);
await sparse(
  `GatherElements of [B, k] values from [B, d_sae]`,
  (g) => g.b.op('GatherElements', ['h', topIdx(g)], 'k', undefined, { axis: { kind: 'int', value: 1 } }),
  ['GatherElements'],
  { h: [B, S] },
);
await sparse(
  `TopK k of each [B, d_sae] row (values and indices)`,
  (g) => g.b.op('Cast', [topIdx(g)], 'k', undefined, { to: { kind: 'int', value: TensorElemType.FLOAT } }),
  ['TopK'],
  { h: [B, S] },
);

console.log(
  `onnxruntime-node ${ort.env.versions.common}, ${availableParallelism()} threads; batch ${B}, d_in ${D}, d_sae ${S}`,
);
console.log('| measurement | median |\n|---|---|');
for (const [label, value] of rows) console.log(`| ${label} | ${value} |`);
