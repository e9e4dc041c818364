import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseCliArgs } from '../src/pipeline/cli-args.js';
import { runPipeline } from '../src/pipeline/runner.js';
import { MODEL_F32 } from './gpt2-fixture.js';
import { testIo } from './runner-io.js';

const tmp = () => mkdtempSync(path.join(tmpdir(), 'saeflow-small-'));

/** Training on `text`; before the fix this looped over an empty stream forever, so it must end quickly. */
async function train(text: string, extra: string[] = []) {
  const dir = tmp();
  const data = path.join(dir, 'data.txt');
  writeFileSync(data, text);
  const out = path.join(dir, 'run');
  const args = parseCliArgs([
    'pipelines/gpt2-resid.ts',
    ...['--model', MODEL_F32, '--dataset', data, '--backend', 'cpu', '--context_size', '32'],
    ...['--training_tokens', '5000', '--train_batch_size_tokens', '256', '--out', out, ...extra],
  ]);
  const result = await runPipeline(args, testIo()).then(
    () => null,
    (e: unknown) => e as Error,
  );
  return { error: result, out };
}

describe('a dataset too small to fill one training batch', () => {
  it('an empty file is a UserError naming the dataset and the tokens it has and needs', async () => {
    const { error, out } = await train('');
    expect(error?.name).toBe('UserError');
    expect(error?.message).toMatch(
      /dataset .*data\.txt has 0 tokens.*0 full context windows of 32.*at least 256/,
    );
    // Nothing was produced, so the run directory is gone and the same --out can be used again.
    expect(existsSync(out)).toBe(false);
  }, 20_000);

  it('one sentence: the message says how many tokens it has', async () => {
    const { error } = await train('Call me Ishmael. Some years ago, never mind how long precisely.');
    expect(error?.name).toBe('UserError');
    expect(error?.message).toMatch(/has 1[0-9] tokens, which make 0 full context windows/);
  }, 20_000);

  it('a cache with fewer rows than a training batch is refused before training', async () => {
    const { error } = await train('', [
      ...['--activations', 'test/fixtures/cache/pyarrow-fsl-f32.parquet'],
      ...['--hook', 'blocks.0.hook_resid_pre'],
    ]);
    expect(error?.name).toBe('UserError');
    expect(error?.message).toMatch(/pyarrow-fsl-f32\.parquet holds 40 tokens; training needs at least 256/);
  }, 20_000);
});
