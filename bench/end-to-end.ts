// The pipelines against their inner loops, in the same run: does the whole pipeline run at the speed of the
// computation it wraps (issue 19: within 10%)?
//
//   npx tsx bench/end-to-end.ts [--parts cache,train] [--tokens 65536] [--train_tokens 262144]
//                               [--archs topk] [--dir /tmp/saeflow-bench-e2e]
//
// cache: pipelines/cache-activations.ts at GPT-2 small's shape (random weights in a Hugging Face folder,
//   blocks.8.hook_resid_pre, context 128, 16 windows per forward: the pipeline's defaults) against the same
//   activation engine's forward alone on the same batches (tokens from the same text), in a fresh process.
// train: pipelines/gpt2-resid.ts --activations <that cache> (d_sae 6144, batch 1024, k 32, the cache read
//   once per pass, as long as --train_tokens asks) against bench/sae-step.ts's step alone at the same
//   options (its child process: the trainer's trainSteps on one in-memory batch).
//
// Each pipeline line gives its wall time (process start to exit), its steady rate (tokens between its first
// and last progress records, which the run writes every second: start-up and the final save left out) and
// where the rest went: start-up (until the first progress record) and the end (after the last one). The
// ratio compares the steady rate with the inner loop; the pipeline's wall rate is also shown.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { profileCategories, type ProfileRules } from './lib/cpu-profile.js';
import { writeGpt2SmallFolder } from './lib/gpt2-small-folder.js';

const { values } = parseArgs({
  options: {
    parts: { type: 'string', default: 'cache,train' },
    tokens: { type: 'string', default: '65536' },
    train_tokens: { type: 'string', default: '262144' },
    archs: { type: 'string', default: 'topk' },
    dir: { type: 'string', default: '/tmp/saeflow-bench-e2e' },
    child: { type: 'string' },
    model: { type: 'string' },
    batches: { type: 'string' },
  },
});

const HOOK = 'blocks.8.hook_resid_pre';
const CONTEXT = 128;
const WINDOWS = 16;
const TRAIN = { dSae: 6144, batch: 1024, k: 32 };

if (values.child === 'forward') {
  // The cache pipeline's computation alone: its engine, its batch shape, batches of the same text.
  const { loadActivationEngine } = await import('../src/stages/model/index.js');
  const { loadTokenizer } = await import('../src/tokenizer/index.js');
  const { loadCorpus } = await import('../src/stages/text/sources/corpora.js');
  const dir = values.model!;
  const engine = await loadActivationEngine(dir, { engine: 'onnx', processing: 'none', log: () => {} });
  const tokenizer = await loadTokenizer(dir);
  const ids = tokenizer.encode(
    loadCorpus('moby-dick')
      .slice(0, 20)
      .map((d) => d.text)
      .join('\n'),
  );
  const n = Number(values.batches);
  const batch = (i: number) => {
    const data = new Int32Array(WINDOWS * CONTEXT);
    for (let j = 0; j < data.length; j++) data[j] = ids[(i * data.length + j) % ids.length]!;
    return { data, shape: [WINDOWS, CONTEXT] as [number, number] };
  };
  await engine.runWithHooks(batch(0), { hooks: [HOOK] });
  const t0 = performance.now();
  for (let i = 1; i <= n; i++) await engine.runWithHooks(batch(i), { hooks: [HOOK] });
  const s = (performance.now() - t0) / 1000;
  await engine.dispose();
  console.log(JSON.stringify({ tokens_per_s: (n * WINDOWS * CONTEXT) / s }));
  process.exit(0);
}

interface Progress {
  elapsed_s: number;
  tokens: number;
}

/** What the pipelines' main thread does, in the order a frame is claimed (innermost first). */
const RULES: ProfileRules = [
  ['onnxruntime (session runs and creation)', /onnxruntime-node/],
  [
    'Parquet read/write (parquet-wasm, page checksums)',
    /parquet-wasm|parquet_wasm|parquet-codec|parquet-pages|cache-reader|cache-writer|shard-buffer/,
  ],
  ['activation store (mixing buffer)', /src\/stages\/store\//],
  ['input checks (finite, plausible)', /normalize-batch|trainer\.ts:(checkFinite|firstNonFinite)/],
  [
    'saving SAEs and checkpoints',
    /safetensors|sha256|fold\.ts|transpose\.ts|saelens-folder|trainer-state|write-dir-atomic|atomic/,
  ],
  ['tokenizing and packing', /gpt-tokenizer|tokenizers|src\/tokenizer\/|src\/stages\/text\//],
  ['loading modules', /node:internal\/modules|tsx|esbuild|register/],
  ['trainer bookkeeping (metrics, firing stats)', /src\/sae\/|src\/stages\/train\//],
  ['rxjs and pipeline plumbing', /rxjs|src\/pipeline\//],
];

interface PipelineRun {
  wallS: number;
  /** Main-thread seconds per RULES category over the whole run. */
  profile: Record<string, number>;
  tokens: number;
  steadyRate: number;
  startS: number;
  endS: number;
}

/** Runs a pipeline in a fresh process and reads its progress records (one a second). */
function runPipeline(file: string, args: string[], out: string): PipelineRun {
  rmSync(out, { recursive: true, force: true });
  const profDir = `${out}-profile`;
  rmSync(profDir, { recursive: true, force: true });
  const t0 = performance.now();
  const r = spawnSync(
    process.execPath,
    [
      ...['--cpu-prof', '--cpu-prof-dir', profDir],
      ...['bin/run-pipeline.js', file, ...args, '--out', out, '--log_every', '1', '--progress', 'plain'],
    ],
    { encoding: 'utf8', maxBuffer: 1 << 26 },
  );
  const wallS = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${file} failed: ${(r.stderr ?? '').slice(-1500)}`);
  const records = readFileSync(path.join(out, 'metrics.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.includes('"event":"progress"'))
    .map((l) => JSON.parse(l) as Progress);
  const first = records[0];
  const last = records.at(-1);
  if (!first || !last || last.tokens <= first.tokens)
    throw new Error(`${file}: too few progress records to time (${records.length}); give more tokens`);
  // The main thread's profile is the largest (workers, such as tsx's loader, write their own).
  const profiles = readdirSync(profDir)
    .map((f) => path.join(profDir, f))
    .sort((a, b) => statSync(b).size - statSync(a).size);
  return {
    wallS,
    profile: profiles[0] ? profileCategories(profiles[0], RULES) : {},
    tokens: last.tokens,
    steadyRate: (last.tokens - first.tokens) / (last.elapsed_s - first.elapsed_s),
    startS: first.elapsed_s,
    endS: wallS - last.elapsed_s,
  };
}

function childJson(args: string[]): { tokens_per_s: number } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', ...args], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !line.startsWith('{'))
    throw new Error(`${args.join(' ')} failed: ${(r.stderr ?? '').slice(-1500)}`);
  return JSON.parse(line) as { tokens_per_s: number };
}

interface Line {
  what: string;
  inner: string;
  innerRate: number;
  run: PipelineRun;
}

const lines: Line[] = [];
const parts = values.parts.split(',');
const modelDir = await writeGpt2SmallFolder(path.join(values.dir, 'gpt2-small-random'));
const cacheDir = path.join(values.dir, 'cache');
const tokens = Number(values.tokens);

if (parts.includes('cache') || !existsSync(path.join(cacheDir, 'manifest.json'))) {
  const cacheArgs = [
    ...['--model', modelDir, '--hooks', HOOK, '--context_size', `${CONTEXT}`],
    ...['--batch_size', `${WINDOWS}`, '--max_tokens', `${tokens}`, '--engine', 'onnx'],
  ];
  const run = runPipeline('pipelines/cache-activations.ts', cacheArgs, cacheDir);
  // Training alone only needs the cache; the forward is timed when the cache line is reported.
  if (parts.includes('cache')) {
    const forward = childJson([
      'bench/end-to-end.ts',
      ...['--child', 'forward', '--model', modelDir, '--batches', '8'],
    ]);
    lines.push({
      what: `cache-activations, GPT-2 small shape, ${HOOK}, ${WINDOWS} x ${CONTEXT} tokens per forward`,
      inner: 'the same engine forward alone',
      innerRate: forward.tokens_per_s,
      run,
    });
  }
}

if (parts.includes('train')) {
  for (const arch of values.archs.split(',')) {
    const aux = arch === 'topk' || arch === 'batchtopk';
    const step = childJson([
      'bench/sae-step.ts',
      ...['--child', `onnx:${arch}`, '--d_in', '768', '--d_sae', `${TRAIN.dSae}`],
      ...['--batch', `${TRAIN.batch}`, '--steps', '32', '--k', `${TRAIN.k}`],
      // The pipeline's run is shorter than SAELens's dead_feature_window: no feature is dead, no AuxK.
      ...['--dead', '0', '--dead_window', '1000'],
    ]);
    const run = runPipeline(
      'pipelines/gpt2-resid.ts',
      [
        ...['--activations', cacheDir, '--hook', HOOK, '--architecture', arch],
        ...['--d_sae', `${TRAIN.dSae}`, '--train_batch_size_tokens', `${TRAIN.batch}`],
        ...['--training_tokens', values.train_tokens, '--engine', 'onnx'],
        ...(aux ? ['--k', `${TRAIN.k}`, '--rescale_acts_by_decoder_norm', 'true'] : []),
        ...(arch === 'standard' || arch === 'gated' ? ['--l1_coefficient', '5'] : []),
      ],
      path.join(values.dir, `train-${arch}`),
    );
    lines.push({
      what: `gpt2-resid --activations, ${arch}, d_in 768, d_sae ${TRAIN.dSae}, batch ${TRAIN.batch}${aux ? `, k ${TRAIN.k}` : ''}`,
      inner: 'bench/sae-step.ts step alone, same options',
      innerRate: step.tokens_per_s,
      run,
    });
  }
}

console.log(
  '\n| pipeline | inner loop | inner tokens/s | pipeline steady tokens/s | steady / inner | pipeline wall tokens/s (start-up s, end s) |',
);
console.log('|---|---|---|---|---|---|');
for (const l of lines) {
  const r = l.run;
  console.log(
    `| ${l.what} | ${l.inner} | ${l.innerRate.toFixed(0)} | ${r.steadyRate.toFixed(0)} | ${(r.steadyRate / l.innerRate).toFixed(2)} | ${(r.tokens / r.wallS).toFixed(0)} (${r.startS.toFixed(1)}, ${r.endS.toFixed(1)}) |`,
  );
}
for (const l of lines) {
  const p = Object.entries(l.run.profile).sort((a, b) => b[1] - a[1]);
  const total = p.reduce((a, [, s]) => a + s, 0);
  console.log(
    `\n${l.what}: main thread over the whole run (${total.toFixed(1)} s, node --cpu-prof): ` +
      p.map(([c, s]) => `${c} ${s.toFixed(1)} s`).join(', '),
  );
}
for (const l of lines)
  console.log(
    `RESULT ${JSON.stringify({ bench: 'end-to-end', what: l.what, inner: l.innerRate, steady: l.run.steadyRate, wall: l.run.tokens / l.run.wallS, start_s: l.run.startS, end_s: l.run.endS, main_thread_s: l.run.profile })}`,
  );
