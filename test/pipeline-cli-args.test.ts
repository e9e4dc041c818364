import { describe, expect, it } from 'vitest';
import { parseCliArgs } from '../src/pipeline/cli-args.js';

describe('parseCliArgs', () => {
  it('separates the pipeline file, runner flags and pipeline overrides', () => {
    const a = parseCliArgs([
      'pipelines/x.ts',
      '--context_size',
      '64',
      '--out=runs/a',
      '--backend',
      'cpu',
      '--sae.k=4',
      '--prepend_bos',
      '--no-shuffle',
      '--max-in-flight',
      '2',
      '--lr',
      '-1e-3',
    ]);
    expect(a.pipelineFile).toBe('pipelines/x.ts');
    expect(a.out).toBe('runs/a');
    expect(a.backend).toBe('cpu');
    expect(a.maxInFlight).toBe(2);
    expect(a.overrides).toEqual([
      ['context_size', '64'],
      ['sae.k', '4'],
      ['prepend_bos', 'true'],
      ['shuffle', 'false'],
      ['lr', '-1e-3'],
    ]);
  });

  it('rejects bad runner flags with the flag name', () => {
    expect(() => parseCliArgs(['p.ts', '--backend', 'gpu'])).toThrow(
      /--backend: expected one of auto\|tensorflow\|wasm\|cpu/,
    );
    expect(() => parseCliArgs(['p.ts', '--out'])).toThrow(/--out needs a value/);
    expect(() => parseCliArgs(['p.ts', '--max_in_flight', '0'])).toThrow(/--max_in_flight/);
    expect(() => parseCliArgs(['a.ts', 'b.ts'])).toThrow(/Expected one pipeline file/);
    expect(() => parseCliArgs([])).toThrow(/Usage/);
  });

  it('accepts --help without a file', () => {
    expect(parseCliArgs(['--help']).help).toBe(true);
  });
});
