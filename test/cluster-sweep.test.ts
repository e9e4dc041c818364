/**
 * A sweep split into tasks (--shard i/n) trains each SAE exactly as the unsplit sweep does (same names,
 * seeds and stream: identical weights), and pipelines/gather-sweep.ts evaluates the parts into one report
 * that lists every SAE; unfinished or missing parts and impossible splits are one-line errors.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { partDirName } from '../src/cluster/shard-spec.js';
import { parseCliArgs } from '../src/pipeline/cli-args.js';
import { runPipeline } from '../src/pipeline/runner.js';
import { testIo } from './runner-io.js';

const NAMES = ['topk-k4', 'topk-k8', 'topk-k16'];
const SWEEP = [
  ...['--model', 'tiny-gpt2', '--saes', '[{"k":4},{"k":8},{"k":16}]', '--architecture', 'topk'],
  ...[
    '--d_sae',
    '128',
    '--training_tokens',
    '4096',
    '--train_batch_size_tokens',
    '512',
    '--context_size',
    '32',
  ],
  ...['--lr', '0.001', '--n_batches_in_buffer', '4', '--progress', 'none'],
];
const tmp = (prefix: string) => mkdtempSync(path.join(tmpdir(), `saeflow-${prefix}-`));
const run = (argv: string[]) => runPipeline(parseCliArgs(argv), testIo());
const part = (dir: string, index: number, count = 3) => path.join(dir, partDirName({ index, count }));

describe('a sweep split into tasks', () => {
  it('trains every SAE as the unsplit sweep does, and gathers them into one report', async () => {
    const whole = path.join(tmp('sweep'), 'run');
    expect((await run(['pipelines/gpt2-resid.ts', ...SWEEP, '--out', whole]))?.status).toBe('completed');
    const dir = tmp('split-sweep');
    for (let i = 0; i < 3; i++) {
      const outcome = await run([
        'pipelines/gpt2-resid.ts',
        ...SWEEP,
        '--shard',
        `${i}/3`,
        '--out',
        part(dir, i),
      ]);
      expect(outcome?.status).toBe('completed');
      const name = NAMES[i]!;
      const weights = (d: string) => readFileSync(path.join(d, 'saes', name, 'sae_weights.safetensors'));
      expect(weights(part(dir, i)).equals(weights(whole)), name).toBe(true);
    }

    const broken = tmp('broken-sweep');
    cpSync(dir, broken, { recursive: true });
    const runJson = path.join(part(broken, 1), 'run.json');
    writeFileSync(runJson, readFileSync(runJson, 'utf8').replace('"completed"', '"interrupted"'));
    const gather = (d: string, extra: string[] = []) =>
      run([
        'pipelines/gather-sweep.ts',
        '--sweep',
        d,
        '--out',
        path.join(d, 'finish'),
        '--progress',
        'none',
        ...extra,
      ]);
    await expect(gather(broken, ['--no-evaluate'])).rejects.toThrow(
      /part 1 of 3 has not finished \(its run.json says interrupted\); finish it with: npx run-pipeline pipelines\/gpt2-resid.ts --resume .*00001-of-00003/,
    );
    rmSync(part(broken, 2), { recursive: true });
    await expect(gather(broken, ['--no-evaluate'])).rejects.toThrow(/part 2 of 3 is missing/);

    const outcome = await gather(dir, [
      '--model',
      'tiny-gpt2',
      '--n_eval_tokens',
      '1024',
      '--n_dashboard_features',
      '0',
    ]);
    expect(outcome?.status).toBe('completed');
    const result = outcome?.result as {
      saes: Array<{ name: string }>;
      evaluation: { saes: Array<{ name: string }> };
    };
    expect(result.saes.map((s) => s.name)).toEqual(NAMES);
    expect(result.evaluation.saes.map((s) => s.name).sort()).toEqual([...NAMES].sort());
    const report = readFileSync(path.join(dir, 'finish', 'report.md'), 'utf8');
    for (const name of NAMES) expect(report).toMatch(new RegExp(`\\| (★ )?${name} \\|`));
  }, 300_000);

  it('refuses a split with more tasks than SAEs', async () => {
    await expect(
      run(['pipelines/gpt2-resid.ts', ...SWEEP, '--shard', '3/4', '--out', path.join(tmp('too-many'), 'x')]),
    ).rejects.toThrow(
      /--shard 3\/4: the sweep has 3 SAEs \(--saes\), so 4 tasks would leave some without one/,
    );
  });
});
