/**
 * The ONNX training step against the TensorFlow.js one (whose hand-written backward passes are checked
 * against finite differences in sae-gradients.test.ts): same initial parameters, same batches, several
 * steps; losses, firing counts, parameters and Adam moments must agree to float32 rounding, for every
 * architecture and the options that change the graph.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/pipeline/backend.js';
import { resolveSaeTrainingConfig } from '../src/sae/config.js';
import type { SaeTrainingConfigInput } from '../src/sae/index.js';
import { TrainingSae } from '../src/sae/training-sae.js';
import { Mulberry32 } from '../src/util/random.js';

const ROWS = 48;
const D_IN = 16;
const D_SAE = 40;
const STEPS = 6;

beforeAll(async () => {
  await selectBackend('wasm');
});

const ARCHS: Record<string, Partial<SaeTrainingConfigInput>> = {
  standard: { architecture: 'standard', l1_coefficient: 0.5, l1_warm_up_steps: 3 },
  // k = 1 of 40 with a 2-step window leaves dead features, so the AuxK graph runs too.
  topk: { architecture: 'topk', k: 1, dead_feature_window: 2 },
  batchtopk: { architecture: 'batchtopk', k: 1, dead_feature_window: 2 },
  jumprelu: { architecture: 'jumprelu', l0_coefficient: 0.1, jumprelu_init_threshold: 0.05 },
  gated: { architecture: 'gated', l1_coefficient: 0.5 },
  matryoshka_batchtopk: {
    architecture: 'matryoshka_batchtopk',
    k: 2,
    matryoshka_widths: [4, 16],
    dead_feature_window: 2,
  },
};

const VARIANTS: Record<string, Partial<SaeTrainingConfigInput>> = {
  plain: {},
  'b_dec on input, unit-norm decoder, tight clipping': {
    apply_b_dec_to_input: true,
    normalize_sae_decoder: true,
    max_grad_norm: 0.05,
    b_dec_init_method: 'mean',
  },
  'transcoder with skip, normalised activations': {
    d_out: 12,
    hook_name_out: 'y',
    skip_connection: true,
    normalize_activations: 'expected_average_only_in',
    n_batches_for_norm_estimate: 1,
  },
  'topk without decoder-norm rescaling': { rescale_acts_by_decoder_norm: false },
};

function maxRelativeError(a: Float32Array, b: Float32Array): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const scale = Math.max(Math.abs(a[i]!), Math.abs(b[i]!), 1e-3);
    worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / scale);
  }
  return worst;
}

describe('ONNX SAE training step equals the TensorFlow.js step', () => {
  for (const [arch, archCfg] of Object.entries(ARCHS)) {
    for (const [variant, variantCfg] of Object.entries(VARIANTS)) {
      if (variant.startsWith('topk') && !arch.includes('topk')) continue;
      // Matryoshka levels reconstruct without a skip connection, so it refuses one.
      if (arch.startsWith('matryoshka') && variantCfg.skip_connection) continue;
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
          ...archCfg,
          ...variantCfg,
        });
        const ref = TrainingSae.create(cfg, 'tfjs');
        const onnx = TrainingSae.create(cfg, 'onnx');
        const rng = new Mulberry32(5);
        const batch = (width: number): Float32Array =>
          Float32Array.from({ length: ROWS * width }, () => rng.next() * 2 - 1);
        let sawAux = false;
        try {
          for (let s = 0; s < STEPS + ref.pendingNormBatches; s++) {
            const x = batch(D_IN);
            const y = cfg.d_out === null ? null : batch(cfg.d_out);
            if (ref.pendingNormBatches > 0) {
              ref.observeNormBatch(x, y, ROWS);
              onnx.observeNormBatch(x, y, ROWS);
              continue;
            }
            const a = await ref.trainStep(x, y, ROWS);
            const b = await onnx.trainStep(x, y, ROWS);
            expect(Object.keys(b.losses)).toEqual(Object.keys(a.losses));
            for (const [name, value] of Object.entries(a.losses)) {
              expect(Math.abs(b.losses[name]! - value), `step ${s} ${name}`).toBeLessThan(
                1e-5 * Math.max(1, Math.abs(value)),
              );
            }
            expect(b.l0, `step ${s} l0`).toBeCloseTo(a.l0, 5);
            expect(b.grad_norm / a.grad_norm, `step ${s} grad norm`).toBeCloseTo(1, 4);
            if ((a.losses.auxiliary_reconstruction_loss ?? 0) > 0 && arch !== 'gated') sawAux = true;
          }
          const pa = ref.hostParams();
          const pb = onnx.hostParams();
          expect(Object.keys(pb).sort()).toEqual(Object.keys(pa).sort());
          for (const name of Object.keys(pa))
            expect(maxRelativeError(pa[name]!.data, pb[name]!.data), name).toBeLessThan(1e-4);
          for (const which of ['m', 'v'] as const) {
            const ma = ref.hostMoments(which);
            const mb = onnx.hostMoments(which);
            for (const name of Object.keys(ma))
              expect(maxRelativeError(ma[name]!.data, mb[name]!.data), `${which}.${name}`).toBeLessThan(1e-3);
          }
          expect(onnx.engine.adamStep).toBe(ref.engine.adamStep);
          if (arch.includes('topk') && variant === 'plain') expect(sawAux).toBe(true);
        } finally {
          ref.dispose();
          onnx.dispose();
        }
      });
    }
  }

  it('a diverged step leaves the ONNX parameters and moments as they were', async () => {
    const cfg = resolveSaeTrainingConfig({
      name: 'std',
      architecture: 'standard',
      d_in: D_IN,
      d_sae: D_SAE,
      hook_name: 'x',
      train_batch_size_tokens: ROWS,
      training_tokens: ROWS * 100,
    });
    const sae = TrainingSae.create(cfg, 'onnx');
    try {
      const x = Float32Array.from({ length: ROWS * D_IN }, (_, i) => Math.sin(i));
      await sae.trainStep(x, null, ROWS);
      const before = sae.hostParams();
      const m = sae.hostMoments('m');
      await expect(
        sae.trainStep(
          x.map((v) => v * 1e30),
          null,
          ROWS,
        ),
      ).rejects.toThrow(/step 1: SAE 'std' diverged/);
      const after = sae.hostParams();
      for (const name of Object.keys(before)) expect(after[name]!.data).toEqual(before[name]!.data);
      expect(sae.hostMoments('m').W_enc!.data).toEqual(m.W_enc!.data);
      expect(sae.engine.adamStep).toBe(1);
    } finally {
      sae.dispose();
    }
  });
});

describe('--backend cuda', () => {
  it('is a UserError naming the CUDA libraries when onnxruntime cannot run on the GPU', async () => {
    // CI and this machine have no GPU and no CUDA build of onnxruntime-node, so the probe must fail
    // before any work starts (on a GPU machine this test is skipped).
    const { checkOnnxDevice } = await import('../src/engine/onnx/session-options.js');
    const probe = checkOnnxDevice('cuda');
    const ok = await probe.then(
      () => true,
      () => false,
    );
    if (ok) return;
    await expect(checkOnnxDevice('cuda')).rejects.toThrow(/ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci/);
  });
});
