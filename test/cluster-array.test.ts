/**
 * `--array N` without a cluster: the scripts it writes run the same split by hand (task.sh I, then finish.sh),
 * a rerun of a finished task does nothing, and the runner refuses arrays that cannot work before writing
 * anything. (test/slurm.test.ts submits the same scripts to a real Slurm cluster.)
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseCliArgs } from '../src/pipeline/cli-args.js';
import { runPipeline } from '../src/pipeline/runner.js';
import { testIo } from './runner-io.js';

const BIN = path.resolve('bin/run-pipeline.js');
const CACHE = [
  ...['--model', 'tiny-gpt2', '--hooks', 'blocks.1.hook_resid_pre', '--context_size', '32'],
  ...['--batch_size', '4', '--max_tokens', '1024', '--shard_size_mb', '0.03'],
];
const tmp = (prefix: string) => mkdtempSync(path.join(tmpdir(), `saeflow-${prefix}-`));
const cli = (args: string[], env: NodeJS.ProcessEnv = process.env) =>
  spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env });
const lastLine = (s: string) => s.trim().split('\n').pop();

describe('--array without Slurm', () => {
  it('writes scripts that run the tasks and the merge by hand', () => {
    const out = path.join(tmp('array'), 'acts');
    const written = cli([
      'pipelines/cache-activations.ts',
      ...CACHE,
      '--array',
      '2',
      '--submit',
      'none',
      '--out',
      out,
      '--sbatch',
      '--time=5:00',
    ]);
    expect(written.status, written.stderr).toBe(0);
    const task = readFileSync(path.join(out, 'slurm', 'task.sh'), 'utf8');
    expect(task).toMatch(/^#SBATCH --array=0-1$/m);
    expect(task).toMatch(/^#SBATCH --requeue$/m);
    expect(task).toMatch(/^#SBATCH --time=5:00$/m);
    expect(task).toMatch(
      /^exec .* --shard "\$i\/2" --out .*parts\/\$\(printf '%05d-of-%05d' "\$i" 2\)" --resume_existing/m,
    );
    expect(readFileSync(path.join(out, 'slurm', 'submit.sh'), 'utf8')).toMatch(
      /--dependency="afterok:\$array"/,
    );

    for (const i of ['0', '1']) {
      const run = spawnSync('bash', [path.join(out, 'slurm', 'task.sh'), i], { encoding: 'utf8' });
      expect(run.status, run.stderr).toBe(0);
    }
    const again = spawnSync('bash', [path.join(out, 'slurm', 'task.sh'), '1'], { encoding: 'utf8' });
    expect(again.status).toBe(0);
    expect(again.stdout).toMatch(/parts\/00001-of-00002: this run has completed; nothing to do/);
    const finish = spawnSync('bash', [path.join(out, 'slurm', 'finish.sh')], { encoding: 'utf8' });
    expect(finish.status, finish.stderr).toBe(0);
    expect(JSON.parse(readFileSync(path.join(out, 'finish', 'result.json'), 'utf8'))).toMatchObject({
      parts: 2,
      tokens: 1024,
      shards: 9,
    });
    expect(existsSync(path.join(out, 'shard-00008.parquet'))).toBe(true);

    // The same directory with other options would mix two runs' parts.
    const other = cli([
      'pipelines/cache-activations.ts',
      ...CACHE,
      '--seed',
      '7',
      '--array',
      '2',
      '--submit',
      'none',
      '--out',
      out,
    ]);
    expect(other.status).toBe(2);
    expect(lastLine(other.stderr)).toMatch(
      /^error: .*acts: already holds a split run with other options .*submit\.sh, or choose another --out$/,
    );
  }, 240_000);

  it('refuses arrays that cannot work, in one line, before writing anything', async () => {
    const out = path.join(tmp('array-bad'), 'x');
    const cases: Array<[string[], RegExp]> = [
      [
        ['pipelines/eval-sae.ts', '--sae', 'runs/none', '--array', '2', '--out', out],
        /^--array: pipelines\/eval-sae.ts does not split into tasks/,
      ],
      [
        ['pipelines/cache-activations.ts', '--shard', '0/2', '--array', '2', '--out', out],
        /^--array and --shard: give one of them/,
      ],
      [
        ['pipelines/cache-activations.ts', '--array', '2'],
        /^--array: give --out, a directory every task can reach/,
      ],
      [['pipelines/cache-activations.ts', '--resume_existing'], /^--resume_existing goes with --out DIR/],
    ];
    for (const [args, pattern] of cases) {
      await expect(runPipeline(parseCliArgs(args), testIo()), args.join(' ')).rejects.toThrow(pattern);
    }
    expect(() => parseCliArgs(['p.ts', '--array', '0'])).toThrow(
      /^Option --array: expected a task count from 1 to 99999, got "0"\.$/,
    );
    expect(existsSync(out)).toBe(false);
  }, 120_000);

  it('says where to submit from when sbatch is missing', async () => {
    const out = path.join(tmp('no-sbatch'), 'acts');
    const saved = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      await expect(
        runPipeline(
          parseCliArgs(['pipelines/cache-activations.ts', ...CACHE, '--array', '2', '--out', out]),
          testIo(),
        ),
      ).rejects.toThrow(
        /^--submit slurm: sbatch is not installed here; submit .*slurm\/submit\.sh from a Slurm login node/,
      );
    } finally {
      process.env.PATH = saved;
    }
  }, 60_000);

  it('parses the runner flags that carry options for sbatch and the finishing step', () => {
    const args = parseCliArgs([
      'p.ts',
      '--array',
      '3',
      '--sbatch',
      '--time=1:00 --mem=4G',
      '--finish_args',
      '--n_eval_tokens 64  --engine onnx',
      '--submit',
      'none',
    ]);
    expect(args).toMatchObject({
      array: 3,
      submit: 'none',
      sbatch: ['--time=1:00 --mem=4G'],
      finishArgs: ['--n_eval_tokens', '64', '--engine', 'onnx'],
    });
    expect(() => parseCliArgs(['p.ts', '--submit', 'pbs'])).toThrow(/--submit: expected one of slurm\|none/);
  });
});
