/**
 * The evaluator through the tiny fixture model: SAEs that reproduce their input exactly score 1, SAEs that
 * output zeros score 0, a transcoder's metrics match a computation done by hand with the model, and bad
 * SAE folders are UserErrors naming the SAE and the field.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DashboardCollector,
  ReconstructionAccumulator,
  SaeEvaluator,
  findSaeFolders,
  loadEvalTargets,
  selectDashboardFeatures,
} from '../src/eval/index.js';
import type { EvalTarget, SaeEvalResult } from '../src/eval/index.js';
import { loadTfjsModel, type TfjsRunner } from '../src/model/index.js';
import { selectBackend } from '../src/pipeline/backend.js';
import { UserError } from '../src/pipeline/errors.js';
import { Sae } from '../src/sae/index.js';
import type { TokenBatch } from '../src/stages/text/types.js';
import {
  randomWindows,
  sliceWindows,
  tempDir,
  writeIdentitySae,
  writeTranscoder,
  writeZeroSae,
} from './eval-helpers.js';
import { loadReference, MODEL_F32, ref } from './gpt2-fixture.js';

let model: TfjsRunner;
let dir: string;
const loaded: EvalTarget[] = [];

beforeAll(async () => {
  await selectBackend('wasm');
  model = await loadTfjsModel(MODEL_F32);
  dir = tempDir('eval-model');
});
afterAll(() => {
  for (const t of loaded) t.sae.dispose();
  model.dispose();
});

async function targets(...folders: string[]): Promise<EvalTarget[]> {
  const t = await loadEvalTargets(findSaeFolders(folders), { config: model.config, name: 'gpt2-tiny' });
  loaded.push(...t);
  return t;
}

async function evaluate(
  ts: EvalTarget[],
  batches: TokenBatch[],
  exclude: number[] = [],
): Promise<SaeEvalResult[]> {
  const evaluator = new SaeEvaluator(model, ts, { excludeTokenIds: exclude });
  for (const b of batches) await evaluator.evaluateBatch(b);
  return evaluator.results();
}

/** The reference tokens [3, 16] as a text-stage token batch. */
async function referenceBatch(): Promise<TokenBatch> {
  const r = await loadReference();
  return { tokens: r.tokens.data, batchSize: 3, contextSize: 16, seqIds: Int32Array.from([0, 1, 2]) };
}

describe('SaeEvaluator on the fixture model', () => {
  it('an SAE that reproduces its input exactly: CE loss score 1, KL score 1, perfect reconstruction', async () => {
    const hook = 'blocks.0.hook_resid_mid';
    const [identity] = await targets(await writeIdentitySae(path.join(dir, 'identity'), hook));
    const batch = await referenceBatch();
    const [r] = await evaluate([identity!], [batch]);
    const m = r!.metrics;
    expect(m.ce_loss_score).toBe(1);
    expect(m.kl_div_score).toBe(1);
    expect(m.kl_div_with_sae).toBe(0);
    expect(m.ce_loss_with_sae).toBe(m.ce_loss_without_sae);
    expect(m.mse).toBe(0);
    expect(m.explained_variance).toBe(1);
    expect(m.cossim).toBeCloseTo(1, 6);
    expect(m.l2_ratio).toBeCloseTo(1, 6);
    expect(m.relative_reconstruction_bias).toBeCloseTo(1, 6);
    expect(m.n_tokens).toBe(48);

    // The clean CE is the mean of the fixture's reference next-token losses (numpy, float64) over all 3 x 15.
    const reference = await loadReference();
    const losses = ref(reference, 'loss_per_token').data;
    expect(m.ce_loss_without_sae).toBeCloseTo(losses.reduce((a, b) => a + b, 0) / losses.length, 4);
    // (The fixture is a random model: ablation changes its loss a lot, in either direction.)
    expect(Math.abs(m.ce_loss_with_ablation! - m.ce_loss_without_sae!)).toBeGreaterThan(0.01);
    expect(m.kl_div_with_ablation!).toBeGreaterThan(0.01);

    // Each coordinate fires exactly one of its two features: L0 = the number of non-zero coordinates.
    const x = ref(reference, hook).data;
    let nonzero = 0;
    const positive = new Set<number>();
    const negative = new Set<number>();
    for (let i = 0; i < x.length; i++) {
      if (x[i] !== 0) nonzero++;
      if (x[i]! > 0) positive.add(i % 64);
      if (x[i]! < 0) negative.add(i % 64);
    }
    expect(m.l0).toBeCloseTo(nonzero / 48, 9);
    expect(m.l1).toBeCloseTo(x.reduce((a, v) => a + Math.abs(v), 0) / 48, 3);
    expect(m.dead_features).toBe(128 - positive.size - negative.size);
  });

  it('an SAE that outputs zeros: CE loss score 0 and KL score 0 (it is zero ablation)', async () => {
    const hook = 'blocks.1.hook_resid_pre';
    const [zero] = await targets(await writeZeroSae(path.join(dir, 'zero'), hook));
    const batch = await referenceBatch();
    const [r] = await evaluate([zero!], [batch]);
    const m = r!.metrics;
    expect(m.ce_loss_score).toBeCloseTo(0, 12);
    expect(m.kl_div_score).toBeCloseTo(0, 12);
    expect(m.ce_loss_with_sae).toBeCloseTo(m.ce_loss_with_ablation!, 12);
    // x̂ = 0: the MSE is E‖x‖² and the explained variance 1 - E‖x‖² / Var(x).
    const x = ref(await loadReference(), hook).data;
    const acc = new ReconstructionAccumulator(64);
    acc.add(x, new Float32Array(x.length), 48);
    expect(m.mse).toBeCloseTo(acc.result().mse!, 3);
    expect(m.explained_variance).toBeCloseTo(acc.result().explained_variance!, 5);
    expect(m.cossim).toBe(0);
  });

  it('hook_z SAEs (heads flattened, as SAELens) and several SAEs in one pass', async () => {
    const [z, identity, zero] = await targets(
      await writeIdentitySae(path.join(dir, 'identity-z'), 'blocks.1.attn.hook_z'),
      path.join(dir, 'identity'),
      path.join(dir, 'zero'),
    );
    const batches = [sliceWindows(await referenceBatch(), 0, 2), sliceWindows(await referenceBatch(), 2, 1)];
    const results = await evaluate([z!, identity!, zero!], batches);
    expect(results.map((r) => r.target.name)).toEqual(['identity-z', 'identity', 'zero']);
    expect(results[0]!.metrics.ce_loss_score).toBe(1);
    expect(results[0]!.metrics.mse).toBe(0);
    expect(results[1]!.metrics.ce_loss_score).toBe(1);
    expect(results[2]!.metrics.ce_loss_score).toBeCloseTo(0, 12);
    // Batching does not change the results (the single-batch run above gave these).
    const [alone] = await evaluate([identity!], [await referenceBatch()]);
    expect(results[1]!.metrics.l0).toBe(alone!.metrics.l0);
    expect(results[1]!.metrics.ce_loss_with_ablation).toBeCloseTo(alone!.metrics.ce_loss_with_ablation!, 5);
  });

  it('a transcoder: its output replaces the output hook in the same forward; metrics match a hand computation', async () => {
    const hookIn = 'blocks.0.ln2.hook_normalized';
    const hookOut = 'blocks.0.hook_mlp_out';
    const folder = await writeTranscoder(path.join(dir, 'tc'), hookIn, hookOut, { skip: true });
    const [tc] = await targets(folder);
    const batch = randomWindows(4, 16, 11);
    const [r] = await evaluate([tc!], [sliceWindows(batch, 0, 2), sliceWindows(batch, 2, 2)]);

    // By hand: the clean activations, the transcoder's output on the host, and a forward that substitutes it.
    const tokens = { data: batch.tokens, shape: [4, 16] as const };
    const clean = await model.runWithHooks(tokens, { hooks: [hookIn, hookOut], returnLoss: true });
    const x = clean.activations.get(hookIn)!.data;
    const y = clean.activations.get(hookOut)!.data;
    const sae = await Sae.load(folder);
    const yHat = tf.tidy(() => sae.forward(tf.tensor2d(x, [64, 64])).dataSync() as Float32Array).slice();
    const features = tf.tidy(() => sae.encode(tf.tensor2d(x, [64, 64])).dataSync() as Float32Array).slice();
    sae.dispose();
    const patched = await model.lossPerToken(tokens, {
      interventions: { [hookOut]: () => tf.tensor3d(yHat, [4, 16, 64]) },
    });
    const ablated = await model.lossPerToken(tokens, {
      interventions: { [hookOut]: (a) => tf.zerosLike(a) },
    });
    const mean = (a: Float32Array) => a.reduce((s, v) => s + v, 0) / a.length;
    const acc = new ReconstructionAccumulator(64);
    acc.add(y, yHat, 64);
    let fired = 0;
    for (const v of features) if (v > 0) fired++;

    const m = r!.metrics;
    expect(m.mse).toBeCloseTo(acc.result().mse!, 4);
    expect(m.explained_variance).toBeCloseTo(acc.result().explained_variance!, 4);
    expect(m.cossim).toBeCloseTo(acc.result().cossim!, 5);
    expect(m.l0).toBeCloseTo(fired / 64, 9);
    expect(m.ce_loss_without_sae).toBeCloseTo(mean(clean.lossPerToken!.data), 5);
    expect(m.ce_loss_with_sae).toBeCloseTo(mean(patched.data), 4);
    expect(m.ce_loss_with_ablation).toBeCloseTo(mean(ablated.data), 5);
    expect(m.ce_loss_with_sae).not.toBeCloseTo(m.ce_loss_without_sae!, 3);
  });

  it('a transcoder that outputs zeros scores 0', async () => {
    const [tc] = await targets(
      await writeTranscoder(path.join(dir, 'tc-zero'), 'blocks.1.hook_resid_mid', 'blocks.1.hook_mlp_out', {
        zero: true,
      }),
    );
    const [r] = await evaluate([tc!], [randomWindows(2, 16, 3)]);
    expect(r!.metrics.ce_loss_score).toBeCloseTo(0, 12);
    expect(r!.metrics.kl_div_score).toBeCloseTo(0, 12);
  });

  it('compute_kl false: the same CE metrics, no KL', async () => {
    const [identity, zero] = await targets(path.join(dir, 'identity'), path.join(dir, 'zero'));
    const batch = randomWindows(2, 16, 21);
    const evaluator = new SaeEvaluator(model, [identity!, zero!], { computeKl: false });
    await evaluator.evaluateBatch(batch);
    const without = evaluator.results();
    const withKl = await evaluate([identity!, zero!], [batch]);
    for (let i = 0; i < 2; i++) {
      expect(without[i]!.metrics.kl_div_score).toBeNull();
      expect(without[i]!.metrics.kl_div_with_sae).toBeNull();
      expect(without[i]!.metrics.ce_loss_score).toBe(withKl[i]!.metrics.ce_loss_score);
      expect(without[i]!.metrics.mse).toBe(withKl[i]!.metrics.mse);
    }
  });

  it('excluded tokens are left out of the metrics and keep their activation in the patched forward', async () => {
    const batch = randomWindows(3, 16, 5);
    const special = batch.tokens[0]!; // appears at least once
    const positions = batch.tokens.filter((t) => t === special).length;
    const [zero] = await targets(path.join(dir, 'zero'));
    const [withExclusion] = await evaluate([zero!], [batch], [special]);
    const [plain] = await evaluate([zero!], [batch]);
    expect(withExclusion!.metrics.n_tokens).toBe(48 - positions);
    expect(plain!.metrics.n_tokens).toBe(48);
    // The zero SAE now leaves those positions alone, so it differs from zero ablation.
    expect(withExclusion!.metrics.ce_loss_with_sae).not.toBeCloseTo(
      withExclusion!.metrics.ce_loss_with_ablation!,
      6,
    );
    // Reconstruction metrics are over the kept tokens only.
    const run = await model.runWithHooks(
      { data: batch.tokens, shape: [3, 16] },
      { hooks: ['blocks.1.hook_resid_pre'] },
    );
    const keep = Uint8Array.from(batch.tokens, (t) => (t === special ? 0 : 1));
    const acc = new ReconstructionAccumulator(64);
    const x = run.activations.get('blocks.1.hook_resid_pre')!.data;
    acc.add(x, new Float32Array(x.length), 48, keep);
    expect(withExclusion!.metrics.mse).toBeCloseTo(acc.result().mse!, 3);
  });

  it('dashboard contexts: the windows where a feature fires most, with its activations', async () => {
    const [identity] = await targets(path.join(dir, 'identity'));
    const batch = randomWindows(6, 16, 9);
    const [r] = await evaluate([identity!], [batch]);
    const features = selectDashboardFeatures(r!.sparsity.density, 4, 1);
    expect(features.length).toBe(4);
    const collector = new DashboardCollector(
      model,
      [{ target: identity!, features, maxActivation: r!.sparsity.maxActivation }],
      { layout: { topContexts: 3, before: 2, after: 1, bins: 5 } },
    );
    await collector.addBatch(sliceWindows(batch, 0, 4));
    await collector.addBatch(sliceWindows(batch, 4, 2));
    const [first] = collector.results().get('identity')!;
    expect(first!.feature).toBe(features[0]);
    expect(first!.top_contexts.length).toBe(3);
    const maxima = first!.top_contexts.map((c) => c.activations[c.max_index]!);
    expect(maxima[0]).toBeCloseTo(r!.sparsity.maxActivation[features[0]!]!, 6);
    expect([...maxima].sort((a, b) => b - a)).toEqual(maxima);
    for (const c of first!.top_contexts) {
      expect(c.tokens.length).toBe(c.activations.length);
      expect(c.tokens.length).toBeLessThanOrEqual(4);
      expect(Math.max(...c.activations)).toBe(c.activations[c.max_index]);
    }
    // The histogram counts every firing of the feature on the eval tokens.
    const firings = Math.round(r!.sparsity.density[features[0]!]! * 96);
    expect(first!.histogram.counts.reduce((a, b) => a + b, 0)).toBe(firings);
    expect(first!.histogram.edges.length).toBe(6);
  });
});

describe('bad SAE folders', () => {
  const cfgOf = (folder: string) => JSON.parse(readFileSync(path.join(folder, 'cfg.json'), 'utf8'));
  const rewrite = (folder: string, edit: (c: { metadata: Record<string, unknown> }) => void) => {
    const c = cfgOf(folder);
    edit(c);
    writeFileSync(path.join(folder, 'cfg.json'), JSON.stringify(c));
  };

  it('a missing folder names the --sae entry', () => {
    expect(() => findSaeFolders([path.join(dir, 'nope')])).toThrow(UserError);
    expect(() => findSaeFolders([path.join(dir, 'nope')])).toThrow(/--sae .*nope/);
    expect(() => findSaeFolders([])).toThrow(/--sae/);
  });

  it('a directory of SAE folders counts as all of them', () => {
    const found = findSaeFolders([dir]).map((l) => l.name);
    expect(found).toEqual(expect.arrayContaining(['identity', 'zero', 'tc']));
  });

  it('a hook the model does not have names the SAE and hook_name', async () => {
    const folder = await writeIdentitySae(path.join(dir, 'bad-hook'), 'blocks.0.hook_resid_mid');
    rewrite(folder, (c) => (c.metadata.hook_name = 'blocks.5.hook_resid_pre'));
    await expect(targets(folder)).rejects.toThrow(UserError);
    await expect(targets(folder)).rejects.toThrow(/SAE 'bad-hook'.*hook_name 'blocks\.5\.hook_resid_pre'/);
  });

  it('d_in not matching the hook width names the SAE and d_in', async () => {
    const folder = await writeIdentitySae(path.join(dir, 'bad-width'), 'blocks.0.mlp.hook_post');
    await expect(targets(folder)).rejects.toThrow(
      /SAE 'bad-width'.*d_in is 64 but hook_name 'blocks\.0\.mlp\.hook_post' has width 256/,
    );
  });

  it('a transcoder: d_out must match the output hook, which must come after the input hook', async () => {
    const wide = await writeTranscoder(
      path.join(dir, 'bad-dout'),
      'blocks.0.hook_resid_pre',
      'blocks.0.mlp.hook_post',
    );
    await expect(targets(wide)).rejects.toThrow(/SAE 'bad-dout'.*d_out is 64 but hook_name_out/);
    const backwards = await writeTranscoder(
      path.join(dir, 'bad-order'),
      'blocks.1.hook_resid_pre',
      'blocks.0.hook_mlp_out',
    );
    await expect(targets(backwards)).rejects.toThrow(/SAE 'bad-order'.*hook_name_out .* must come after/);
    rewrite(backwards, (c) => delete c.metadata.hook_name_out);
    await expect(targets(backwards)).rejects.toThrow(/SAE 'bad-order'.*hook_name_out is missing/);
  });
});
