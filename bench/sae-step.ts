// SAE training-step throughput: saeflow's trainer (TrainingSae.trainSteps, the path a pipeline runs: on
// onnx a chunk of steps per session run) on its step engines against PyTorch doing the same steps
// (forward, loss, backward, clipping, Adam) on the same shapes, in the same run, one process per
// measurement so that no run inherits another's heap. PyTorch gets every core (bench/torch/machine.py).
//
//   npx tsx bench/sae-step.ts [--sizes small,big] [--archs standard,topk,...] [--engines onnx,tfjs]
//                             [--steps N] [--rounds 2] [--python auto|PATH] [--install-torch]
//
// Sizes: small = d_in 768, d_sae 6144, batch 1024; big = d_in 768, d_sae 24576, batch 4096 (or give
// --d_in/--d_sae/--batch for one custom size). PyTorch: every interpreter in --python that imports torch,
// at each thread count, and the fastest is the baseline (bench/torch-baseline.ts); --install-torch first
// installs Debian's python3-torch + libopenblas0-pthread when no interpreter has torch.
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { pythonsWithTorch, runTorch } from './torch-baseline.js';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: 'small,big' },
    d_in: { type: 'string' },
    d_sae: { type: 'string' },
    batch: { type: 'string' },
    steps: { type: 'string' },
    k: { type: 'string', default: '32' },
    archs: { type: 'string', default: 'standard,topk,batchtopk,jumprelu,gated' },
    engines: { type: 'string', default: 'onnx' },
    python: { type: 'string', default: 'auto' },
    rounds: { type: 'string', default: '2' },
    'install-torch': { type: 'boolean', default: false },
    child: { type: 'string' },
  },
});

interface Size {
  name: string;
  dIn: number;
  dSae: number;
  batch: number;
  steps: number;
}

const SIZES: Record<string, Size> = {
  small: { name: 'small', dIn: 768, dSae: 6144, batch: 1024, steps: 16 },
  big: { name: 'big', dIn: 768, dSae: 24576, batch: 4096, steps: 4 },
};

if (values.child !== undefined) {
  // One measurement: --child ENGINE:ARCH with the size flags.
  const [engine, arch] = values.child.split(':') as ['tfjs' | 'onnx', string];
  const { selectBackend } = await import('../src/pipeline/backend.js');
  const { resolveSaeTrainingConfig } = await import('../src/sae/config.js');
  const { TrainingSae } = await import('../src/sae/training-sae.js');
  const { Mulberry32 } = await import('../src/util/random.js');
  if (engine === 'tfjs') await selectBackend('wasm');
  const [dIn, dSae, batch, steps] = [values.d_in, values.d_sae, values.batch, values.steps].map(Number) as [
    number,
    number,
    number,
    number,
  ];
  const cfg = resolveSaeTrainingConfig({
    name: arch,
    architecture: arch,
    d_in: dIn,
    d_sae: dSae,
    hook_name: 'x',
    train_batch_size_tokens: batch,
    training_tokens: batch * (steps + 2),
    ...(arch === 'topk' || arch === 'batchtopk' ? { k: Number(values.k) } : {}),
    ...(arch === 'standard' || arch === 'gated' ? { l1_coefficient: 5 } : {}),
  });
  const rng = new Mulberry32(3);
  const x = new Float32Array(batch * dIn);
  for (let i = 0; i < x.length; i++) x[i] = rng.next() * 2 - 1;
  const sae = TrainingSae.create(cfg, engine);
  // The trainer hands an engine as many batches as it runs together (onnx: a chunk of steps per run).
  const chunk = sae.engine.maxChunkSteps;
  const run = async (n: number): Promise<void> => {
    for (let done = 0; done < n; done += chunk) {
      const t = performance.now();
      const batches = Array.from({ length: Math.min(chunk, n - done) }, () => ({ x, y: null, rows: batch }));
      await sae.trainSteps(batches);
      if (process.env.BENCH_VERBOSE)
        console.error(
          `${batches.length} steps: ${((performance.now() - t) / batches.length).toFixed(0)} ms/step`,
        );
    }
  };
  // Warm-up: graph compilation, then the allocator growing to its steady state.
  await run(2);
  const t0 = performance.now();
  await run(steps);
  const seconds = (performance.now() - t0) / 1000;
  sae.dispose();
  // A released session writes its profile (SAEFLOW_ORT_PROFILE) in the background: let it finish.
  if (process.env.SAEFLOW_ORT_PROFILE) await new Promise((r) => setTimeout(r, 3000));
  console.log(JSON.stringify({ tokens_per_s: (steps * batch) / seconds }));
  process.exit(0);
}

const pythons = pythonsWithTorch(values.python, values['install-torch']);

const sizes: Size[] =
  values.d_sae !== undefined
    ? [
        {
          name: 'custom',
          dIn: Number(values.d_in ?? 768),
          dSae: Number(values.d_sae),
          batch: Number(values.batch ?? 1024),
          steps: Number(values.steps ?? 5),
        },
      ]
    : values.sizes.split(',').map((s) => {
        const size = SIZES[s];
        if (size === undefined) throw new Error(`unknown size ${s} (small, big)`);
        return values.steps === undefined ? size : { ...size, steps: Number(values.steps) };
      });
const archs = values.archs.split(',');
const engines = values.engines.split(',');

function sizeArgs(size: Size): string[] {
  return [
    '--d_in',
    `${size.dIn}`,
    '--d_sae',
    `${size.dSae}`,
    '--batch',
    `${size.batch}`,
    '--steps',
    `${size.steps}`,
  ];
}

function ours(engine: string, arch: string, size: Size): number | null {
  const r = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      'bench/sae-step.ts',
      '--child',
      `${engine}:${arch}`,
      '--k',
      values.k,
      ...sizeArgs(size),
    ],
    { encoding: 'utf8', maxBuffer: 1 << 24 },
  );
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !line.startsWith('{')) {
    console.error(`${engine} ${arch} ${size.name} failed: ${(r.stderr ?? '').slice(-400)}`);
    return null;
  }
  return (JSON.parse(line) as { tokens_per_s: number }).tokens_per_s;
}

interface TorchRun {
  tokensPerS: number;
  label: string;
}

function pytorch(arch: string, size: Size): TorchRun | null {
  let best: TorchRun | null = null;
  for (const py of pythons) {
    const args = [...sizeArgs(size), '--k', values.k, '--archs', arch];
    for (const j of runTorch(py, 'bench/torch/sae_step.py', args, `${arch} ${size.name}`)) {
      const run = {
        tokensPerS: j.tokens_per_s,
        label: `${py}: torch ${j.torch}, ${j.blas}, ${j.threads} intra-op thread(s)`,
      };
      console.error(`  PyTorch ${arch} ${size.name}: ${j.tokens_per_s.toFixed(0)} tok/s (${run.label})`);
      if (best === null || run.tokensPerS > best.tokensPerS) best = run;
    }
  }
  return best;
}

for (const size of sizes) {
  const rows: string[] = [];
  const baselines = new Set<string>();
  const rounds = Number(values.rounds);
  const fastest = <T>(runs: (T | null)[], speed: (r: T) => number): T | null =>
    runs.reduce<T | null>((a, r) => (r !== null && (a === null || speed(r) > speed(a)) ? r : a), null);
  for (const arch of archs) {
    // Alternating rounds, fastest of each side: this VM's speed drifts by 10-20% over minutes.
    const torchRuns: (TorchRun | null)[] = [];
    const ourRuns = new Map<string, (number | null)[]>(engines.map((e) => [e, []]));
    for (let r = 0; r < rounds; r++) {
      torchRuns.push(pytorch(arch, size));
      for (const engine of engines) {
        const o = ours(engine, arch, size);
        console.error(
          `  saeflow ${engine} ${arch} ${size.name}: ${o === null ? 'failed' : o.toFixed(0)} tok/s`,
        );
        ourRuns.get(engine)!.push(o);
      }
    }
    const t = fastest(torchRuns, (run) => run.tokensPerS);
    if (t) baselines.add(t.label);
    for (const engine of engines) {
      const o = fastest(ourRuns.get(engine)!, (v) => v);
      rows.push(
        `| ${arch} | ${engine} | ${o === null ? 'failed' : o.toFixed(0)} | ${t ? t.tokensPerS.toFixed(0) : 'n/a'} | ${o !== null && t ? (o / t.tokensPerS).toFixed(2) : 'n/a'} |`,
      );
    }
  }
  console.log(
    `\nSAE training step, d_in ${size.dIn}, d_sae ${size.dSae}, batch ${size.batch} (${size.steps} timed steps after two warm-up steps; fastest of ${rounds} alternating rounds per side)`,
  );
  console.log(`PyTorch baseline (fastest per architecture): ${[...baselines].join('; ') || 'none'}`);
  console.log(
    '| architecture | saeflow engine | saeflow tokens/s | PyTorch tokens/s | ratio |\n|---|---|---|---|---|',
  );
  for (const r of rows) console.log(r);
}
