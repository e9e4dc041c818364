import { EventEmitter } from 'node:events';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { weightStatistics } from '../src/eval/index.js';
import { parseCliArgs } from '../src/pipeline/cli-args.js';
import { runPipeline, type RunnerIo } from '../src/pipeline/runner.js';
import { readSaeFolder } from '../src/sae/index.js';
import { loadSae } from '../src/sae-formats/index.js';
import type { SaeInspection } from '../src/sae-formats/inspect.js';
import type { WeightStatistics } from '../src/eval/index.js';
import { CASES } from './sae-formats-helpers.js';
import type { CaseName } from './sae-formats-helpers.js';

function io(lines: string[] = []): RunnerIo {
  return {
    stdout: (text) => lines.push(text),
    signals: new EventEmitter() as unknown as RunnerIo['signals'],
    isTTY: false,
    cwd: process.cwd(),
  };
}

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'saeflow-sae-pipelines-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});
let counter = 0;
const runDir = () => path.join(tmp, `run-${counter++}`);

/** result.json of inspect-sae, with the JSON form of the weight statistics. */
type Report = Omit<SaeInspection, 'weights'> & {
  weights: Omit<WeightStatistics, 'per_feature'> & { per_feature?: { decoder_norm: number[] } };
};

const run = (file: string, args: string[]) =>
  runPipeline(parseCliArgs([file, ...args, '--backend', 'cpu', '--out', runDir()]), io());

describe('pipelines/convert-sae.ts', () => {
  for (const [name, source] of Object.entries(CASES) as [CaseName, string][]) {
    it(`converts ${name} into a SAELens folder in the run directory`, async () => {
      const outcome = await run('pipelines/convert-sae.ts', ['--sae', source]);
      expect(outcome?.status).toBe('completed');
      const result = outcome!.result as Record<string, unknown>;
      expect(result.path).toBe(path.join(outcome!.runDir, 'sae'));
      const folder = await readSaeFolder(result.path as string);
      const loaded = await loadSae(source);
      expect(result).toMatchObject({
        format: loaded.format,
        architecture: loaded.config.architecture,
        d_sae: 32,
      });
      expect(folder.tensors).toEqual(loaded.tensors);
      if (loaded.tensors.threshold)
        expect(folder.tensors.threshold!.data).toEqual(loaded.tensors.threshold.data);
      const saved = JSON.parse(await readFile(path.join(outcome!.runDir, 'result.json'), 'utf8'));
      expect(saved.path).toBe(result.path);
    });
  }

  it('writes to --name, and refuses a missing --sae or a --name that is a path', async () => {
    const outcome = await run('pipelines/convert-sae.ts', ['--sae', CASES.sparsify, '--name', 'layer6']);
    expect((outcome!.result as { path: string }).path).toBe(path.join(outcome!.runDir, 'layer6'));
    await expect(run('pipelines/convert-sae.ts', [])).rejects.toThrow(/--sae is required/);
    await expect(
      run('pipelines/convert-sae.ts', ['--sae', CASES.sparsify, '--name', '../x']),
    ).rejects.toThrow(/--name "\.\.\/x" must be a plain folder name/);
    await expect(run('pipelines/convert-sae.ts', ['--sae', path.join(tmp, 'nope')])).rejects.toThrow(
      /SAE not found/,
    );
  });
});

describe('pipelines/inspect-sae.ts', () => {
  for (const [name, source] of Object.entries(CASES) as [CaseName, string][]) {
    it(`reports the configuration and weight statistics of ${name}`, async () => {
      const lines: string[] = [];
      const outcome = await runPipeline(
        parseCliArgs(['pipelines/inspect-sae.ts', '--sae', source, '--backend', 'cpu', '--out', runDir()]),
        io(lines),
      );
      const r = outcome!.result as Report;
      const loaded = await loadSae(source);
      const stats = weightStatistics({ tensors: loaded.tensors });
      expect(r).toMatchObject({
        format: loaded.format,
        architecture: loaded.config.architecture,
        d_in: 16,
        d_sae: 32,
        hook_name: loaded.config.metadata.hook_name,
        required_processing: loaded.requiredProcessing,
      });
      expect(r.weights.decoder_norm.mean).toBeCloseTo(stats.decoder_norm.mean, 12);
      expect(r.weights.decoder_norm.max_deviation_from_1).toBeCloseTo(
        stats.decoder_norm.max_deviation_from_1,
        12,
      );
      expect(r.weights.encoder_norm.max).toBeCloseTo(stats.encoder_norm.max, 12);
      expect(r.weights.encoder_decoder_cosine!.mean).toBeCloseTo(stats.encoder_decoder_cosine!.mean, 12);
      expect(r.weights).not.toHaveProperty('per_feature');
      expect(r.sparsity === null).toBe(loaded.sparsity === null);
      expect(lines.join('')).toContain('"decoder_norm"');
      const log = await readFile(path.join(outcome!.runDir, 'run.log'), 'utf8');
      expect(log).toMatch(/decoder norms: mean/);
    });
  }

  it('reads L0 and friends from an eval.json next to the SAE, and per-feature values on request', async () => {
    const dir = path.join(tmp, 'with-eval');
    await cp(CASES['saelens-v6'], dir, { recursive: true });
    await writeFile(
      path.join(dir, 'eval.json'),
      JSON.stringify({
        metrics: { sparsity: { l0: 12.5, l1: 40 }, reconstruction_quality: { explained_variance: 0.8 } },
      }),
    );
    const outcome = await run('pipelines/inspect-sae.ts', ['--sae', dir, '--per_feature']);
    const r = outcome!.result as Report;
    expect(r.eval!.headline).toEqual({ l0: 12.5, l1: 40, explained_variance: 0.8 });
    expect(r.eval!.values['metrics.sparsity.l0']).toBe(12.5);
    expect(r.weights.per_feature!.decoder_norm).toHaveLength(32);
    const density = (await loadSae(dir)).sparsity!;
    expect(r.sparsity!.features_below_1e_5).toBe(density.filter((v) => v < -5).length);
    expect(r.sparsity!.mean).toBeCloseTo(density.reduce((a, b) => a + b, 0) / 32, 5);
    expect(await readFile(path.join(outcome!.runDir, 'run.log'), 'utf8')).toMatch(/eval\.json: l0 12\.5000/);

    // An eval.json of several SAEs one level up, keyed by folder name.
    const parent = path.join(tmp, 'evals');
    await cp(CASES.sparsify, path.join(parent, 'layers.6'), { recursive: true });
    await writeFile(
      path.join(parent, 'eval.json'),
      JSON.stringify({ 'layers.6': { l0: 4 }, 'layers.7': { l0: 5 } }),
    );
    const o2 = await run('pipelines/inspect-sae.ts', ['--sae', path.join(parent, 'layers.6')]);
    expect((o2!.result as Report).eval!.headline).toEqual({ l0: 4 });

    await writeFile(path.join(dir, 'eval.json'), '{ broken');
    await expect(run('pipelines/inspect-sae.ts', ['--sae', dir])).rejects.toThrow(/eval\.json: invalid JSON/);
  });
});
