// The evaluator against SAELens's own `run_evals` (6.18, through ../shared/peer), in the same run, on the same
// token windows: GPT-2 small's shape (random weights in a Hugging Face folder) with a random TopK SAE at
// blocks.8.hook_resid_pre, every metric on both sides (CE and KL with the SAE spliced in and with the hook
// ablated, reconstruction, sparsity, feature densities).
//
//   npx tsx bench/eval-vs-saelens.ts [--tokens 8192] [--d_sae 24576] [--k 32] [--peer_venv /tmp/saeflow-peer-venv]
//
// saeflow: `pipelines/eval-sae.ts --engine onnx --n_dashboard_features 0` in a fresh process, timed whole
// (start-up, model load, report). SAELens: `run_evals` alone as timed inside sae_eval.py (its torch import and
// model load left out), and its process whole. Both sides' CE loss score is printed to show the same windows.
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { writeSaeFolder } from '../src/sae/saelens-folder.js';
import { randomSae } from '../test/replacement-helpers.js';
import { writeGpt2SmallFolder } from './lib/gpt2-small-folder.js';

const { values } = parseArgs({
  options: {
    tokens: { type: 'string', default: '8192' },
    d_sae: { type: 'string', default: '24576' },
    k: { type: 'string', default: '32' },
    dir: { type: 'string', default: '/tmp/saeflow-bench-eval' },
    peer_venv: { type: 'string', default: '/tmp/saeflow-peer-venv' },
  },
});
const HOOK = 'blocks.8.hook_resid_pre';
const tokens = Number(values.tokens);
const dir = values.dir;
const PEER = path.resolve('..', 'shared', 'peer');

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): { out: string; s: number } {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 26, env });
  const s = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${(r.stderr ?? '').slice(-1500)}`);
  return { out: r.stdout, s };
}

const modelDir = await writeGpt2SmallFolder(path.join(dir, 'gpt2-small-random'));
const saeDir = path.join(dir, 'sae');
const sae = randomSae({
  architecture: 'topk',
  hook: HOOK,
  dIn: 768,
  dSae: Number(values.d_sae),
  k: Number(values.k),
  seed: 5,
});
// What a trained SAE's cfg.json records and SAELens's evaluator reads (its store needs the context size).
const config = {
  ...sae.config,
  metadata: {
    ...sae.config.metadata,
    model_name: 'gpt2',
    context_size: 128,
    prepend_bos: true,
    model_from_pretrained_kwargs: {},
  },
};
await writeSaeFolder(saeDir, config, {
  architecture: sae.config.architecture,
  tensors: { ...sae.tensors },
});

// The windows SAELens reads: the same text, tokenizer and packing as eval-sae's, from a cache of the hook.
const cacheDir = path.join(dir, 'windows');
rmSync(cacheDir, { recursive: true, force: true });
run(process.execPath, [
  ...['bin/run-pipeline.js', 'pipelines/cache-activations.ts', '--model', modelDir, '--dataset', 'sotu'],
  ...['--hooks', HOOK, '--max_tokens', `${tokens}`, '--out', cacheDir, '--progress', 'none'],
]);

const python = run(path.join(PEER, 'setup.sh'), [values.peer_venv]).out.trim().split('\n').pop()!;
const peerOut = path.join(dir, 'saelens.json');
const peer = run(
  python,
  [
    path.join(PEER, 'sae_eval.py'),
    '--sae',
    saeDir,
    '--model',
    modelDir,
    '--cache',
    cacheDir,
    '--out',
    peerOut,
  ],
  { ...process.env, OPENBLAS_CORETYPE: 'SkylakeX' },
);
const theirs = JSON.parse(readFileSync(peerOut, 'utf8')) as {
  eval_seconds: number;
  tokens: number;
  metrics: Record<string, number>;
};

const evalDir = path.join(dir, 'saeflow-eval');
rmSync(evalDir, { recursive: true, force: true });
const ours = run(process.execPath, [
  ...['bin/run-pipeline.js', 'pipelines/eval-sae.ts', '--sae', saeDir, '--model', modelDir],
  ...['--dataset', 'sotu', '--n_eval_tokens', `${tokens}`, '--n_dashboard_features', '0', '--engine', 'onnx'],
  ...['--out', evalDir, '--progress', 'none'],
]);
const ourEval = JSON.parse(readFileSync(path.join(evalDir, 'sae', 'eval.json'), 'utf8')) as {
  metrics: Record<string, number>;
};

const rate = (s: number) => (tokens / s).toFixed(0);
console.log(
  `\nEvaluation of a TopK SAE (d_sae ${values.d_sae}, k ${values.k}) at ${HOOK} of GPT-2 small's shape, ${tokens} tokens of sotu`,
);
console.log('| side | seconds | tokens/s | ce_loss_score | kl_div_score |\n|---|---|---|---|---|');
console.log(
  `| saeflow eval-sae (whole process) | ${ours.s.toFixed(1)} | ${rate(ours.s)} | ${ourEval.metrics.ce_loss_score} | ${ourEval.metrics.kl_div_score} |`,
);
console.log(
  `| SAELens run_evals (inside sae_eval.py) | ${theirs.eval_seconds.toFixed(1)} | ${rate(theirs.eval_seconds)} | ${theirs.metrics.ce_loss_score} | ${theirs.metrics.kl_div_score} |`,
);
console.log(`| SAELens sae_eval.py (whole process) | ${peer.s.toFixed(1)} | ${rate(peer.s)} | | |`);
console.log(
  `ratio (saeflow whole process / SAELens run_evals alone): ${(theirs.eval_seconds / ours.s).toFixed(2)}`,
);
console.log(
  `RESULT ${JSON.stringify({ bench: 'eval-vs-saelens', ours_s: ours.s, saelens_run_evals_s: theirs.eval_seconds, saelens_process_s: peer.s, tokens, ce_ours: ourEval.metrics.ce_loss_score, ce_saelens: theirs.metrics.ce_loss_score })}`,
);
