// Issue 19's performance targets in one run: runs the benches one after another on this machine and prints
// each target with what was measured and whether it holds.
//
//   npx tsx bench/targets.ts [--rounds 1] [--skip forward,step,e2e,eval] [--python auto|PATH]
//
// - GPT-2 small forward to blocks.8.hook_resid_pre (bench/gpt2-forward.ts): >= 2x the fastest PyTorch.
// - SAE steps at d_sae 6144 / batch 1024 and 24576 / 4096, k 32 (bench/sae-step.ts, like-for-like PyTorch):
//   topk and batchtopk >= 3x, standard, jumprelu and gated >= 1.5x.
// - End to end (bench/end-to-end.ts): pipelines/gpt2-resid.ts --activations within 10% of the step alone,
//   pipelines/cache-activations.ts within 10% of the forward alone (steady rates; start-up shown apart).
// - The evaluator against SAELens's run_evals on the same windows (bench/eval-vs-saelens.ts; no target).
// Every bench's own table is printed as it runs; the summary comes from their RESULT lines.
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '1' },
    skip: { type: 'string', default: '' },
    python: { type: 'string', default: 'auto' },
  },
});
const skip = new Set(values.skip.split(',').filter(Boolean));

type Result = Record<string, unknown> & { bench: string };

/** Runs a bench, echoing its output, and returns its RESULT records. */
function bench(args: string[]): Promise<Result[]> {
  console.log(`\n$ npx tsx ${args.join(' ')}`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      process.stdout.write(chunk);
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) console.log(`(bench exited with ${code})`);
      resolve(
        out
          .split('\n')
          .filter((l) => l.startsWith('RESULT '))
          .map((l) => JSON.parse(l.slice('RESULT '.length)) as Result),
      );
    });
  });
}

const started = new Date();
const results: Result[] = [];
if (!skip.has('forward'))
  results.push(
    ...(await bench([
      'bench/gpt2-forward.ts',
      '--backends',
      'onnx',
      '--iters',
      '5',
      '--python',
      values.python,
    ])),
  );
if (!skip.has('step'))
  results.push(
    ...(await bench([
      'bench/sae-step.ts',
      ...['--sizes', 'small,big', '--rounds', values.rounds, '--python', values.python],
    ])),
  );
if (!skip.has('e2e')) results.push(...(await bench(['bench/end-to-end.ts'])));
if (!skip.has('eval')) results.push(...(await bench(['bench/eval-vs-saelens.ts', '--tokens', '4096'])));

interface Row {
  target: string;
  measured: string;
  value: number | null;
  goal: number;
}
const rows: Row[] = [];
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const ratio = (a: unknown, b: unknown) => {
  const x = num(a);
  const y = num(b);
  return x !== null && y !== null && y > 0 ? x / y : null;
};
const pct = (v: number | null) => (v === null ? 'n/a' : `${Math.round(100 * v)}%`);

for (const r of results.filter((r) => r.bench === 'gpt2-forward')) {
  rows.push({
    target: 'GPT-2 small forward to blocks.8.hook_resid_pre >= 2x PyTorch',
    measured: `${num(r.ours)?.toFixed(0)} vs ${num(r.torch)?.toFixed(0) ?? 'n/a'} tok/s; saeflow at ${pct(ratio(r.ours, r.limit))} of the GEMM limit, PyTorch at ${pct(ratio(r.torch, r.limit))}`,
    value: ratio(r.ours, r.torch),
    goal: 2,
  });
}
for (const r of results.filter((r) => r.bench === 'sae-step')) {
  const arch = String(r.arch);
  const goal = arch === 'topk' || arch === 'batchtopk' ? 3 : 1.5;
  const size = r.size === 'small' ? 'd_sae 6144, batch 1024' : 'd_sae 24576, batch 4096';
  rows.push({
    target: `SAE step ${arch}${r.sparse ? ' (sparse)' : ''}, ${size} >= ${goal}x PyTorch`,
    measured: `${num(r.ours)?.toFixed(0) ?? 'failed'} vs ${num(r.torch)?.toFixed(0) ?? 'n/a'} tok/s; saeflow at ${pct(ratio(r.ours, r.limit))} of its GEMM limit, PyTorch at ${pct(ratio(r.torch, r.dense_limit))} of the dense one`,
    value: ratio(r.ours, r.torch),
    goal,
  });
}
for (const r of results.filter((r) => r.bench === 'end-to-end')) {
  rows.push({
    target: `${String(r.what).split(',')[0]} within 10% of its inner loop`,
    measured: `steady ${num(r.steady)?.toFixed(0)} vs ${num(r.inner)?.toFixed(0)} tok/s; wall ${num(r.wall)?.toFixed(0)} tok/s with ${num(r.start_s)?.toFixed(1)} s start-up and ${num(r.end_s)?.toFixed(1)} s at the end`,
    value: ratio(r.steady, r.inner),
    goal: 0.9,
  });
}

for (const r of results.filter((r) => r.bench === 'eval-vs-saelens')) {
  rows.push({
    target: 'eval-sae (whole process) against SAELens run_evals alone (no target; shown as a 1x goal)',
    measured: `${num(r.ours_s)?.toFixed(1)} vs ${num(r.saelens_run_evals_s)?.toFixed(1)} s for ${String(r.tokens)} tokens; CE loss score ${String(r.ce_ours)} vs ${String(r.ce_saelens)}`,
    value: ratio(r.saelens_run_evals_s, r.ours_s),
    goal: 1,
  });
}

console.log(
  `\nTargets (issue 19), run started ${started.toISOString()}, ${((Date.now() - started.getTime()) / 60000).toFixed(1)} min:`,
);
console.log('| target | ratio | holds | measured |\n|---|---|---|---|');
for (const r of rows)
  console.log(
    `| ${r.target} | ${r.value === null ? 'n/a' : r.value.toFixed(2)} | ${r.value === null ? 'n/a' : r.value >= r.goal ? 'yes' : `no (${(r.value / r.goal).toFixed(2)} of the target)`} | ${r.measured} |`,
  );
