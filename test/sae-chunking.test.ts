/**
 * Gradient accumulation over row chunks: a step on a batch split into chunks of `max_rows_per_chunk` rows
 * must match the step on the whole batch (parameters, losses, metrics) up to float rounding, for every
 * architecture, including batchtopk's whole-batch selection and topk's AuxK on dead features.
 */
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/pipeline/backend.js';
import { UserError } from '../src/pipeline/errors.js';
import { maxRowsPerChunk, resolveSaeTrainingConfig } from '../src/sae/config.js';
import type { SaeTrainingConfigInput } from '../src/sae/config.js';
import { TrainingSae } from '../src/sae/training-sae.js';
import type { SaeStepMetrics } from '../src/sae/training-sae.js';
import { Mulberry32 } from '../src/util/random.js';

const D_IN = 6;
const D_SAE = 20;
const ROWS = 32;
const STEPS = 4;

beforeAll(async () => {
  await selectBackend('wasm');
});

function normals(rng: Mulberry32, n: number, shift: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(rng.next(), 1e-12);
    out[i] = shift + Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.next());
  }
  return out;
}

const transcoder = { d_out: 4, hook_name_out: 'out', skip_connection: true, apply_b_dec_to_input: false };
const CASES: { label: string; cfg: Partial<SaeTrainingConfigInput> }[] = [
  { label: 'standard', cfg: { architecture: 'standard', l1_coefficient: 0.3 } },
  {
    label: 'standard, unit decoder rows, normalised activations, mean b_dec',
    cfg: {
      architecture: 'standard',
      normalize_sae_decoder: true,
      normalize_activations: 'expected_average_only_in',
      n_batches_for_norm_estimate: 1,
      b_dec_init_method: 'mean',
    },
  },
  { label: 'standard transcoder with skip', cfg: { architecture: 'standard', ...transcoder } },
  // dead_feature_window 1: features that did not fire last step are dead, so AuxK is active from step 1.
  { label: 'topk with AuxK', cfg: { architecture: 'topk', k: 3, dead_feature_window: 1 } },
  { label: 'topk transcoder', cfg: { architecture: 'topk', k: 2, dead_feature_window: 1, ...transcoder } },
  { label: 'batchtopk with AuxK', cfg: { architecture: 'batchtopk', k: 2.5, dead_feature_window: 1 } },
  { label: 'jumprelu', cfg: { architecture: 'jumprelu', l0_coefficient: 0.2, jumprelu_init_threshold: 0.3 } },
  { label: 'gated', cfg: { architecture: 'gated', l1_coefficient: 0.4 } },
];

interface Run {
  metrics: SaeStepMetrics[];
  params: Record<string, Float32Array>;
  tensorsAfterSteps: number[];
}

async function train(cfg: Partial<SaeTrainingConfigInput>, maxRows: number | null): Promise<Run> {
  const resolved = resolveSaeTrainingConfig({
    d_in: D_IN,
    d_sae: D_SAE,
    hook_name: 'h',
    lr: 0.01,
    training_tokens: ROWS * 100,
    train_batch_size_tokens: ROWS,
    feature_sampling_window: 3,
    max_rows_per_chunk: maxRows,
    ...cfg,
  });
  const sae = TrainingSae.create(resolved);
  const rng = new Mulberry32(7);
  const dOut = resolved.d_out;
  const metrics: SaeStepMetrics[] = [];
  const tensorsAfterSteps: number[] = [];
  try {
    const batches = STEPS + sae.pendingNormBatches;
    for (let s = 0; s < batches; s++) {
      const x = normals(rng, ROWS * D_IN, 0.5);
      const y = dOut === null ? null : normals(rng, ROWS * dOut, -0.2);
      if (sae.pendingNormBatches > 0) {
        sae.observeNormBatch(x, y, ROWS);
        continue;
      }
      metrics.push(await sae.trainStep(x, y, ROWS));
      tensorsAfterSteps.push(tf.memory().numTensors);
    }
    const params = Object.fromEntries(Object.entries(sae.hostParams()).map(([n, t]) => [n, t.data]));
    return { metrics, params, tensorsAfterSteps };
  } finally {
    sae.dispose();
  }
}

function expectClose(actual: number, expected: number, what: string): void {
  const tol = 1e-5 * Math.max(1, Math.abs(expected));
  if (!(Math.abs(actual - expected) <= tol))
    throw new Error(`${what}: chunked ${actual} vs whole ${expected}`);
}

describe('row-chunked training steps (gradient accumulation)', () => {
  for (const c of CASES) {
    it(`${c.label}: chunks of 7 rows match the whole 32-row batch`, async () => {
      const whole = await train(c.cfg, null);
      const chunked = await train(c.cfg, 7);
      for (let s = 0; s < STEPS; s++) {
        const a = chunked.metrics[s]!;
        const b = whole.metrics[s]!;
        expect(Object.keys(a.losses)).toEqual(Object.keys(b.losses));
        for (const n of Object.keys(b.losses)) expectClose(a.losses[n]!, b.losses[n]!, `step ${s} ${n}`);
        for (const key of ['loss', 'mse', 'l0', 'explained_variance', 'grad_norm', 'lr'] as const)
          expectClose(a[key], b[key], `step ${s} ${key}`);
        expect(a.dead_features).toBe(b.dead_features);
        expect(a.tokens).toBe(b.tokens);
        expect(a.sparsity).toEqual(b.sparsity);
        if (b.topk_threshold !== undefined)
          expectClose(a.topk_threshold!, b.topk_threshold, `step ${s} threshold`);
      }
      // AuxK only matters if some feature was dead in the comparison.
      if (c.cfg.dead_feature_window === 1) {
        expect(whole.metrics.some((m) => (m.losses.auxiliary_reconstruction_loss ?? 0) > 0)).toBe(true);
      }
      for (const [name, expected] of Object.entries(whole.params)) {
        const actual = chunked.params[name]!;
        expect(actual.length).toBe(expected.length);
        for (let i = 0; i < expected.length; i++) expectClose(actual[i]!, expected[i]!, `${name}[${i}]`);
      }
      // No tensor survives a step beyond the SAE's own state.
      expect(new Set(chunked.tensorsAfterSteps).size).toBe(1);
    });
  }

  it('max_rows_per_chunk defaults to rows × d_sae under 2^25 and rejects 0', async () => {
    const cfg = resolveSaeTrainingConfig({ d_in: 768, d_sae: 24576, hook_name: 'h' });
    expect(cfg.max_rows_per_chunk).toBeNull();
    expect(maxRowsPerChunk(cfg)).toBe(1365);
    expect(maxRowsPerChunk({ ...cfg, d_sae: 6144 })).toBe(5461);
    expect(maxRowsPerChunk({ ...cfg, max_rows_per_chunk: 100 })).toBe(100);
    expect(() =>
      resolveSaeTrainingConfig({ d_in: 4, d_sae: 8, hook_name: 'h', max_rows_per_chunk: 0 }),
    ).toThrow(UserError);
    expect(() =>
      resolveSaeTrainingConfig({ d_in: 4, d_sae: 8, hook_name: 'h', max_rows_per_chunk: 0 }),
    ).toThrow(/max_rows_per_chunk/);
  });
});
