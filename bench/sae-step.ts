// SAE training-step throughput: saeflow's trainer (TrainingSae.trainSteps, the path a pipeline runs: on
// onnx a chunk of steps per session run) on its step engines against PyTorch doing the same steps
// (forward, loss, backward, clipping, Adam) on the same shapes, in the same run, one process per
// measurement so that no run inherits another's heap. PyTorch gets every core (bench/torch/machine.py).
//
//   npx tsx bench/sae-step.ts [--sizes small,big] [--archs standard,topk,...] [--engines onnx,tfjs]
//                             [--paths auto] [--dead 0.125] [--steps N] [--rounds 2] [--python auto|PATH]
//                             [--install-torch]
//
// Both sides do the same work: Adam with global-norm clipping, apply_b_dec_to_input, topk/batchtopk with
// decoder-norm rescaling and AuxK with dead features present (--dead: that fraction of the features gets
// b_enc = -1, so it never fires, and dead_feature_window is 1, so AuxK runs from the third step on; the
// timed steps come after two warm-up steps), gated with its undetached auxiliary reconstruction
// (bench/torch/sae_step.py). --paths sparse,dense runs the topk family's sparse and dense steps as
// separate lines (default auto: train-step.ts's rule picks). Every line also shows the GEMM limit: the
// tokens/s at which the step's dense products alone would run at the machine's sgemm speed, measured in the
// same run (onnxruntime MatMul and torch matmul at [batch, d_in] x [d_in, d_sae], the faster of the two).
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
    paths: { type: 'string', default: 'auto' },
    dead: { type: 'string', default: '0.125' },
    dead_window: { type: 'string', default: '1' },
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

if (values.child === 'sgemm') {
  // onnxruntime's sgemm speed at the encoder's shape: the best of several runs of one MatMul.
  const ort = await import('onnxruntime-node');
  const { OnnxOps } = await import('../src/ops/onnx-ops.js');
  const { encodeOnnxModel } = await import('../src/engine/onnx/onnx-proto.js');
  const { onnxSessionOptions } = await import('../src/engine/onnx/session-options.js');
  const [dIn, dSae, batch] = [values.d_in, values.d_sae, values.batch].map(Number) as [
    number,
    number,
    number,
  ];
  const o = new OnnxOps();
  o.output(o.matMul(o.input('a', [batch, dIn]), o.input('b', [dIn, dSae])), 'y');
  const session = await ort.InferenceSession.create(encodeOnnxModel(o.model('sgemm')), onnxSessionOptions());
  const fill = (n: number) => Float32Array.from({ length: n }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
  const feeds = {
    a: new ort.Tensor('float32', fill(batch * dIn), [batch, dIn]),
    b: new ort.Tensor('float32', fill(dIn * dSae), [dIn, dSae]),
  };
  let best = Infinity;
  for (let r = 0; r < 8; r++) {
    const t = performance.now();
    await session.run(feeds);
    if (r > 0) best = Math.min(best, performance.now() - t);
  }
  console.log(JSON.stringify({ gflops: (2 * batch * dIn * dSae) / best / 1e6 }));
  process.exit(0);
}

if (values.child !== undefined) {
  // One measurement: --child ENGINE:ARCH with the size flags.
  const [engine, arch] = values.child.split(':') as ['tfjs' | 'onnx', string];
  const aux = arch === 'topk' || arch === 'batchtopk';
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
    apply_b_dec_to_input: true,
    ...(aux
      ? {
          k: Number(values.k),
          rescale_acts_by_decoder_norm: true,
          dead_feature_window: Number(values.dead_window),
        }
      : {}),
    ...(arch === 'standard' || arch === 'gated' ? { l1_coefficient: 5 } : {}),
  });
  const rng = new Mulberry32(3);
  const x = new Float32Array(batch * dIn);
  for (let i = 0; i < x.length; i++) x[i] = rng.next() * 2 - 1;
  const sae = TrainingSae.create(cfg, engine);
  const nDead = aux ? Math.floor(Number(values.dead) * dSae) : 0;
  if (nDead > 0) {
    const bEnc = sae.hostParams().b_enc!.data.slice();
    bEnc.fill(-1, 0, nDead);
    sae.engine.setParam('b_enc', bEnc);
  }
  // The trainer hands an engine as many batches as it runs together (onnx: a chunk of steps per run).
  const chunk = sae.engine.maxChunkSteps;
  let dead = 0;
  const run = async (n: number): Promise<void> => {
    for (let done = 0; done < n; done += chunk) {
      const t = performance.now();
      const batches = Array.from({ length: Math.min(chunk, n - done) }, () => ({ x, y: null, rows: batch }));
      dead = (await sae.trainSteps(batches)).at(-1)!.dead_features;
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
  const sparse = (sae.engine as { sparse?: boolean }).sparse === true;
  console.log(JSON.stringify({ tokens_per_s: (steps * batch) / seconds, sparse, dead }));
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

interface OurRun {
  tokensPerS: number;
  sparse: boolean;
}

function ours(engine: string, arch: string, size: Size, path: string): OurRun | null {
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
      '--dead',
      values.dead,
      '--dead_window',
      values.dead_window,
      ...sizeArgs(size),
    ],
    { encoding: 'utf8', maxBuffer: 1 << 24, env: { ...process.env, SAEFLOW_TOPK_PATH: path } },
  );
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !line.startsWith('{')) {
    console.error(`${engine} ${arch} ${size.name} failed: ${(r.stderr ?? '').slice(-400)}`);
    return null;
  }
  const j = JSON.parse(line) as { tokens_per_s: number; sparse: boolean; dead: number };
  if (j.dead > 0) console.error(`  (saeflow ${arch}: ${j.dead} dead features at the last step)`);
  return { tokensPerS: j.tokens_per_s, sparse: j.sparse };
}

/** onnxruntime's sgemm GFLOP/s at the encoder's shape, in a child process. */
function onnxSgemm(size: Size): number | null {
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', 'bench/sae-step.ts', '--child', 'sgemm', ...sizeArgs(size)],
    { encoding: 'utf8', maxBuffer: 1 << 24 },
  );
  const line = r.stdout.trim().split('\n').pop() ?? '';
  return r.status === 0 && line.startsWith('{') ? (JSON.parse(line) as { gflops: number }).gflops : null;
}

/**
 * The [batch, d_in] x [d_in, d_sae] products a step of `arch` needs when done densely (forward and
 * backward): encoder, decoder, dL/df and the two weight gradients; topk/batchtopk add three for AuxK (its
 * decode, its dL/df, its W_dec gradient); gated adds its auxiliary decode, that decode's dL/dg and its
 * W_dec gradient. A sparse step needs one, the encoder.
 */
function denseGemms(arch: string, sparse: boolean): number {
  if (sparse) return 1;
  if (arch === 'topk' || arch === 'batchtopk') return 5 + (Number(values.dead) > 0 ? 3 : 0);
  if (arch === 'gated') return 8;
  return 5;
}

interface TorchRun {
  tokensPerS: number;
  label: string;
  sgemm?: number;
}

function pytorch(arch: string, size: Size): TorchRun | null {
  let best: TorchRun | null = null;
  for (const py of pythons) {
    const args = [...sizeArgs(size), '--k', values.k, '--archs', arch, '--dead', values.dead];
    for (const j of runTorch(py, 'bench/torch/sae_step.py', args, `${arch} ${size.name}`)) {
      const run = {
        tokensPerS: j.tokens_per_s,
        label: `${py}: torch ${j.torch}, ${j.blas}, ${j.threads} intra-op thread(s), ${j.impl as string}`,
        sgemm: j.sgemm_gflops as number,
      };
      console.error(
        `  PyTorch ${arch} ${size.name}: ${j.tokens_per_s.toFixed(0)} tok/s (${run.label}${j.dead ? `; ${j.dead as number} dead features` : ''})`,
      );
      if (best === null || run.tokensPerS > best.tokensPerS) best = run;
    }
  }
  return best;
}

const paths = values.paths.split(',');

for (const size of sizes) {
  const rows: string[] = [];
  const baselines = new Set<string>();
  const rounds = Number(values.rounds);
  const fastest = <T>(runs: (T | null)[], speed: (r: T) => number): T | null =>
    runs.reduce<T | null>((a, r) => (r !== null && (a === null || speed(r) > speed(a)) ? r : a), null);
  const sgemms: number[] = [];
  const flopsPerToken = 2 * size.dIn * size.dSae;
  const results: { arch: string; line: string; ours: OurRun | null; torch: TorchRun | null }[] = [];
  for (const arch of archs) {
    const variants = arch === 'topk' || arch === 'batchtopk' ? paths : ['auto'];
    // Alternating rounds, fastest of each side: this VM's speed drifts by 10-20% over minutes.
    const torchRuns: (TorchRun | null)[] = [];
    const ourRuns = new Map<string, (OurRun | null)[]>();
    for (let r = 0; r < rounds; r++) {
      const t = pytorch(arch, size);
      torchRuns.push(t);
      if (t?.sgemm !== undefined) sgemms.push(t.sgemm);
      const peak = onnxSgemm(size);
      if (peak !== null) sgemms.push(peak);
      for (const engine of engines)
        for (const path of variants) {
          const key = `${engine}${path === 'auto' ? '' : ` ${path}`}`;
          const o = ours(engine, arch, size, path);
          console.error(
            `  saeflow ${key} ${arch} ${size.name}: ${o === null ? 'failed' : `${o.tokensPerS.toFixed(0)} tok/s${o.sparse ? ' (sparse step)' : ''}`}`,
          );
          ourRuns.set(key, [...(ourRuns.get(key) ?? []), o]);
        }
    }
    const t = fastest(torchRuns, (run) => run.tokensPerS);
    if (t) baselines.add(t.label);
    for (const [key, runs] of ourRuns)
      results.push({ arch, line: key, ours: fastest(runs, (v) => v.tokensPerS), torch: t });
  }
  const peak = sgemms.length > 0 ? Math.max(...sgemms) : null;
  for (const { arch, line, ours: o, torch: t } of results) {
    const limit = (sparse: boolean) =>
      peak === null ? null : (peak * 1e9) / (denseGemms(arch, sparse) * flopsPerToken);
    const pct = (v: number | undefined, lim: number | null) =>
      v === undefined || lim === null ? 'n/a' : `${((100 * v) / lim).toFixed(0)}%`;
    const ourLimit = o === null ? null : limit(o.sparse);
    const denseLimit = limit(false);
    console.log(
      `RESULT ${JSON.stringify({ bench: 'sae-step', size: size.name, arch, line, sparse: o?.sparse ?? null, ours: o?.tokensPerS ?? null, torch: t?.tokensPerS ?? null, limit: ourLimit, dense_limit: denseLimit })}`,
    );
    rows.push(
      `| ${arch} | ${line}${o?.sparse && !line.includes('sparse') ? ' (sparse)' : ''} | ${o === null ? 'failed' : o.tokensPerS.toFixed(0)} | ${t ? t.tokensPerS.toFixed(0) : 'n/a'} | ${o !== null && t ? (o.tokensPerS / t.tokensPerS).toFixed(2) : 'n/a'} | ${ourLimit === null ? 'n/a' : ourLimit.toFixed(0)} / ${denseLimit === null ? 'n/a' : denseLimit.toFixed(0)} | ${pct(o?.tokensPerS, ourLimit)} | ${pct(t?.tokensPerS, denseLimit)} |`,
    );
  }
  console.log(
    `\nSAE training step, d_in ${size.dIn}, d_sae ${size.dSae}, batch ${size.batch}, k ${values.k}, dead features ${values.dead} (${size.steps} timed steps after two warm-up steps; fastest of ${rounds} alternating rounds per side)`,
  );
  console.log(
    `sgemm peak ${peak === null ? 'n/a' : peak.toFixed(0)} GFLOP/s (fastest of onnxruntime and torch at [${size.batch}, ${size.dIn}] x [${size.dIn}, ${size.dSae}], measured each round)`,
  );
  console.log(`PyTorch baseline (fastest per architecture): ${[...baselines].join('; ') || 'none'}`);
  console.log(
    '| architecture | saeflow engine | saeflow tokens/s | PyTorch tokens/s | ratio | GEMM limit tokens/s (this step / dense) | saeflow of its limit | PyTorch of the dense limit |\n|---|---|---|---|---|---|---|---|',
  );
  for (const r of rows) console.log(r);
}
