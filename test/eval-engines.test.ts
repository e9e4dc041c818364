/**
 * The evaluator on its two engines: the onnx engine (SAEs, losses and KL in one onnxruntime graph) gives
 * the metrics of the tfjs engine (JS interventions, KL on the host) for SAEs of several architectures and
 * a transcoder, with excluded tokens; and pipelines/eval-sae.ts passes its `engine` option through.
 */
import { readFileSync } from 'node:fs';
import { EventEmitter } from 'node:events';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { OnnxRunner } from '../src/engine/onnx/onnx-runner.js';
import { ModelEvalEngine, SaeEvaluator, findSaeFolders, loadEvalTargets } from '../src/eval/index.js';
import type { EvalEngine, EvalTarget, SaeEvalResult } from '../src/eval/index.js';
import { Model, TfjsRunner, gpt2Family, loadGpt2Weights, readModelConfig } from '../src/model/index.js';
import { selectBackend } from '../src/pipeline/backend.js';
import { parseCliArgs } from '../src/pipeline/cli-args.js';
import { runPipeline, type RunnerIo } from '../src/pipeline/runner.js';
import { writeSaeFolder } from '../src/sae/saelens-folder.js';
import type { TokenBatch } from '../src/stages/text/types.js';
import { randomWindows, sliceWindows, tempDir, tokenJsonl, writeIdentitySae } from './eval-helpers.js';
import { MODEL_F32 } from './gpt2-fixture.js';
import { randomSae } from './replacement-helpers.js';
import type { RandomSaeOptions } from './replacement-helpers.js';

let tfjsModel: TfjsRunner;
let onnxModel: OnnxRunner;
let onnx: EvalEngine;
let dir: string;
const loaded: EvalTarget[] = [];

beforeAll(async () => {
  await selectBackend('wasm');
  const config = await readModelConfig(MODEL_F32);
  const weights = await loadGpt2Weights(MODEL_F32, config);
  const model = Model.bind(gpt2Family, config, weights);
  tfjsModel = TfjsRunner.create(model);
  onnxModel = new OnnxRunner(model, { threads: 2 });
  onnx = new ModelEvalEngine(onnxModel);
  dir = tempDir('eval-engines');
  await writeRandomSae('standard', { architecture: 'standard', hook: 'blocks.0.hook_resid_post', seed: 1 });
  await writeRandomSae('topk', { architecture: 'topk', hook: 'blocks.1.hook_resid_pre', k: 6, seed: 2 });
  await writeRandomSae('jumprelu', { architecture: 'jumprelu', hook: 'blocks.1.hook_resid_pre', seed: 3 });
  await writeRandomSae('topk-z', { architecture: 'topk', hook: 'blocks.1.attn.hook_z', k: 4, seed: 4 });
  await writeRandomSae('transcoder', {
    architecture: 'skip_transcoder',
    hook: 'blocks.1.ln2.hook_normalized',
    hookOut: 'blocks.1.hook_mlp_out',
    seed: 5,
  });
});
afterAll(async () => {
  for (const t of loaded) t.sae.dispose();
  tfjsModel.dispose();
  await onnx.dispose();
});

async function writeRandomSae(name: string, o: RandomSaeOptions): Promise<string> {
  const sae = randomSae(o);
  const folder = path.join(dir, name);
  await writeSaeFolder(folder, sae.config, { architecture: o.architecture, tensors: { ...sae.tensors } });
  return folder;
}

async function targets(...folders: string[]): Promise<EvalTarget[]> {
  const t = await loadEvalTargets(findSaeFolders(folders), { config: tfjsModel.config, name: 'gpt2-tiny' });
  loaded.push(...t);
  return t;
}

async function evaluate(
  model: TfjsRunner | EvalEngine,
  ts: EvalTarget[],
  batches: TokenBatch[],
  options: { excludeTokenIds?: number[]; computeKl?: boolean } = {},
): Promise<SaeEvalResult[]> {
  const evaluator = new SaeEvaluator(model, ts, options);
  for (const b of batches) await evaluator.evaluateBatch(b);
  return evaluator.results();
}

/** Every number of `got` within `rel` of `want` (relative, with a floor for values near 0). */
function expectClose(got: object, want: object, rel: number, what: string): void {
  expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
  for (const [k, w] of Object.entries(want)) {
    const g = (got as Record<string, unknown>)[k];
    if (typeof w !== 'number') {
      expect(g, `${what} ${k}`).toBe(w);
      continue;
    }
    expect(typeof g, `${what} ${k}`).toBe('number');
    expect(Math.abs((g as number) - w), `${what} ${k}: ${g} vs ${w}`).toBeLessThanOrEqual(
      rel * Math.max(Math.abs(w), 1e-3),
    );
  }
}

describe('SaeEvaluator: onnx engine against tfjs', () => {
  it('standard, topk, jumprelu and hook_z SAEs and a skip transcoder, with an excluded token: the same metrics', async () => {
    const ts = await targets(
      ...['standard', 'topk', 'jumprelu', 'topk-z', 'transcoder'].map((n) => path.join(dir, n)),
    );
    const batch = randomWindows(5, 16, 31);
    const special = batch.tokens[3]!;
    const batches = [sliceWindows(batch, 0, 3), sliceWindows(batch, 3, 2)];
    const options = { excludeTokenIds: [special] };
    const want = await evaluate(tfjsModel, ts, batches, options);
    const got = await evaluate(onnx, ts, batches, options);
    expect(got.map((r) => r.target.name)).toEqual(['standard', 'topk', 'jumprelu', 'topk-z', 'transcoder']);
    for (let i = 0; i < ts.length; i++) {
      const name = ts[i]!.name;
      const [g, w] = [got[i]!, want[i]!];
      expectClose(g.metrics, w.metrics, 1e-4, name);
      expect(g.metrics.n_tokens).toBeLessThan(80);
      // Real SAEs: neither perfect nor useless, so every score is exercised.
      expect(w.metrics.kl_div_with_sae!).toBeGreaterThan(1e-4);
      expect(w.metrics.l0!).toBeGreaterThan(0);
      expect(Array.from(g.sparsity.density)).toEqual(Array.from(w.sparsity.density));
      expect(relMax(g.sparsity.maxActivation, w.sparsity.maxActivation)).toBeLessThan(1e-4);
    }
  });

  it('compute_kl false: the same CE metrics, no KL', async () => {
    const ts = await targets(path.join(dir, 'topk'), path.join(dir, 'transcoder'));
    const batches = [randomWindows(2, 16, 32)];
    const want = await evaluate(tfjsModel, ts, batches, { computeKl: false });
    const got = await evaluate(onnx, ts, batches, { computeKl: false });
    for (let i = 0; i < ts.length; i++) {
      expect(got[i]!.metrics.kl_div_with_sae).toBeNull();
      expect(got[i]!.metrics.kl_div_score).toBeNull();
      expectClose(got[i]!.metrics, want[i]!.metrics, 1e-4, ts[i]!.name);
    }
  });

  it('SAEs that do not fit in one graph beside the model are split over several, with the same results', async () => {
    const ts = await targets(
      path.join(dir, 'standard'),
      path.join(dir, 'topk'),
      path.join(dir, 'transcoder'),
    );
    const batches = [randomWindows(2, 16, 35)];
    const together = await evaluate(onnx, ts, batches);
    // Room for the model and one SAE per graph: three graphs, each with its own clean forward.
    const oneSae = Math.max(
      ...ts.map((t) => Object.values(t.tensors).reduce((n, w) => n + w.data.byteLength, 0)),
    );
    const split = new ModelEvalEngine(onnxModel, { graphWeightLimit: onnxModel.weightBytes + oneSae });
    const calls = vi.spyOn(onnxModel, 'runVariants');
    const apart = await evaluate(split, ts, batches);
    expect(calls).toHaveBeenCalledTimes(3);
    calls.mockRestore();
    for (let i = 0; i < ts.length; i++) expect(apart[i]!.metrics).toEqual(together[i]!.metrics);
  });

  it('an SAE that reproduces its input exactly scores exactly 1 (the patched forward is the clean one)', async () => {
    const [identity] = await targets(
      await writeIdentitySae(path.join(dir, 'identity'), 'blocks.1.hook_resid_mid'),
    );
    const [r] = await evaluate(onnx, [identity!], [randomWindows(3, 16, 33)]);
    expect(r!.metrics.ce_loss_score).toBe(1);
    expect(r!.metrics.kl_div_score).toBe(1);
    expect(r!.metrics.kl_div_with_sae).toBe(0);
    expect(r!.metrics.mse).toBe(0);
  });
});

function relMax(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return scale === 0 ? diff : diff / scale;
}

describe('pipelines/eval-sae.ts --engine', () => {
  it('onnx writes the metrics tfjs writes', async () => {
    const dataset = tokenJsonl(randomWindows(6, 16, 34));
    const saes = [path.join(dir, 'standard'), path.join(dir, 'transcoder')].join(',');
    const io: RunnerIo = {
      stdout: () => undefined,
      signals: new EventEmitter() as unknown as RunnerIo['signals'],
      isTTY: false,
      cwd: process.cwd(),
    };
    const run = async (engine: string) => {
      const out = path.join(tempDir(`eval-engine-${engine}`), 'run');
      const args = parseCliArgs([
        'pipelines/eval-sae.ts',
        ...['--sae', saes, '--model', MODEL_F32, '--dataset', dataset, '--engine', engine],
        ...['--context_size', '16', '--batch_size', '4', '--n_eval_tokens', '96'],
        ...['--no-prepend_bos', '--disable_concat_sequences', '--n_dashboard_features', '2'],
        ...['--backend', 'wasm', '--out', out],
      ]);
      expect((await runPipeline(args, io))?.status).toBe('completed');
      const config = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8'));
      expect(config.engine ?? config.config?.engine).toBe(engine);
      return ['standard', 'transcoder'].map(
        (name) => JSON.parse(readFileSync(path.join(out, name, 'eval.json'), 'utf8')).metrics,
      );
    };
    const want = await run('tfjs');
    const got = await run('onnx');
    for (let i = 0; i < 2; i++) expectClose(got[i], want[i], 1e-4, `eval.json ${i}`);
  });
});
