// SAE training-step throughput: saeflow's trainer (TensorFlow.js) against PyTorch doing the same step
// (forward, loss, backward, Adam, grad clipping) in the same run.
//
//   npx tsx bench/sae-step.ts [--d_in 768] [--d_sae 6144] [--batch 1024] [--steps 5] [--archs standard,topk,...]
//
// PyTorch runs when `python3` imports torch (`pip install torch`: the local wheel cache has a CPU build);
// it runs with OPENBLAS_CORETYPE=SkylakeX, the fastest OpenBLAS kernel here, in its own process.
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { selectBackend } from '../src/pipeline/backend.js';
import { SaeTrainer } from '../src/sae/index.js';
import { Mulberry32 } from '../src/util/random.js';

const { values } = parseArgs({
  options: {
    d_in: { type: 'string', default: '768' },
    d_sae: { type: 'string', default: '6144' },
    batch: { type: 'string', default: '1024' },
    steps: { type: 'string', default: '5' },
    k: { type: 'string', default: '32' },
    archs: { type: 'string', default: 'standard,topk,batchtopk,jumprelu,gated' },
    backend: { type: 'string', default: 'wasm' },
    python: { type: 'string', default: 'python3' },
  },
});
const dIn = Number(values.d_in);
const dSae = Number(values.d_sae);
const batch = Number(values.batch);
const steps = Number(values.steps);
const archs = values.archs.split(',');

const backend = await selectBackend(values.backend as 'wasm' | 'cpu' | 'tensorflow');
const rng = new Mulberry32(3);
const x = new Float32Array(batch * dIn);
for (let i = 0; i < x.length; i++) x[i] = rng.next() * 2 - 1;

const ours = new Map<string, number>();
for (const arch of archs) {
  const trainer = SaeTrainer.create([
    {
      name: arch,
      architecture: arch,
      d_in: dIn,
      d_sae: dSae,
      hook_name: 'x',
      train_batch_size_tokens: batch,
      training_tokens: batch * (steps + 2),
      ...(arch === 'topk' || arch === 'batchtopk' ? { k: Number(values.k) } : {}),
      ...(arch === 'standard' || arch === 'gated' ? { l1_coefficient: 5 } : {}),
    },
  ]);
  trainer.step({ rows: batch, activations: { x } }); // warm-up
  const t0 = performance.now();
  for (let s = 0; s < steps; s++) trainer.step({ rows: batch, activations: { x } });
  ours.set(arch, (steps * batch) / ((performance.now() - t0) / 1000));
  trainer.dispose();
}

const torch = new Map<string, number>();
let torchInfo = 'PyTorch not available';
const torchArchs = archs.filter((a) => ['standard', 'topk', 'batchtopk', 'jumprelu', 'gated'].includes(a));
if (torchArchs.length > 0) {
  const r = spawnSync(
    values.python,
    [
      'bench/torch/sae_step.py',
      ...['--d_in', String(dIn), '--d_sae', String(dSae), '--batch', String(batch), '--steps', String(steps)],
      ...['--k', values.k, '--archs', torchArchs.join(',')],
    ],
    { encoding: 'utf8', env: { ...process.env, OPENBLAS_CORETYPE: 'SkylakeX' } },
  );
  if (r.status === 0) {
    for (const line of r.stdout.trim().split('\n')) {
      const j = JSON.parse(line) as {
        arch: string;
        tokens_per_s: number;
        torch: string;
        threads: number;
        blas: string;
      };
      torch.set(j.arch, j.tokens_per_s);
      torchInfo = `PyTorch ${j.torch}, ${j.threads} threads, BLAS ${j.blas}`;
    }
  } else {
    console.error(`PyTorch baseline skipped: ${r.error?.message ?? (r.stderr ?? '').slice(-300)}`);
  }
}

console.log(
  `SAE step, d_in ${dIn}, d_sae ${dSae}, batch ${batch}; saeflow tfjs-${backend.name} (${backend.threads} thread) vs ${torchInfo}`,
);
console.log('| architecture | saeflow tokens/s | PyTorch tokens/s | ratio |\n|---|---|---|---|');
for (const arch of archs) {
  const o = ours.get(arch) as number;
  const t = torch.get(arch);
  console.log(
    `| ${arch} | ${o.toFixed(0)} | ${t ? t.toFixed(0) : 'n/a'} | ${t ? (o / t).toFixed(3) : 'n/a'} |`,
  );
}
