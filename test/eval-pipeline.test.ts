/**
 * pipelines/eval-sae.ts end to end on the tiny fixture model, with SAE folders written by the trainer: a
 * small sweep on one layer, an SAE on another layer and a transcoder, plus the trainer's metrics.jsonl.
 */
import { existsSync, readFileSync } from 'node:fs';
import { EventEmitter } from 'node:events';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadTfjsModel } from '../src/model/index.js';
import { selectBackend } from '../src/pipeline/backend.js';
import { parseCliArgs } from '../src/pipeline/cli-args.js';
import { UserError } from '../src/pipeline/errors.js';
import { MetricsWriter } from '../src/pipeline/metrics.js';
import { runPipeline, type RunnerIo } from '../src/pipeline/runner.js';
import { validateReportData } from '../src/report/index.js';
import { SaeTrainer } from '../src/sae/index.js';
import { randomWindows, tempDir, tokenJsonl } from './eval-helpers.js';
import { MODEL_F32 } from './gpt2-fixture.js';

const SEQ = 16;
const L0_HOOK = 'blocks.0.hook_resid_post';
const L1_HOOK = 'blocks.1.hook_resid_pre';
const TC_IN = 'blocks.1.ln2.hook_normalized';
const TC_OUT = 'blocks.1.hook_mlp_out';

function io(): RunnerIo {
  return {
    stdout: () => undefined,
    signals: new EventEmitter() as unknown as RunnerIo['signals'],
    isTTY: false,
    cwd: process.cwd(),
  };
}

let trainRun: string;
let dataset: string;

/** Trains four SAEs for a few steps on fixture activations and saves them as a training run would. */
beforeAll(async () => {
  await selectBackend('wasm');
  const model = await loadTfjsModel(MODEL_F32);
  trainRun = tempDir('eval-train');
  const rows = 8 * SEQ;
  const base = { train_batch_size_tokens: rows, training_tokens: rows * 6, lr: 3e-3, d_in: 64 };
  const trainer = SaeTrainer.create([
    {
      name: 'std-sparse',
      architecture: 'standard',
      hook_name: L0_HOOK,
      d_sae: 96,
      l1_coefficient: 2,
      ...base,
    },
    {
      name: 'std-dense',
      architecture: 'standard',
      hook_name: L0_HOOK,
      d_sae: 96,
      l1_coefficient: 0.01,
      ...base,
    },
    { name: 'topk', architecture: 'topk', hook_name: L1_HOOK, d_sae: 96, k: 6, ...base },
    {
      name: 'tc',
      architecture: 'standard',
      hook_name: TC_IN,
      hook_name_out: TC_OUT,
      d_out: 64,
      d_sae: 96,
      l1_coefficient: 0.1,
      ...base,
    },
  ]);
  const metrics = new MetricsWriter(path.join(trainRun, 'metrics.jsonl'));
  for (let step = 0; step < 6; step++) {
    const batch = randomWindows(8, SEQ, 100 + step);
    const run = await model.runWithHooks(
      { data: batch.tokens, shape: [8, SEQ] },
      { hooks: [L0_HOOK, L1_HOOK, TC_IN, TC_OUT] },
    );
    const activations = Object.fromEntries([...run.activations].map(([h, a]) => [h, a.data]));
    for (const m of (await trainer.step({ rows, activations })).saes) metrics.write('train', { ...m });
  }
  await trainer.saveCheckpoint(path.join(trainRun, 'saes'), { trainerState: false });
  trainer.dispose();
  model.dispose();
  // Held-out tokens: windows the SAEs never saw.
  dataset = tokenJsonl(randomWindows(12, SEQ, 999));
});

const evalArgs = (out: string, extra: string[] = []) =>
  parseCliArgs([
    'pipelines/eval-sae.ts',
    ...['--sae', trainRun, '--model', MODEL_F32, '--dataset', dataset],
    ...['--context_size', String(SEQ), '--batch_size', '3', '--n_eval_tokens', String(10 * SEQ)],
    // The fixture's vocabulary (1000) has no <|endoftext|>: no BOS, one document per window.
    ...['--no-prepend_bos', '--disable_concat_sequences'],
    ...['--n_dashboard_features', '3', '--backend', 'wasm', '--out', out, ...extra],
  ]);

describe('pipelines/eval-sae.ts', () => {
  it('writes eval.json per SAE, report-data.json and the report', async () => {
    const out = path.join(tempDir('eval-run'), 'run');
    const outcome = await runPipeline(evalArgs(out, ['--target_l0', '0']), io());
    expect(outcome?.status).toBe('completed');

    const names = ['std-dense', 'std-sparse', 'tc', 'topk'];
    for (const name of names) {
      const e = JSON.parse(readFileSync(path.join(out, name, 'eval.json'), 'utf8'));
      expect(e.sae).toBe(name);
      expect(e.n_eval_tokens).toBe(10 * SEQ);
      expect(e.exclude_special_tokens).toBe(true);
      for (const key of [
        'mse',
        'explained_variance',
        'cossim',
        'l2_ratio',
        'relative_reconstruction_bias',
        'l0',
        'l1',
        'ce_loss_score',
        'ce_loss_with_sae',
        'ce_loss_without_sae',
        'ce_loss_with_ablation',
        'kl_div_score',
        'kl_div_with_sae',
        'kl_div_with_ablation',
        'dead_features',
        'alive_features',
      ]) {
        expect(typeof e.metrics[key], `${name}: ${key}`).toBe('number');
      }
      expect(e.metrics.dead_features + e.metrics.alive_features).toBe(96);
      expect(e.feature_metrics.feature_density).toHaveLength(96);
      expect(e.density_histogram.counts.reduce((a: number, b: number) => a + b, 0)).toBe(96);
      expect(e.weight_stats.decoder_norm.max).toBeGreaterThan(0);
    }
    const tc = JSON.parse(readFileSync(path.join(out, 'tc', 'eval.json'), 'utf8'));
    expect(tc.hook_name_out).toBe(TC_OUT);
    expect(tc.d_out).toBe(64);
    const topk = JSON.parse(readFileSync(path.join(out, 'topk', 'eval.json'), 'utf8'));
    expect(topk.metrics.l0).toBeLessThanOrEqual(6);

    const data = validateReportData(
      JSON.parse(readFileSync(path.join(out, 'report-data.json'), 'utf8')),
      'report-data.json',
    );
    expect(data.run.n_eval_tokens).toBe(10 * SEQ);
    expect(data.saes.map((s) => s.name)).toEqual(names);
    const byName = new Map(data.saes.map((s) => [s.name, s]));
    expect(byName.get('topk')!.layer).toBe(1);
    expect(byName.get('std-dense')!.hook_name).toBe(L0_HOOK);
    // Trained here: the curve comes from the training run's metrics.jsonl, one point per step.
    expect(byName.get('std-sparse')!.training_curve.map((p) => p.step)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(byName.get('std-sparse')!.weight_stats.decoder_norm_mean).toBeGreaterThan(0);
    expect(byName.get('topk')!.l0_histogram.counts.length).toBeGreaterThan(0);
    // The sweep: both layer-0 SAEs compete; with target_l0 0 the lowest-L0 SAE (always on the frontier) wins.
    const layer0 = data.saes.filter((s) => s.layer === 0);
    const lowest = layer0.reduce((a, b) => (a.metrics.l0! <= b.metrics.l0! ? a : b));
    expect(data.pareto.canonical['0']).toBe(lowest.name);
    expect(data.pareto.ce).toContain(lowest.name);
    expect(Object.keys(data.pareto.canonical).sort()).toEqual(['0', '1']);
    expect(data.pareto.rule).toContain('target_l0 = 0');
    // Dashboards: three features per SAE, contexts as token strings with activations.
    expect(data.dashboards.filter((d) => d.sae === 'topk')).toHaveLength(3);
    const d = data.dashboards.find((x) => x.sae === 'std-dense')!;
    expect(d.top_contexts.length).toBeGreaterThan(0);
    expect(typeof d.top_contexts[0]!.tokens[0]).toBe('string');
    expect(d.top_contexts[0]!.activations[d.top_contexts[0]!.max_index]).toBeCloseTo(d.max_activation, 5);
    expect(d.promoted).toHaveLength(10);
    expect(d.suppressed).toHaveLength(10);
    expect(d.promoted[0]!.value).toBeGreaterThanOrEqual(d.promoted[9]!.value);
    expect(d.density).toBeGreaterThan(0);

    expect(existsSync(path.join(out, 'report.html'))).toBe(true);
    expect(existsSync(path.join(out, 'report.md'))).toBe(true);
    const result = JSON.parse(readFileSync(path.join(out, 'result.json'), 'utf8'));
    expect(result.report).toBe(path.join(out, 'report.html'));
  });

  it('a comma-separated list of folders, no dashboards; bad input is a UserError', async () => {
    const out = path.join(tempDir('eval-run'), 'run');
    const list = ['topk', 'tc'].map((n) => path.join(trainRun, 'saes', n)).join(',');
    const args = evalArgs(out, ['--n_dashboard_features', '0']);
    args.overrides = args.overrides.map(([k, v]) => (k === 'sae' ? [k, list] : [k, v]));
    expect((await runPipeline(args, io()))?.status).toBe('completed');
    const data = JSON.parse(readFileSync(path.join(out, 'report-data.json'), 'utf8'));
    expect(data.saes.map((s: { name: string }) => s.name)).toEqual(['topk', 'tc']);
    expect(data.dashboards).toEqual([]);

    const missing = evalArgs(path.join(tempDir('eval-run'), 'run'));
    missing.overrides = missing.overrides.map(([k, v]) =>
      k === 'sae' ? [k, path.join(trainRun, 'nope')] : [k, v],
    );
    await expect(runPipeline(missing, io())).rejects.toThrow(UserError);
  });
});
