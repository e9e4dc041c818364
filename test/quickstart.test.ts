import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseCliArgs } from '../src/pipeline/cli-args.js';
import { runPipeline } from '../src/pipeline/runner.js';
import { testIo } from './runner-io.js';

describe('pipelines/quickstart.ts', () => {
  it('runs the whole slice offline: embedded corpus and model, a sweep, evaluation, the report and explorers', async () => {
    const out = path.join(mkdtempSync(path.join(tmpdir(), 'saeflow-quickstart-')), 'run');
    const io = testIo();
    // The default run trains 300k tokens per SAE; a small one exercises the same path.
    const outcome = await runPipeline(
      parseCliArgs([
        'pipelines/quickstart.ts',
        ...[
          '--training_tokens',
          '16384',
          '--n_eval_tokens',
          '256',
          '--n_dashboard_features',
          '2',
          '--out',
          out,
        ],
      ]),
      io,
    );
    expect(outcome?.status).toBe('completed');
    const result = outcome?.result as {
      report: string;
      saes: Array<{ name: string; l0: number }>;
      canonical: object;
    };
    expect(result.report).toBe(path.join(out, 'report.html'));
    expect(result.saes.map((s) => s.name).sort()).toEqual(['topk-k16', 'topk-k32', 'topk-k8']);
    expect(result.saes.find((s) => s.name === 'topk-k8')?.l0).toBeLessThanOrEqual(8);
    expect(Object.keys(result.canonical)).toEqual(['2']);
    for (const f of [
      'report.html',
      'report.md',
      'report-data.json',
      'topk-k8/eval.json',
      'saes/topk-k8/cfg.json',
      'explorer/ort-wasm-simd-threaded.wasm',
      'explorer/explorer.js',
      ...['topk-k8', 'topk-k16', 'topk-k32'].flatMap((k) =>
        ['explorer.html', 'explorer.json', 'model.onnx', 'features.json'].map((f) => `explorer/${k}/${f}`),
      ),
    ]) {
      expect(existsSync(path.join(out, f))).toBe(true);
    }
    // Each SAE's section links its explorer (test/explorer-report.test.ts follows such a link in Chromium).
    const html = readFileSync(result.report, 'utf8');
    for (const k of ['topk-k8', 'topk-k16', 'topk-k32']) {
      expect(html).toContain(`<a href="explorer/${k}/explorer.html">Open the live feature explorer</a>`);
    }
    const eval8 = JSON.parse(readFileSync(path.join(out, 'topk-k8', 'eval.json'), 'utf8'));
    expect(eval8.metrics?.ce_loss_score ?? eval8.ce_loss_score).toBeGreaterThan(0);
  });
});
