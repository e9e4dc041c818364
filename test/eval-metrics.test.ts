import { describe, expect, it } from 'vitest';
import {
  DownstreamAccumulator,
  ReconstructionAccumulator,
  ReferenceDistribution,
  SparsityAccumulator,
  flatWeightStatistics,
  integerHistogram,
  logitEffects,
  requestedDashboardFeatures,
  selectDashboardFeatures,
  tokenString,
  unembedInput,
  weightStatistics,
} from '../src/eval/index.js';
import { readTrainingCurve, resolveWindowing, thinCurve } from '../src/eval/index.js';
import type { EvalTarget, UnembedWeights } from '../src/eval/index.js';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { tempDir } from './eval-helpers.js';
import { parseHookName, parseModelConfig } from '../src/model/index.js';
import { UserError } from '../src/pipeline/errors.js';

const f32 = (xs: number[]) => Float32Array.from(xs);

describe('ReconstructionAccumulator', () => {
  // x = [[1, 0], [0, 2]], x̂ = [[1, 1], [0, 1]]:
  //   squared errors 1 and 1; ‖x‖² 1, 4; ‖x̂‖² 2, 1; ⟨x, x̂⟩ 1, 2; cos 1/√2, 1; ‖x̂‖/‖x‖ √2, 1/2.
  //   E x = [0.5, 1], ‖E x‖² = 1.25, E‖x‖² = 2.5, so the variance is 1.25 and EV = 1 - 1 / 1.25 = 0.2.
  const x = f32([1, 0, 0, 2]);
  const xHat = f32([1, 1, 0, 1]);

  it('computes each metric as defined, by hand', () => {
    const acc = new ReconstructionAccumulator(2);
    acc.add(x, xHat, 2);
    const m = acc.result();
    expect(m.mse).toBeCloseTo(1, 12);
    expect(m.explained_variance).toBeCloseTo(0.2, 12);
    expect(m.cossim).toBeCloseTo((Math.SQRT1_2 + 1) / 2, 12);
    expect(m.l2_ratio).toBeCloseTo((Math.SQRT2 + 0.5) / 2, 12);
    expect(m.relative_reconstruction_bias).toBeCloseTo(1.5 / 1.5, 12);
    expect(m.l2_norm_in).toBeCloseTo(1.5, 12);
    expect(m.l2_norm_out).toBeCloseTo((Math.SQRT2 + 1) / 2, 12);
    expect(acc.count).toBe(2);
  });

  it('gives the same numbers whatever the batching, and skips masked tokens', () => {
    const acc = new ReconstructionAccumulator(2);
    // Token 0 alone, then token 1 with a masked garbage token in front of it.
    acc.add(x.subarray(0, 2), xHat.subarray(0, 2), 1);
    acc.add(f32([100, -100, 0, 2]), f32([0, 0, 0, 1]), 2, Uint8Array.from([0, 1]));
    const m = acc.result();
    expect(m.mse).toBeCloseTo(1, 12);
    expect(m.explained_variance).toBeCloseTo(0.2, 12);
    expect(acc.count).toBe(2);
  });

  it('perfect, zero and scaled reconstructions', () => {
    const perfect = new ReconstructionAccumulator(2);
    perfect.add(x, x, 2);
    expect(perfect.result()).toMatchObject({ mse: 0, explained_variance: 1, cossim: 1, l2_ratio: 1 });
    expect(perfect.result().relative_reconstruction_bias).toBe(1);

    const zero = new ReconstructionAccumulator(2);
    zero.add(x, new Float32Array(4), 2);
    const z = zero.result();
    expect(z.mse).toBeCloseTo(2.5, 12); // E‖x‖²
    expect(z.explained_variance).toBeCloseTo(1 - 2.5 / 1.25, 12);
    expect(z.cossim).toBe(0); // no direction: counted as orthogonal
    expect(z.l2_ratio).toBe(0);
    expect(z.relative_reconstruction_bias).toBeNull(); // 0 / 0

    const half = new ReconstructionAccumulator(2);
    half.add(
      x,
      x.map((v) => v / 2),
      2,
    );
    expect(half.result().relative_reconstruction_bias).toBeCloseTo(0.5, 12);
    expect(half.result().l2_ratio).toBeCloseTo(0.5, 12);
    expect(half.result().cossim).toBeCloseTo(1, 12);
  });

  it('uses SAELens’s guard for near-zero inputs in the l2 ratio', () => {
    const acc = new ReconstructionAccumulator(1);
    acc.add(f32([0]), f32([3]), 1);
    expect(acc.result().l2_ratio).toBe(3);
    expect(acc.result().explained_variance).toBeNull(); // no variance
  });

  it('nothing accumulated gives nulls; a shape mismatch throws', () => {
    expect(new ReconstructionAccumulator(3).result().mse).toBeNull();
    expect(() => new ReconstructionAccumulator(2).add(f32([1, 2, 3]), f32([1, 2, 3]), 2)).toThrow(RangeError);
  });
});

describe('SparsityAccumulator', () => {
  // d_sae 4. Kept tokens: [0, 2, 3, 0] (L0 2, L1 5), [1, 0, 0, 0] (1, 1), [0, 0, 0, 0] (0, 0); feature 3 never
  // fires on them. A masked token fires everything and must change nothing.
  const f = f32([0, 2, 3, 0, 5, 5, 5, 5, 1, 0, 0, 0, 0, 0, 0, 0]);
  const keep = Uint8Array.from([1, 0, 1, 1]);

  it('L0, L1, densities, dead features and the L0 distribution, by hand', () => {
    const acc = new SparsityAccumulator(4);
    acc.add(f, 4, keep);
    const r = acc.result();
    expect(r.tokens).toBe(3);
    expect(r.metrics.l0).toBeCloseTo(1, 12);
    expect(r.metrics.l1).toBeCloseTo(2, 12);
    expect(r.metrics.l0_std).toBeCloseTo(Math.sqrt(2 / 3), 12);
    expect(r.metrics.l0_median).toBe(1);
    expect(r.metrics.dead_features).toBe(1);
    expect(r.metrics.alive_features).toBe(3);
    expect(Array.from(r.density)).toEqual([1 / 3, 1 / 3, 1 / 3, 0]);
    expect(Array.from(r.maxActivation)).toEqual([1, 2, 3, 0]);
    const log = Math.log10(1 / 3 + 1e-10);
    expect(r.metrics.mean_log10_feature_density).toBeCloseTo((3 * log + -10) / 4, 6);
    expect(r.l0Histogram).toEqual({ edges: [0, 1, 2, 3], counts: [1, 1, 1] });
    // log10(1/3) ≈ -0.477 falls in the last 0.5-wide bin [-0.5, 0); a dead feature in the first.
    expect(r.densityHistogram.counts[0]).toBe(1);
    expect(r.densityHistogram.counts[r.densityHistogram.counts.length - 1]).toBe(3);
  });

  it('is the same whatever the batching', () => {
    const acc = new SparsityAccumulator(4);
    acc.add(f.subarray(0, 8), 2, keep.subarray(0, 2));
    acc.add(f.subarray(8), 2);
    expect(acc.result().metrics).toEqual(
      (() => {
        const one = new SparsityAccumulator(4);
        one.add(f, 4, keep);
        return one.result().metrics;
      })(),
    );
  });
});

describe('integerHistogram', () => {
  it('bins exact counts into at most maxBins bins of equal integer width', () => {
    const counts = new Float64Array(101);
    counts[0] = 2;
    counts[99] = 1;
    counts[100] = 3;
    const h = integerHistogram(counts, 10);
    expect(h.edges[0]).toBe(0);
    expect(h.edges[h.edges.length - 1]).toBeGreaterThan(100);
    expect(h.counts.length).toBeLessThanOrEqual(10);
    expect(h.counts.reduce((a, b) => a + b, 0)).toBe(6);
    expect(h.counts[0]).toBe(2);
    expect(h.counts[h.counts.length - 1]).toBe(4);
    expect(integerHistogram(new Float64Array(5))).toEqual({ edges: [], counts: [] });
  });
});

describe('DownstreamAccumulator and ReferenceDistribution', () => {
  it('CE loss score and KL score by hand, with masked positions left out', () => {
    const acc = new DownstreamAccumulator();
    // Means over kept positions: clean 1.5, with SAE 2, ablated 3.5 -> (3.5 - 2) / (3.5 - 1.5) = 0.75.
    acc.addCe([1, 99], [1.5, 99], [3, 99], Uint8Array.from([1, 0]));
    acc.addCe([2], [2.5], [4]);
    acc.addKl([0.1, 0.3, 7], [1, 1, 7], Uint8Array.from([1, 1, 0]));
    const m = acc.result();
    expect(m.ce_loss_without_sae).toBeCloseTo(1.5, 12);
    expect(m.ce_loss_with_sae).toBeCloseTo(2, 12);
    expect(m.ce_loss_with_ablation).toBeCloseTo(3.5, 12);
    expect(m.ce_loss_score).toBeCloseTo(0.75, 12);
    expect(m.kl_div_with_sae).toBeCloseTo(0.2, 12);
    expect(m.kl_div_with_ablation).toBeCloseTo(1, 12);
    expect(m.kl_div_score).toBeCloseTo(0.8, 12);
  });

  it('undefined scores are null', () => {
    const acc = new DownstreamAccumulator();
    acc.addCe([1], [1], [1]);
    acc.addKl([0], [0]);
    expect(acc.result().ce_loss_score).toBeNull();
    expect(acc.result().kl_div_score).toBeNull();
    expect(new DownstreamAccumulator().result().ce_loss_with_sae).toBeNull();
  });

  it('KL of the clean distribution against the patched one', () => {
    // p = [1/2, 1/2], q = [1/4, 3/4]: KL = ½ ln 2 + ½ ln(2/3) = ½ ln(4/3). Logits are shift-invariant.
    const ref = new ReferenceDistribution(f32([3, 3, 0, 0]), 2, 2);
    const kl = ref.klAgainst(f32([Math.log(0.25) + 5, Math.log(0.75) + 5, 0, 0]));
    expect(kl[0]).toBeCloseTo(0.5 * Math.log(4 / 3), 6);
    expect(kl[1]).toBe(0);
    // And the other way round is a different number (KL is not symmetric).
    const back = new ReferenceDistribution(f32([Math.log(0.25), Math.log(0.75)]), 1, 2).klAgainst(
      f32([0, 0]),
    );
    expect(back[0]).toBeCloseTo(0.25 * Math.log(0.5) + 0.75 * Math.log(1.5), 6);
  });
});

describe('weightStatistics', () => {
  // W_enc [d_in 2, d_sae 2] columns (1, 0) and (0, 2); W_dec rows (1, 0) and (1, 1).
  const weights = {
    W_enc: { shape: [2, 2], data: f32([1, 0, 0, 2]) },
    W_dec: { shape: [2, 2], data: f32([1, 0, 1, 1]) },
    b_enc: { shape: [2], data: f32([-1, 0]) },
    b_dec: { shape: [2], data: f32([3, 4]) },
  };

  it('decoder and encoder norms, encoder-decoder cosine, by hand', () => {
    const s = weightStatistics(weights);
    expect(Array.from(s.per_feature.decoder_norm)).toEqual([1, Math.SQRT2]);
    expect(Array.from(s.per_feature.encoder_norm)).toEqual([1, 2]);
    expect(s.per_feature.encoder_decoder_cosine![0]).toBeCloseTo(1, 12);
    expect(s.per_feature.encoder_decoder_cosine![1]).toBeCloseTo(Math.SQRT1_2, 12);
    expect(s.decoder_norm).toMatchObject({ min: 1, max: Math.SQRT2, mean: (1 + Math.SQRT2) / 2 });
    expect(s.decoder_norm.max_deviation_from_1).toBeCloseTo(Math.SQRT2 - 1, 12);
    expect(s.encoder_norm).toMatchObject({ min: 1, max: 2, mean: 1.5, median: 1.5 });
    expect(s.b_dec_norm).toBeCloseTo(5, 12);
    expect(s.b_enc_mean).toBeCloseTo(-0.5, 12);
    const flat = flatWeightStatistics(s);
    expect(flat.decoder_norm_max).toBeCloseTo(Math.SQRT2, 6);
    expect(flat.encoder_decoder_cosine_min).toBeCloseTo(Math.SQRT1_2, 6);
    expect(Object.values(flat).every((v) => typeof v === 'number')).toBe(true);
  });

  it('accepts a folder-like object; no cosine for a transcoder whose sides differ; bad shapes are UserErrors', () => {
    const tc = weightStatistics({
      tensors: {
        W_enc: { shape: [2, 1], data: f32([3, 4]) },
        W_dec: { shape: [1, 3], data: f32([0, 0, 2]) },
      },
    });
    expect(tc.encoder_decoder_cosine).toBeNull();
    expect(tc.encoder_norm.mean).toBe(5);
    expect(tc.d_out).toBe(3);
    expect(() =>
      weightStatistics({ W_enc: weights.W_enc, W_dec: { shape: [3, 2], data: new Float32Array(6) } }),
    ).toThrow(UserError);
  });

  it('a folder that does not exist is a UserError', async () => {
    await expect(weightStatistics('/nonexistent/sae')).rejects.toThrow(UserError);
  });
});

describe('selectDashboardFeatures', () => {
  const density = [0.5, 0, 0.2, 0.2, 0.1, 0.05, 0.3];

  it('spreads the features over the density range, seeded, densest first', () => {
    // 1,000 alive features with densities from 1e-6 to 0.5, evenly in log10; 0 never fires.
    const wide = Float64Array.from({ length: 1001 }, (_, j) =>
      j === 0 ? 0 : 0.5 * 10 ** (-(5.7 * (j - 1)) / 999),
    );
    const chosen = selectDashboardFeatures(wide, 8, 1);
    expect(chosen).toHaveLength(8);
    expect(chosen).not.toContain(0);
    const logs = chosen.map((j) => Math.log10(wide[j]!));
    expect(logs).toEqual([...logs].sort((a, b) => b - a));
    // One feature from each eighth of the range: the rarest chosen is below 1e-5, the densest above 0.1.
    expect(Math.min(...logs)).toBeLessThan(-5);
    expect(Math.max(...logs)).toBeGreaterThan(-1);
    for (let b = 0; b < 8; b++) {
      const top = Math.log10(0.5) - (5.7 * b) / 8;
      expect(logs.filter((l) => l <= top + 1e-9 && l > top - 5.7 / 8 - 1e-9)).toHaveLength(1);
    }
    // The old rule took the densest: 8 of the 8 densest features would all be above 0.45.
    expect(chosen.filter((j) => wide[j]! > 0.45).length).toBeLessThanOrEqual(1);
    expect(selectDashboardFeatures(wide, 8, 1)).toEqual(chosen);
    const draws = new Set(Array.from({ length: 20 }, (_, s) => selectDashboardFeatures(wide, 8, s).join()));
    expect(draws.size).toBeGreaterThan(1);
  });

  it('all alive features when there are no more than asked for; none when none fired', () => {
    expect(selectDashboardFeatures(density, 50, 3)).toEqual([0, 6, 2, 3, 4, 5]);
    expect(selectDashboardFeatures([0, 0], 4, 1)).toEqual([]);
    expect(selectDashboardFeatures(density, 0, 1)).toEqual([]);
  });

  it('takes feature ids by name, within each SAE', () => {
    expect(requestedDashboardFeatures([3, 17, 3], 64, 'sae')).toEqual([3, 17]);
    expect(() => requestedDashboardFeatures([3, 64], 64, 'topk-k8')).toThrow(
      '--features 64: SAE topk-k8 has features 0..63',
    );
  });
});

describe('logit effects', () => {
  const config = parseModelConfig(
    { model_type: 'gpt2', n_layer: 1, n_head: 1, n_embd: 2, n_positions: 4, vocab_size: 5 },
    'config.json',
  );
  const unembed = (ln: number[]): UnembedWeights => ({
    vocab: 5,
    dModel: 2,
    dMlp: 8,
    unembed: f32([1, 0, 0, 1, -1, 0, 0, -1, 1, 1]),
    lnFinalWeight: f32(ln),
    attnOut: new Map(),
    mlpOut: new Map(),
  });

  it('W_dec[f] · W_U through ln_final, minus the vocabulary mean, by hand', () => {
    const hook = parseHookName(config, 'blocks.0.hook_resid_post');
    // r = [3, 1]: centred [1, -1], scaled by ln_f.weight [2, 1] -> [2, -1]; logits 2, -1, -2, 1, 1; mean 0.2.
    const w = unembed([2, 1]);
    const input = unembedInput(hook, f32([3, 1]), w)!;
    expect(Array.from(input)).toEqual([2, -1]);
    const [e] = logitEffects([input], w, 2);
    expect(e!.promoted.map((p) => p.token)).toEqual([tokenString(0), tokenString(3)]);
    expect(e!.promoted.map((p) => p.value)).toEqual([2 - 0.2, 1 - 0.2].map((v) => expect.closeTo(v, 12)));
    expect(e!.suppressed.map((p) => p.token)).toEqual([tokenString(2), tokenString(1)]);
    expect(e!.suppressed[0]!.value).toBeCloseTo(-2.2, 12);
  });

  it('only hooks that write to the residual stream (or ln_final) have logit effects', () => {
    const w = unembed([1, 1]);
    expect(unembedInput(parseHookName(config, 'blocks.0.mlp.hook_pre'), new Float32Array(8), w)).toBeNull();
    expect(unembedInput(parseHookName(config, 'blocks.0.attn.hook_q'), new Float32Array(2), w)).toBeNull();
    // ln_final output goes straight to W_U, without centring.
    expect(
      Array.from(unembedInput(parseHookName(config, 'ln_final.hook_normalized'), f32([3, 1]), w)!),
    ).toEqual([3, 1]);
  });
});

describe('resolveWindowing', () => {
  const model = parseModelConfig(
    { model_type: 'gpt2', n_layer: 1, n_head: 1, n_embd: 2, n_positions: 64, vocab_size: 5 },
    'config.json',
  );
  const sae = (metadata: Record<string, unknown>) => ({ config: { metadata } }) as unknown as EvalTarget;

  it('explicit options win, then what the SAEs agree on, then min(128, n_positions) with BOS', () => {
    const none = { contextSize: null, prependBos: null };
    expect(
      resolveWindowing({ contextSize: 16, prependBos: false }, [sae({ context_size: 32 })], model),
    ).toEqual({
      contextSize: 16,
      prependBos: false,
    });
    expect(resolveWindowing(none, [sae({ context_size: 32, prepend_bos: false })], model)).toEqual({
      contextSize: 32,
      prependBos: false,
    });
    expect(resolveWindowing(none, [sae({ context_size: 32 }), sae({ context_size: 48 })], model)).toEqual({
      contextSize: 64,
      prependBos: true,
    });
    // A context the model cannot run is ignored when it comes from an SAE, an error when asked for.
    expect(resolveWindowing(none, [sae({ context_size: 1024 })], model).contextSize).toBe(64);
    expect(() => resolveWindowing({ contextSize: 65, prependBos: null }, [], model)).toThrow(UserError);
  });
});

describe('training curves', () => {
  it('reads the train records of one SAE, skipping other events, SAEs and broken lines', async () => {
    const file = path.join(tempDir('eval-curve'), 'metrics.jsonl');
    const rec = (o: Record<string, unknown>) => JSON.stringify(o);
    writeFileSync(
      file,
      [
        rec({ event: 'start' }),
        rec({
          event: 'train',
          sae: 'a',
          step: 0,
          tokens: 8,
          loss: 3,
          l0: 5,
          explained_variance: 0.1,
          dead_features: 0,
          never_fired_features: 12,
        }),
        rec({ event: 'train', sae: 'b', step: 0, tokens: 8, loss: 9 }),
        '{"event": "train", "sae": "a", "st',
        rec({ event: 'train', sae: 'a', step: 1, tokens: 16, loss: 2, l0: 4, explained_variance: null }),
      ].join('\n'),
    );
    expect(await readTrainingCurve(file, 'a')).toEqual([
      {
        step: 0,
        tokens: 8,
        loss: 3,
        l0: 5,
        explained_variance: 0.1,
        dead_features: 0,
        never_fired_features: 12,
      },
      {
        step: 1,
        tokens: 16,
        loss: 2,
        l0: 4,
        explained_variance: null,
        dead_features: null,
        never_fired_features: null,
      },
    ]);
    expect(await readTrainingCurve(file, 'c')).toEqual([]);
  });

  it('thins long curves evenly and keeps the last point', () => {
    const pts = Array.from({ length: 1001 }, (_, i) => i);
    const thin = thinCurve(pts, 100);
    expect(thin.length).toBeLessThanOrEqual(101);
    expect(thin[0]).toBe(0);
    expect(thin[thin.length - 1]).toBe(1000);
    expect(thinCurve([1, 2], 5)).toEqual([1, 2]);
  });
});
