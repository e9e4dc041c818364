// Forward throughput per model family at Gemma 2 2B's width (d_model 2304, d_mlp 9216; each family's own
// heads: bench/family-configs.ts), random weights, against Hugging Face transformers on PyTorch in the same
// run. Per family: a config.json with --layers layers and a --vocab-token vocabulary, random bfloat16
// weights written by transformers (bench/torch/family_forward.py make) into --dir/<family>, then
//   - saeflow (--engine onnx, loaded as every pipeline loads: over 1 GiB of float32 weights go to a
//     weight file that onnxruntime maps) to blocks.<layers/2 - 1>.hook_resid_post and to the logits,
//   - transformers' model of that family on that same folder in float32, the forward cut after the same
//     layer (as SAELens's stop_at_layer) and to the logits, at 1 and at every intra-op thread,
// and both results compared (max relative error), so the two sides do the same work.
//
//   npx tsx bench/family-forward.ts [--families gemma2,gemma,llama,mistral,qwen2] [--layers 4]
//                                   [--vocab 32000] [--batch 2] [--context 128] [--iters 3]
//                                   [--engines onnx[,tfjs]] [--dir /tmp/saeflow-family-bench]
//                                   [--python auto|PATH]
//
// A family in bench/family-configs.ts that this build's registry lacks is skipped with a note.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { FAMILY_SHAPES, familyConfig } from './family-configs.js';
import { pythonsWithTransformers, runTorch } from './torch-baseline.js';
import type { TorchLine } from './torch-baseline.js';
import { createRunner } from '../src/engine/engines.js';
import { readSafetensors, tensorToFloat32 } from '../src/io/safetensors.js';
import { loadModel } from '../src/model/index.js';
import type { TokenBatch } from '../src/model/index.js';
import { parseModelConfig } from '../src/model/registry.js';
import { selectBackend } from '../src/pipeline/backend.js';
import { Mulberry32 } from '../src/util/random.js';

const { values } = parseArgs({
  options: {
    families: { type: 'string', default: Object.keys(FAMILY_SHAPES).join(',') },
    layers: { type: 'string', default: '4' },
    vocab: { type: 'string', default: '32000' },
    batch: { type: 'string', default: '2' },
    context: { type: 'string', default: '128' },
    iters: { type: 'string', default: '3' },
    engines: { type: 'string', default: 'onnx' },
    dir: { type: 'string', default: '/tmp/saeflow-family-bench' },
    python: { type: 'string', default: 'auto' },
  },
});
const layers = Number(values.layers);
const vocab = Number(values.vocab);
const batch = Number(values.batch);
const context = Number(values.context);
const iters = Number(values.iters);
const hookLayer = Math.max(0, Math.floor(layers / 2) - 1);
const hook = `blocks.${hookLayer}.hook_resid_post`;
const py = pythonsWithTransformers(values.python)[0];

function maxRelErr(got: Float32Array, want: Float32Array): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < got.length; i++) {
    diff = Math.max(diff, Math.abs(got[i]! - want[i]!));
    scale = Math.max(scale, Math.abs(want[i]!));
  }
  return diff / scale;
}

/** Seconds per call of `fn` over `iters` calls after one warm-up call (which also builds the session). */
async function timed<R>(fn: () => Promise<R>): Promise<{ first: R; seconds: number; warmup: number }> {
  const w0 = performance.now();
  const first = await fn();
  const warmup = (performance.now() - w0) / 1000;
  const t0 = performance.now();
  for (let i = 0; i < iters; i++) await fn();
  return { first, seconds: (performance.now() - t0) / 1000 / iters, warmup };
}

interface Row {
  family: string;
  engine: string;
  hookRate: number;
  logitsRate: number;
  torchHook?: number;
  torchLogits?: number;
  detail: string;
}
const rows: Row[] = [];
const notes: string[] = [];

for (const family of values.families.split(',')) {
  const config = familyConfig(family, layers, vocab, 'bfloat16');
  try {
    parseModelConfig(config, `${family} bench config`);
  } catch (e) {
    notes.push(`${family}: skipped (${(e as Error).message.split('\n')[0]})`);
    continue;
  }
  const dir = path.join(values.dir, `${family}-L${layers}-V${vocab}`);
  if (!existsSync(path.join(dir, 'config.json')) || !existsSync(path.join(dir, 'tokens.json'))) {
    if (py === undefined) throw new Error('writing the random weights needs python with transformers');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
    const r = spawnSync(py, ['bench/torch/family_forward.py', 'make', '--dir', dir], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${family}: writing random weights failed: ${r.stderr.slice(-500)}`);
    const rng = new Mulberry32(1);
    const data = Array.from({ length: batch * context }, () => Math.floor(rng.next() * vocab));
    writeFileSync(path.join(dir, 'tokens.json'), JSON.stringify({ shape: [batch, context], data }));
  }
  const t = JSON.parse(readFileSync(path.join(dir, 'tokens.json'), 'utf8')) as {
    shape: [number, number];
    data: number[];
  };
  const tokens: TokenBatch = { data: Int32Array.from(t.data), shape: t.shape };
  const model = await loadModel(dir);
  const stored = model.memoryWeightBytes < model.weightBytes ? 'weight file' : 'in memory';

  let torchOut: { resid: Float32Array; logits: Float32Array } | undefined;
  const torchLines: TorchLine[] = [];
  if (py !== undefined) {
    const save = path.join(dir, 'torch-out.safetensors');
    const args = ['bench', '--dir', dir, '--hook_layer', String(hookLayer), '--iters', String(iters)];
    torchLines.push(...runTorch(py, 'bench/torch/family_forward.py', [...args, '--save', save], family));
    if (existsSync(save)) {
      const { tensors } = await readSafetensors(save);
      torchOut = {
        resid: tensorToFloat32(tensors.get('resid')!, 'resid'),
        logits: tensorToFloat32(tensors.get('logits')!, 'logits'),
      };
    }
  }
  const best = (key: 'tokens_per_s' | 'logits_tokens_per_s') =>
    torchLines.length ? Math.max(...torchLines.map((l) => Number(l[key]))) : undefined;

  for (const engine of values.engines.split(',') as Array<'onnx' | 'tfjs'>) {
    if (engine === 'tfjs') await selectBackend('wasm');
    const runner = await createRunner(model, engine);
    try {
      const toHook = await timed(async () =>
        (await runner.runWithHooks(tokens, { hooks: [hook] })).activations.get(hook)!,
      );
      const toLogits = await timed(
        async () => (await runner.runWithHooks(tokens, { returnLogits: true })).logits!,
      );
      const errs = torchOut
        ? `, max rel err vs transformers: ${hook} ${maxRelErr(toHook.first.data, torchOut.resid).toExponential(1)}, ` +
          `logits ${maxRelErr(toLogits.first.data, torchOut.logits).toExponential(1)}`
        : '';
      rows.push({
        family,
        engine,
        hookRate: (batch * context) / toHook.seconds,
        logitsRate: (batch * context) / toLogits.seconds,
        torchHook: best('tokens_per_s'),
        torchLogits: best('logits_tokens_per_s'),
        detail:
          `weights ${(model.weightBytes / 1e9).toFixed(2)} GB ${stored}, first calls ${toHook.warmup.toFixed(1)} / ` +
          `${toLogits.warmup.toFixed(1)} s${errs}; PyTorch: ` +
          torchLines
            .map(
              (l) =>
                `${l.threads} thr ${Number(l.tokens_per_s).toFixed(0)}/${Number(l.logits_tokens_per_s).toFixed(0)}`,
            )
            .join(', ') +
          ` (${String(torchLines[0]?.implementation ?? 'none')}, torch ${torchLines[0]?.torch ?? '-'})`,
      });
    } finally {
      await runner.dispose();
    }
  }
}

const fmt = (x: number | undefined) => (x === undefined ? 'n/a' : x.toFixed(0));
const ratio = (a: number, b: number | undefined) => (b === undefined ? 'n/a' : (a / b).toFixed(2));
console.log(
  `Forward at Gemma 2 2B's width (d_model 2304, d_mlp 9216), ${layers} layers (not the real depth), vocab ` +
    `${vocab} (reduced), random weights, batch ${batch} x context ${context}, ${iters} timed calls after one ` +
    `warm-up; tokens/s to ${hook} | to the logits; PyTorch: the fastest of its thread counts`,
);
console.log('| family | engine | saeflow | PyTorch | ratio | detail |\n|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(
    `| ${r.family} | ${r.engine} | ${fmt(r.hookRate)} \\| ${fmt(r.logitsRate)} | ${fmt(r.torchHook)} \\| ` +
      `${fmt(r.torchLogits)} | ${ratio(r.hookRate, r.torchHook)} \\| ${ratio(r.logitsRate, r.torchLogits)} | ${r.detail} |`,
  );
}
for (const n of notes) console.log(n);
