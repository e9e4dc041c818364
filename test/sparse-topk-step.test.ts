/**
 * The sparse topk step (src/sae/architectures/sparse-topk.ts: decode from gathered decoder rows, gradients
 * as scatter-adds, AuxK over the dead columns) against the dense step on onnxruntime: same initial
 * parameters, same batches, several Adam steps as single steps and as chunks (the ONNX Loop that tracks dead
 * features itself), with features made dead so that AuxK runs; losses, L0, gradient norms, parameters and
 * moments must agree to float32 rounding. (test/onnx-sae-step.test.ts compares the `auto` onnx step, sparse
 * at its small k, with the dense TensorFlow.js one.)
 */
import { describe, expect, it } from 'vitest';
import { buildSaeStepGraph } from '../src/engine/onnx/sae-step-graph.js';
import type { OnnxSaeStep } from '../src/engine/onnx/onnx-sae-step.js';
import { resolveSaeTrainingConfig } from '../src/sae/config.js';
import type { SaeTrainingConfigInput } from '../src/sae/index.js';
import { sparseStepApplies } from '../src/sae/train-step.js';
import { TrainingSae } from '../src/sae/training-sae.js';
import { Mulberry32 } from '../src/util/random.js';

const ROWS = 40;
const D_IN = 16;
const D_SAE = 64;
/**
 * Features 0..DEAD-1 get a bias of -3, below any pre-activation of the others (|x_c·W_enc| < 1 here): they
 * never fire, so AuxK has them. Not far below: the two steps' encoder products round differently (W_enc
 * held in another layout), and AuxK ranks these pre-activations against each other, so a large offset
 * would turn rounding differences into different selections between nearly equal values.
 */
const DEAD = 20;

const ARCHS: Record<string, Partial<SaeTrainingConfigInput>> = {
  topk: { architecture: 'topk', k: 4 },
  batchtopk: { architecture: 'batchtopk', k: 4 },
};

const VARIANTS: Record<string, Partial<SaeTrainingConfigInput>> = {
  'rescaled by decoder norms': {},
  'without decoder-norm rescaling': { rescale_acts_by_decoder_norm: false },
  'b_dec on input, unit-norm decoder, tight clipping': {
    apply_b_dec_to_input: true,
    normalize_sae_decoder: true,
    max_grad_norm: 0.05,
  },
  'transcoder with skip, normalised activations': {
    d_out: 12,
    hook_name_out: 'y',
    skip_connection: true,
    normalize_activations: 'expected_average_only_in',
    n_batches_for_norm_estimate: 1,
  },
};

function maxRelativeError(a: Float32Array, b: Float32Array): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const scale = Math.max(Math.abs(a[i]!), Math.abs(b[i]!), 1e-3);
    worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / scale);
  }
  return worst;
}

describe('the sparse topk step equals the dense step', () => {
  for (const [arch, archCfg] of Object.entries(ARCHS)) {
    for (const [variant, variantCfg] of Object.entries(VARIANTS)) {
      it(`${arch}, ${variant}`, async () => {
        const cfg = resolveSaeTrainingConfig({
          name: arch,
          d_in: D_IN,
          d_sae: D_SAE,
          hook_name: 'x',
          train_batch_size_tokens: ROWS,
          training_tokens: ROWS * 100,
          lr: 0.01,
          lr_warm_up_steps: 2,
          dead_feature_window: 1,
          ...archCfg,
          ...variantCfg,
        });
        const dense = TrainingSae.create(cfg, 'onnx', { topkPath: 'dense' });
        const sparse = TrainingSae.create(cfg, 'onnx', { topkPath: 'sparse' });
        expect((dense.engine as OnnxSaeStep).sparse).toBe(false);
        expect((sparse.engine as OnnxSaeStep).sparse).toBe(true);
        const bEnc = dense.hostParams().b_enc!.data.slice();
        bEnc.fill(-3, 0, DEAD);
        for (const sae of [dense, sparse]) sae.engine.setParam('b_enc', bEnc);
        const rng = new Mulberry32(7);
        const batch = (width: number): Float32Array =>
          Float32Array.from({ length: ROWS * width }, () => rng.next() * 2 - 1);
        const batches = (n: number) =>
          Array.from({ length: n }, () => ({
            x: batch(D_IN),
            y: cfg.d_out === null ? null : batch(cfg.d_out),
            rows: ROWS,
          }));
        let auxSteps = 0;
        try {
          for (const b of batches(dense.pendingNormBatches)) {
            dense.observeNormBatch(b.x, b.y, ROWS);
            sparse.observeNormBatch(b.x, b.y, ROWS);
          }
          // Single steps (AuxK from the host's dead mask), then chunks (dead features tracked in the Loop).
          const plan = [1, 1, 1, 4, 3];
          let step = 0;
          for (const n of plan) {
            const group = batches(n);
            const a = await dense.trainSteps(group);
            const b = await sparse.trainSteps(group);
            for (let i = 0; i < n; i++, step++) {
              const [ma, mb] = [a[i]!, b[i]!];
              expect(Object.keys(mb.losses)).toEqual(Object.keys(ma.losses));
              for (const [name, value] of Object.entries(ma.losses))
                expect(Math.abs(mb.losses[name]! - value), `step ${step} ${name}`).toBeLessThan(
                  1e-5 * Math.max(1, Math.abs(value)),
                );
              expect(mb.l0, `step ${step} l0`).toBeCloseTo(ma.l0, 5);
              expect(mb.dead_features, `step ${step} dead`).toBe(ma.dead_features);
              expect(mb.grad_norm / ma.grad_norm, `step ${step} grad norm`).toBeCloseTo(1, 4);
              if (ma.topk_threshold !== undefined)
                expect(mb.topk_threshold! / ma.topk_threshold, `step ${step} threshold`).toBeCloseTo(1, 5);
              if ((ma.losses.auxiliary_reconstruction_loss ?? 0) > 0) auxSteps++;
            }
          }
          expect(auxSteps).toBeGreaterThanOrEqual(8);
          const pa = dense.hostParams();
          const pb = sparse.hostParams();
          expect(Object.keys(pb).sort()).toEqual(Object.keys(pa).sort());
          for (const name of Object.keys(pa)) {
            expect(pb[name]!.shape, name).toEqual(pa[name]!.shape);
            expect(maxRelativeError(pa[name]!.data, pb[name]!.data), name).toBeLessThan(1e-4);
          }
          for (const which of ['m', 'v'] as const) {
            const ma = dense.hostMoments(which);
            const mb = sparse.hostMoments(which);
            for (const name of Object.keys(ma))
              expect(maxRelativeError(ma[name]!.data, mb[name]!.data), `${which}.${name}`).toBeLessThan(1e-3);
          }
        } finally {
          dense.dispose();
          sparse.dispose();
        }
      });
    }
  }

  it('the sparse graph has no dense decoder or gradient products', () => {
    for (const architecture of ['topk', 'batchtopk']) {
      const cfg = resolveSaeTrainingConfig({
        name: architecture,
        architecture,
        k: 32,
        d_in: 768,
        d_sae: 6144,
        hook_name: 'x',
      });
      const count = (sparse: boolean, type: string) =>
        buildSaeStepGraph(cfg, { auxK: false, sparse }).model.graph.nodes.filter((n) => n.opType === type)
          .length;
      // Dense: encoder, decoder, dL/da and the two weight gradients, plus b_dec's W_enc product.
      expect(count(false, 'Gemm')).toBe(6);
      expect(count(true, 'Gemm')).toBe(2);
      expect(count(true, 'ScatterND')).toBe(4);
      expect(count(true, 'Gather')).toBeGreaterThan(0);
    }
  });

  it('the rule: sparse on onnx for small k / d_sae, dense on tfjs, for matryoshka and for large k', () => {
    const cfg = (over: Partial<SaeTrainingConfigInput>) =>
      resolveSaeTrainingConfig({ name: 'a', d_in: 768, d_sae: 6144, hook_name: 'x', ...over });
    expect(sparseStepApplies(cfg({ architecture: 'topk', k: 32 }), 'onnx')).toBe(true);
    expect(sparseStepApplies(cfg({ architecture: 'batchtopk', k: 32 }), 'onnx')).toBe(true);
    expect(sparseStepApplies(cfg({ architecture: 'topk', k: 32 }), 'tfjs')).toBe(false);
    expect(sparseStepApplies(cfg({ architecture: 'topk', k: 1024 }), 'onnx')).toBe(false);
    expect(sparseStepApplies(cfg({ architecture: 'topk', k: 1024 }), 'onnx', 'sparse')).toBe(true);
    expect(sparseStepApplies(cfg({ architecture: 'topk', k: 32 }), 'onnx', 'dense')).toBe(false);
    const matryoshka = cfg({ architecture: 'matryoshka_batchtopk', k: 32, matryoshka_widths: [512] });
    expect(sparseStepApplies(matryoshka, 'onnx')).toBe(false);
    expect(() => sparseStepApplies(matryoshka, 'onnx', 'sparse')).toThrow(/no sparse step/);
    expect(() => sparseStepApplies(cfg({ architecture: 'standard' }), 'onnx', 'sparse')).toThrow();
  });
});
