import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseCliArgs } from '../src/pipeline/cli-args.js';
import { runPipeline } from '../src/pipeline/runner.js';
import { testIo } from './runner-io.js';

describe('README example pipeline', () => {
  it('is the code the README shows, and it runs', async () => {
    const readme = readFileSync('README.md', 'utf8');
    const example = readFileSync('test/pipelines/readme-example.ts', 'utf8')
      .split('\n')
      .slice(1)
      .join('\n')
      .replaceAll("'../../src/", "'../src/");
    expect(readme).toContain(example.trim());

    const out = path.join(mkdtempSync(path.join(tmpdir(), 'saeflow-readme-')), 'run');
    const io = testIo();
    const outcome = await runPipeline(
      parseCliArgs([
        'test/pipelines/readme-example.ts',
        '--context_size',
        '64',
        '--sae.d_sae',
        '8',
        '--out',
        out,
      ]),
      io,
    );
    expect(outcome?.status).toBe('completed');
    expect(outcome?.result).toMatchObject({ last_batch_windows: expect.any(Number) });
  });
});
