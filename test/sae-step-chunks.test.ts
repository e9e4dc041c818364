/**
 * Chunks of steps (one onnxruntime Loop run for several optimiser steps) against the same steps taken one
 * at a time: identical losses, firing counts, dead features and final parameters and moments, including
 * AuxK whose dead features change inside a chunk, a chunk cut short by a diverging step, and the trainer
 * handing several batches to several SAEs at once.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/pipeline/backend.js';
import { resolveSaeTrainingConfig } from '../src/sae/config.js';
import type { SaeTrainingConfigInput } from '../src/sae/index.js';
import { SaeTrainer } from '../src/sae/trainer.js';
import type { TrainerStepResult } from '../src/sae/trainer.js';
import { TrainingSae } from '../src/sae/training-sae.js';
import type { SaeStepMetrics, StepBatch } from '../src/sae/training-sae.js';
import { ONNX_CHUNK_STEPS } from '../src/engine/onnx/onnx-sae-step.js';
import { Mulberry32 } from '../src/util/random.js';

const ROWS = 32;
const D_IN = 12;
const D_SAE = 40;
// One full chunk and a partial one.
const STEPS = ONNX_CHUNK_STEPS + 3;

beforeAll(async () => {
  await selectBackend('wasm');
});

const ARCHS: Record<string, Partial<SaeTrainingConfigInput>> = {
  standard: { architecture: 'standard', l1_coefficient: 0.5, l1_warm_up_steps: 3 },
  // k = 1 of 40 and a 3-step window: features die (and revive) inside chunks, so AuxK switches on mid-chunk.
  topk: { architecture: 'topk', k: 1, dead_feature_window: 3 },
  batchtopk: { architecture: 'batchtopk', k: 1, dead_feature_window: 3 },
  jumprelu: { architecture: 'jumprelu', l0_coefficient: 0.1, jumprelu_init_threshold: 0.05 },
  gated: { architecture: 'gated', l1_coefficient: 0.5 },
  matryoshka_batchtopk: {
    architecture: 'matryoshka_batchtopk',
    k: 1,
    matryoshka_widths: [3, 9],
    dead_feature_window: 3,
  },
};

const VARIANTS: Record<string, Partial<SaeTrainingConfigInput>> = {
  plain: {},
  'b_dec on input, unit-norm decoder, clipping': {
    apply_b_dec_to_input: true,
    normalize_sae_decoder: true,
    max_grad_norm: 0.05,
    b_dec_init_method: 'mean',
  },
  'transcoder with skip': { d_out: 10, hook_name_out: 'y', skip_connection: true },
};

function config(name: string, extra: Partial<SaeTrainingConfigInput>) {
  return resolveSaeTrainingConfig({
    name,
    d_in: D_IN,
    d_sae: D_SAE,
    hook_name: 'x',
    train_batch_size_tokens: ROWS,
    training_tokens: ROWS * 1000,
    lr: 0.01,
    lr_warm_up_steps: 2,
    ...extra,
  });
}

function batches(count: number, dOut: number | null, seed = 9): StepBatch[] {
  const rng = new Mulberry32(seed);
  const data = (width: number): Float32Array =>
    Float32Array.from({ length: ROWS * width }, () => rng.next() * 2 - 1);
  return Array.from({ length: count }, () => ({
    x: data(D_IN),
    y: dOut === null ? null : data(dOut),
    rows: ROWS,
  }));
}

function comparable(m: SaeStepMetrics): unknown {
  return { ...m, sparsity: undefined };
}

describe('chunks of ONNX steps equal single steps', () => {
  for (const [arch, archCfg] of Object.entries(ARCHS)) {
    for (const [variant, variantCfg] of Object.entries(VARIANTS)) {
      // Matryoshka levels reconstruct without a skip connection, so it refuses one.
      if (arch.startsWith('matryoshka') && variantCfg.skip_connection) continue;
      it(`${arch}, ${variant}`, async () => {
        const cfg = config(arch, { ...archCfg, ...variantCfg });
        const single = TrainingSae.create(cfg, 'onnx');
        const chunked = TrainingSae.create(cfg, 'onnx');
        try {
          expect(chunked.engine.maxChunkSteps).toBe(ONNX_CHUNK_STEPS);
          const data = batches(STEPS, cfg.d_out);
          const one: SaeStepMetrics[] = [];
          for (const b of data) one.push(await single.trainStep(b.x, b.y, b.rows));
          const many = await chunked.trainSteps(data);
          expect(many.map(comparable)).toEqual(one.map(comparable));
          if (arch.includes('topk') && variant === 'plain') {
            // AuxK ran, and the set of dead features changed inside the first chunk.
            expect(one.some((m) => (m.losses.auxiliary_reconstruction_loss ?? 0) > 0)).toBe(true);
            const dead = one.slice(0, ONNX_CHUNK_STEPS).map((m) => m.dead_features);
            expect(new Set(dead).size).toBeGreaterThan(1);
          }
          expect(chunked.hostParams()).toEqual(single.hostParams());
          expect(chunked.hostMoments('m')).toEqual(single.hostMoments('m'));
          expect(chunked.hostMoments('v')).toEqual(single.hostMoments('v'));
          expect(chunked.engine.adamStep).toBe(STEPS);
          expect(chunked.stats.sinceFired).toEqual(single.stats.sinceFired);
          expect(chunked.topkThreshold).toBe(single.topkThreshold);
        } finally {
          single.dispose();
          chunked.dispose();
        }
      });
    }
  }

  it('a step diverging inside a chunk keeps the steps before it and names the step', async () => {
    const cfg = config('std', { architecture: 'standard' });
    const reference = TrainingSae.create(cfg, 'onnx');
    const sae = TrainingSae.create(cfg, 'onnx');
    try {
      const data = batches(6, null);
      data[4] = { ...data[4]!, x: data[4]!.x.map((v) => v * 1e30) };
      for (const b of data.slice(0, 4)) await reference.trainStep(b.x, b.y, b.rows);
      await expect(sae.trainSteps(data)).rejects.toThrow(/step 4: SAE 'std' diverged/);
      expect(sae.step).toBe(4);
      expect(sae.engine.adamStep).toBe(4);
      expect(sae.hostParams()).toEqual(reference.hostParams());
      expect(sae.hostMoments('v')).toEqual(reference.hostMoments('v'));
      // Training goes on from there as if the bad batch had never come.
      const next = batches(2, null, 77);
      const a = await sae.trainSteps(next);
      const b = await reference.trainSteps(next);
      expect(a.map(comparable)).toEqual(b.map(comparable));
    } finally {
      reference.dispose();
      sae.dispose();
    }
  });

  it('batches of different sizes are chunked by size', async () => {
    const cfg = config('std', { architecture: 'standard' });
    const single = TrainingSae.create(cfg, 'onnx');
    const chunked = TrainingSae.create(cfg, 'onnx');
    try {
      const data = batches(5, null);
      data[2] = { x: data[2]!.x.subarray(0, 7 * D_IN), y: null, rows: 7 };
      const one: SaeStepMetrics[] = [];
      for (const b of data) one.push(await single.trainStep(b.x, b.y, b.rows));
      expect((await chunked.trainSteps(data)).map(comparable)).toEqual(one.map(comparable));
      expect(chunked.hostParams()).toEqual(single.hostParams());
    } finally {
      single.dispose();
      chunked.dispose();
    }
  });
});

describe('SaeTrainer.steps', () => {
  const sweep = [
    { name: 'a', architecture: 'topk', k: 2, training_tokens: ROWS * 5 },
    { name: 'b', architecture: 'standard', training_tokens: ROWS * 9 },
  ].map((c) => ({
    d_in: D_IN,
    d_sae: D_SAE,
    hook_name: 'x',
    train_batch_size_tokens: ROWS,
    normalize_activations: 'expected_average_only_in',
    n_batches_for_norm_estimate: 2,
    ...c,
  }));
  const trainingBatches = () => batches(12, null, 3).map((b) => ({ rows: ROWS, activations: { x: b.x } }));

  it('gives the results of one step per batch, with SAEs finishing mid-run', async () => {
    const one = SaeTrainer.create(sweep, { engine: 'onnx' });
    const many = SaeTrainer.create(sweep, { engine: 'onnx' });
    try {
      const data = trainingBatches();
      const expected: TrainerStepResult[] = [];
      for (const b of data) expected.push(await one.step(b));
      expect(many.batchesWanted(ROWS)).toBe(1); // normalisation estimate first
      const got = await many.steps(data);
      const strip = (r: TrainerStepResult[]) => r.map((x) => ({ ...x, saes: x.saes.map(comparable) }));
      expect(strip(got)).toEqual(strip(expected));
      expect(got.filter((r) => r.phase === 'norm_estimate')).toHaveLength(2);
      expect(many.batches).toBe(12);
      for (const [i, sae] of many.saes.entries()) expect(sae.hostParams()).toEqual(one.saes[i]!.hostParams());
      expect(many.done).toBe(true);
    } finally {
      one.dispose();
      many.dispose();
    }
  });

  it('asks for a chunk of batches, but no more than the SAEs still need', async () => {
    const trainer = SaeTrainer.create(sweep, { engine: 'onnx' });
    const tfjs = SaeTrainer.create(sweep, { engine: 'tfjs' });
    try {
      const data = trainingBatches();
      await trainer.steps(data.slice(0, 2));
      expect(trainer.batchesWanted(ROWS)).toBe(ONNX_CHUNK_STEPS); // b needs 9
      expect(tfjs.chunkSteps).toBe(1);
      await trainer.steps(data.slice(2, 6));
      expect(trainer.batchesWanted(ROWS)).toBe(5);
      expect(trainer.batchesWanted(ROWS * 2)).toBe(3);
    } finally {
      trainer.dispose();
      tfjs.dispose();
    }
  });

  it('checks every batch of a run before training on any of them', async () => {
    const trainer = SaeTrainer.create([{ ...sweep[1]!, normalize_activations: 'none' }], { engine: 'onnx' });
    try {
      const data = trainingBatches().slice(0, 4);
      const bad = Float32Array.from(data[2]!.activations.x);
      bad[5] = Number.NaN;
      data[2] = { rows: ROWS, activations: { x: bad } };
      const before = trainer.saes[0]!.hostParams();
      await expect(trainer.steps(data)).rejects.toThrow(
        /batch 2 \(step 2\): activations of hook 'x' contain NaN/,
      );
      expect(trainer.saes[0]!.hostParams()).toEqual(before);
      expect(trainer.batches).toBe(0);
    } finally {
      trainer.dispose();
    }
  });
});
