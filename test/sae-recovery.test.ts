/**
 * Each architecture recovers known sparse features from synthetic activations: 128 random unit
 * directions in R^48, ~5 active per token with magnitudes in [0.5, 1.5]. Checked on the saved SAELens
 * folder (so batchtopk is judged as the JumpReLU it is saved as): mean over true features of the best
 * cosine with a decoder row > 0.9, and L0 on fresh tokens near the true 5.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/pipeline/backend.js';
import { STEP_ENGINES } from '../src/sae/engines/step-engine.js';
import { Sae, SaeTrainer, readSaeFolder } from '../src/sae/index.js';
import type { SaeTrainingConfigInput } from '../src/sae/index.js';
import { meanBestCosine, syntheticData } from './sae-synthetic.js';

const D = 48;
const FEATURES = 128;
const ACTIVE = 5;
const D_SAE = 256;
const BATCH = 256;
const STEPS = 1200;

let dir: string;
beforeAll(async () => {
  await selectBackend('wasm');
  dir = await mkdtemp(path.join(tmpdir(), 'sae-recovery-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const CASES: [string, Partial<SaeTrainingConfigInput>][] = [
  ['standard', { architecture: 'standard', l1_coefficient: 1.2 }],
  ['topk', { architecture: 'topk', k: 5, dead_feature_window: 50 }],
  ['batchtopk', { architecture: 'batchtopk', k: 5, dead_feature_window: 50 }],
  [
    'jumprelu',
    { architecture: 'jumprelu', l0_coefficient: 0.15, jumprelu_init_threshold: 0.1, jumprelu_bandwidth: 0.1 },
  ],
  ['gated', { architecture: 'gated', l1_coefficient: 1 }],
  [
    'matryoshka_batchtopk',
    { architecture: 'matryoshka_batchtopk', k: 5, matryoshka_widths: [32, 128], dead_feature_window: 50 },
  ],
];

describe.each(STEP_ENGINES)('feature recovery on synthetic sparse data (%s step engine)', (engine) => {
  for (const [label, overrides] of CASES) {
    it(label, async () => {
      const data = syntheticData(D, FEATURES, ACTIVE, 1);
      const trainer = SaeTrainer.create(
        [
          {
            name: label,
            d_in: D,
            d_sae: D_SAE,
            hook_name: 'blocks.0.hook_resid_pre',
            train_batch_size_tokens: BATCH,
            training_tokens: BATCH * STEPS,
            lr: 3e-3,
            ...overrides,
          },
        ],
        { engine },
      );
      while (!trainer.done)
        await trainer.step({ rows: BATCH, activations: { 'blocks.0.hook_resid_pre': data.batch(BATCH).x } });
      const out = path.join(dir, label);
      await trainer.saveCheckpoint(out, { trainerState: false });
      trainer.dispose();

      const folder = await readSaeFolder(path.join(out, label));
      expect(folder.config.architecture).toBe(label.includes('batchtopk') ? 'jumprelu' : label);
      const sae = Sae.fromTensors(folder.config, folder.kind, folder.tensors);
      const cosine = meanBestCosine(data.features, FEATURES, folder.tensors.W_dec!.data, D_SAE, D);

      const fresh = data.batch(1024);
      const l0 = tf.tidy(() => {
        const f = sae.encode(tf.tensor2d(fresh.x, [1024, D]));
        return tf.sum(tf.step(f)).dataSync()[0]! / 1024;
      });
      sae.dispose();
      expect(cosine, `${label}: mean best cosine`).toBeGreaterThan(0.9);
      expect(l0, `${label}: L0 (true mean ${fresh.active.toFixed(2)})`).toBeGreaterThan(0.6 * ACTIVE);
      expect(l0, `${label}: L0 (true mean ${fresh.active.toFixed(2)})`).toBeLessThan(1.6 * ACTIVE);
    });
  }
});
