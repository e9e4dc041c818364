// Gemma 2 2B on this machine: writes a Hugging Face folder of google/gemma-2-2b's shape with random
// weights (config.json by hand from the hub's values; bfloat16 safetensors in 2 GB shards with
// model.safetensors.index.json, written by transformers: bench/torch/family_forward.py make), then, in a
// fresh process, loads it the way every pipeline does (loadModel: over 1 GiB of float32 weights, so they go
// to a weight file that onnxruntime maps) and runs onnx forwards over batch x context random tokens,
// reporting load and forward times and the process's peak resident memory (VmHWM), split into anonymous
// memory and mapped file pages.
//
//   npx tsx bench/big-model.ts [--dir /tmp/gemma-2-2b-random] [--batch 2] [--context 128]
//                              [--hook blocks.12.hook_resid_post] [--logits] [--python auto|PATH]
//
// The folder takes 5.2 GB and the weight file 10.5 GB (removed at exit): check `df -h /tmp` first.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { GEMMA2_2B } from './family-configs.js';
import { pythonsWithTransformers } from './torch-baseline.js';
import { createRunner, resolveEngine } from '../src/engine/engines.js';
import { loadModel } from '../src/model/index.js';
import { Mulberry32 } from '../src/util/random.js';

const { values } = parseArgs({
  options: {
    dir: { type: 'string', default: '/tmp/gemma-2-2b-random' },
    batch: { type: 'string', default: '2' },
    context: { type: 'string', default: '128' },
    hook: { type: 'string', default: 'blocks.12.hook_resid_post' },
    logits: { type: 'boolean', default: false },
    python: { type: 'string', default: 'auto' },
  },
});
const dir = values.dir;
const batch = Number(values.batch);
const context = Number(values.context);

/**
 * This process's memory in MB: RSS now and its peak (VmHWM), now's anonymous / mapped-file split, and PSS,
 * which counts a page mapped twice (two sessions mapping one weight file) once, as the machine does.
 */
function memory(): { rss: number; peak: number; anon: number; file: number; pss: number } {
  const s = readFileSync('/proc/self/status', 'utf8') + readFileSync('/proc/self/smaps_rollup', 'utf8');
  const mb = (key: string) => Math.round(Number(new RegExp(`${key}:\\s+(\\d+)`).exec(s)?.[1] ?? NaN) / 1024);
  return { rss: mb('VmRSS'), peak: mb('VmHWM'), anon: mb('RssAnon'), file: mb('RssFile'), pss: mb('Pss') };
}

function line(what: string, seconds?: number): void {
  const m = memory();
  const time = seconds === undefined ? '' : ` in ${seconds.toFixed(1)} s`;
  console.log(
    `${what}${time}: RSS ${m.rss} MB (anonymous ${m.anon}, mapped files ${m.file}), PSS ${m.pss} MB, ` +
      `peak RSS so far ${m.peak} MB`,
  );
}

if (!existsSync(path.join(dir, 'model.safetensors.index.json'))) {
  const py = pythonsWithTransformers(values.python)[0];
  if (py === undefined) process.exit(1);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(GEMMA2_2B, null, 2));
  console.log(`writing random Gemma 2 2B weights into ${dir} with ${py} (a child process, not measured)`);
  const t0 = performance.now();
  const r = spawnSync(py, ['bench/torch/family_forward.py', 'make', '--dir', dir, '--dtype', 'bfloat16'], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (r.status !== 0) process.exit(1);
  console.log(`written in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
}

line('start');
let t0 = performance.now();
const model = await loadModel(dir);
line(
  `loaded (${(model.weightBytes / 1e9).toFixed(2)} GB float32, ${(model.memoryWeightBytes / 1e6).toFixed(1)} MB of it in memory)`,
  (performance.now() - t0) / 1000,
);
const engine = await resolveEngine('auto', (m) => console.log(m));
const runner = await createRunner(model, engine);
const rng = new Mulberry32(1);
const tokens = {
  data: Int32Array.from({ length: batch * context }, () => Math.floor(rng.next() * model.config.vocabSize)),
  shape: [batch, context] as [number, number],
};
for (let i = 0; i < 2; i++) {
  t0 = performance.now();
  const out = await runner.runWithHooks(tokens, { hooks: [values.hook] });
  const a = out.activations.get(values.hook)!;
  const meanAbs = a.data.reduce((s, v) => s + Math.abs(v), 0) / a.data.length;
  line(
    `forward ${i + 1} to ${values.hook} [${a.shape.join(', ')}], mean |x| ${meanAbs.toPrecision(4)}`,
    (performance.now() - t0) / 1000,
  );
}
if (values.logits) {
  t0 = performance.now();
  const out = await runner.runWithHooks(tokens, { returnLogits: true });
  line(
    `forward to the logits [${out.logits!.shape.join(', ')}] (a second session)`,
    (performance.now() - t0) / 1000,
  );
}
await runner.dispose();
const m = memory();
console.log(`peak RSS ${m.peak} MB = ${(m.peak / 1024).toFixed(2)} GiB (VmHWM)`);
