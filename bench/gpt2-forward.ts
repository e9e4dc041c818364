// GPT-2 small forward throughput (random weights): our engine on each available TensorFlow.js backend and
// on onnxruntime-node (`onnx`, src/engine/onnx), and PyTorch doing the same work in the same run: every
// interpreter in --python that imports torch runs bench/torch/gpt2_forward.py (Hugging Face's GPT2Model
// where transformers is installed) at each thread count, and the fastest is the baseline
// (bench/torch-baseline.ts).
//
//   npx tsx bench/gpt2-forward.ts [--batch 8] [--context 128] [--stop_layer 8] [--iters 3] [--backends wasm,cpu,onnx]
//                                 [--python auto|PATH,...] [--install-torch]
//
// The forward stops at blocks.<stop_layer>.hook_resid_pre, as an activation store does for one hook.
import { spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { pythonsWithTorch, runTorch } from './torch-baseline.js';
import { OnnxRunner } from '../src/engine/onnx/onnx-runner.js';
import { GPT2_HOOKS, Model, TfjsRunner, gpt2Family } from '../src/model/index.js';
import type { Gpt2Weights, ModelConfig } from '../src/model/index.js';
import { selectBackend } from '../src/pipeline/backend.js';
import { Mulberry32 } from '../src/util/random.js';

const { values } = parseArgs({
  options: {
    batch: { type: 'string', default: '8' },
    context: { type: 'string', default: '128' },
    stop_layer: { type: 'string', default: '8' },
    iters: { type: 'string', default: '3' },
    backends: { type: 'string', default: 'wasm' },
    python: { type: 'string', default: 'auto' },
    'install-torch': { type: 'boolean', default: false },
  },
});
const batch = Number(values.batch);
const context = Number(values.context);
const stopLayer = Number(values.stop_layer);
const iters = Number(values.iters);

const config: ModelConfig = {
  family: 'gpt2',
  nLayers: 12,
  nHeads: 12,
  nKvHeads: 12,
  dModel: 768,
  nCtx: 1024,
  vocabSize: 50257,
  eps: 1e-5,
  act: 'gelu_new',
  dHead: 64,
  dMlp: 3072,
  hooks: GPT2_HOOKS,
  extra: {},
};

function randomWeights(c: ModelConfig): Gpt2Weights {
  const rng = new Mulberry32(0);
  const normal = (n: number, std = 0.02) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = (rng.next() + rng.next() + rng.next() - 1.5) * 2 * std;
    return a;
  };
  const ones = (n: number) => new Float32Array(n).fill(1);
  const d = c.dModel;
  const wte = normal(c.vocabSize * d);
  return {
    wte,
    unembed: wte,
    wpe: normal(c.nCtx * d, 0.01),
    lnFinal: { weight: ones(d), bias: new Float32Array(d) },
    blocks: Array.from({ length: c.nLayers }, () => ({
      ln1: { weight: ones(d), bias: new Float32Array(d) },
      attnQkv: { weight: normal(d * 3 * d), bias: new Float32Array(3 * d) },
      attnOut: { weight: normal(d * d), bias: new Float32Array(d) },
      ln2: { weight: ones(d), bias: new Float32Array(d) },
      mlpIn: { weight: normal(d * c.dMlp), bias: new Float32Array(c.dMlp) },
      mlpOut: { weight: normal(c.dMlp * d), bias: new Float32Array(d) },
    })),
  };
}

const hook = `blocks.${stopLayer}.hook_resid_pre`;
const tokens = new Int32Array(batch * context);
const trng = new Mulberry32(1);
for (let i = 0; i < tokens.length; i++) tokens[i] = Math.floor(trng.next() * config.vocabSize);

const results: Array<{ engine: string; tokens_per_s: number; detail: string }> = [];
const model = Model.bind(gpt2Family, config, randomWeights(config));
const run = { data: tokens, shape: [batch, context] as [number, number] };
/** The first engine's activation: every later engine is checked against it, so a fast wrong engine shows. */
let baseline: Float32Array | undefined;

function maxRelDiff(a: Float32Array, b: Float32Array): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return diff / scale;
}

for (const name of values.backends.split(',')) {
  let forward: () => Promise<Float32Array>;
  let release: () => Promise<void> | void;
  let label: string;
  let detail: string;
  if (name === 'onnx') {
    const engine = new OnnxRunner(model);
    forward = async () => (await engine.runWithHooks(run, { hooks: [hook] })).activations.get(hook)!.data;
    release = () => engine.dispose();
    label = 'saeflow onnxruntime-node';
    detail = `${availableParallelism()} intra-op threads`;
  } else {
    const info = await selectBackend(name as 'wasm' | 'cpu' | 'tensorflow');
    const runner = TfjsRunner.create(model);
    forward = async () => (await runner.runWithHooks(run, { hooks: [hook] })).activations.get(hook)!.data;
    release = () => runner.dispose();
    label = `saeflow tfjs-${info.name}`;
    detail = `${info.threads} thread(s)`;
  }
  // Warm-up; for onnx it also builds the graph and the session.
  const s0 = performance.now();
  const out = await forward();
  const first = (performance.now() - s0) / 1000;
  const t0 = performance.now();
  for (let i = 0; i < iters; i++) await forward();
  const seconds = (performance.now() - t0) / 1000;
  await release();
  if (baseline)
    detail += `, max rel diff vs ${results[0]!.engine} ${maxRelDiff(out, baseline).toExponential(1)}`;
  else baseline = out;
  results.push({
    engine: label,
    tokens_per_s: (iters * batch * context) / seconds,
    detail: `${detail}, first call ${first.toFixed(1)} s`,
  });
}

let torchRate: number | null = null;
for (const py of pythonsWithTorch(values.python, values['install-torch'])) {
  const args = [
    ...['--batch', String(batch), '--context', String(context), '--stop_layer', String(stopLayer)],
    ...['--iters', String(iters)],
  ];
  for (const line of runTorch(py, 'bench/torch/gpt2_forward.py', args, 'GPT-2 forward')) {
    torchRate = Math.max(torchRate ?? 0, line.tokens_per_s);
    results.push({
      engine: `pytorch ${line.torch} (${py})`,
      tokens_per_s: line.tokens_per_s,
      detail: `${String(line.implementation)}, ${line.threads} intra-op thread(s), ${line.blas}`,
    });
  }
}

console.log(`GPT-2 small forward to ${hook}, batch ${batch} x context ${context}, ${iters} iterations`);
console.log('| engine | tokens/s | vs fastest PyTorch | detail |\n|---|---|---|---|');
for (const r of results) {
  const ratio = torchRate ? (r.tokens_per_s / torchRate).toFixed(3) : 'n/a';
  console.log(`| ${r.engine} | ${r.tokens_per_s.toFixed(1)} | ${ratio} | ${r.detail} |`);
}
// The GEMM limit: the tokens/s at which the forward's products alone (the four per block, and attention's
// two, as computed: full [seq, seq] scores) would run at this machine's sgemm speed, measured now by
// bench/sae-step.ts's sgemm child at the MLP's shape.
const sgemm = spawnSync(
  process.execPath,
  ['--import', 'tsx', 'bench/sae-step.ts', '--child', 'sgemm', '--d_in', '768', '--d_sae', '3072'].concat([
    '--batch',
    String(batch * context),
  ]),
  { encoding: 'utf8' },
);
const peak =
  sgemm.status === 0
    ? (JSON.parse(sgemm.stdout.trim().split('\n').pop()!) as { gflops: number }).gflops
    : null;
const d = config.dModel;
const flopsPerToken = stopLayer * 2 * (d * 3 * d + d * d + 2 * d * config.dMlp + 2 * context * d);
const limit = peak === null ? null : (peak * 1e9) / flopsPerToken;
console.log(
  `GEMM limit: ${limit === null ? 'n/a' : limit.toFixed(0)} tokens/s (${(flopsPerToken / 1e6).toFixed(1)} MFLOP per token at ${peak === null ? 'n/a' : peak.toFixed(0)} GFLOP/s sgemm, onnxruntime at [${batch * context}, ${d}] x [${d}, ${config.dMlp}])`,
);
const ours = results.find((r) => r.engine === 'saeflow onnxruntime-node');
if (ours)
  console.log(
    `RESULT ${JSON.stringify({ bench: 'gpt2-forward', ours: ours.tokens_per_s, torch: torchRate, limit, sgemm_gflops: peak })}`,
  );
