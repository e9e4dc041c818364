import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/pipeline/backend.js';
import type { Params } from '../src/sae/architectures/index.js';
import { resolveSaeTrainingConfig } from '../src/sae/config.js';
import type { LrSchedulerName } from '../src/sae/config.js';
import { Adam, clipScale } from '../src/sae/optim/adam.js';
import { coefficientAt, learningRateAt } from '../src/sae/optim/schedules.js';

interface Reference {
  schedules: {
    lr_scheduler_name: LrSchedulerName;
    lr: number;
    lr_warm_up_steps: number;
    lr_decay_steps: number;
    lr_end: number | null;
    n_restart_cycles: number;
    total_steps: number;
    lrs: number[];
  }[];
  adam: {
    lr: number;
    betas: [number, number];
    max_grad_norm: number;
    shapes: Record<string, number[]>;
    initial: Record<string, number[]>;
    grads: Record<string, number[]>[];
    final: Record<string, number[]>;
  };
}

const ref = JSON.parse(
  readFileSync(new URL('./fixtures/sae/reference.json', import.meta.url), 'utf8'),
) as Reference;

beforeAll(async () => {
  await selectBackend('cpu');
});

describe('learning-rate schedules match PyTorch (SAELens get_lr_scheduler)', () => {
  for (const s of ref.schedules) {
    it(`${s.lr_scheduler_name}, warm-up ${s.lr_warm_up_steps}, decay ${s.lr_decay_steps}`, () => {
      const cfg = resolveSaeTrainingConfig({
        d_in: 4,
        d_sae: 8,
        hook_name: 'h',
        train_batch_size_tokens: 10,
        training_tokens: 10 * s.total_steps,
        lr: s.lr,
        lr_scheduler_name: s.lr_scheduler_name,
        lr_warm_up_steps: s.lr_warm_up_steps,
        lr_decay_steps: s.lr_decay_steps,
        lr_end: s.lr_end,
        n_restart_cycles: s.n_restart_cycles,
      });
      s.lrs.forEach((expected, step) => {
        expect(learningRateAt(cfg, step), `step ${step}`).toBeCloseTo(expected, 9);
      });
    });
  }
});

describe('sparsity coefficient warm-up (SAELens CoefficientScheduler)', () => {
  it('is 0 at the first step, rises linearly and stays at its final value', () => {
    expect([0, 1, 2, 3, 4, 5, 9].map((s) => coefficientAt(2, 4, s))).toEqual([0, 0.5, 1, 1.5, 2, 2, 2]);
    expect(coefficientAt(2, 0, 0)).toBe(2);
  });
});

describe('Adam with gradient clipping matches torch.optim.Adam + clip_grad_norm_', () => {
  it('three steps, two of them clipped', () => {
    const { adam: a } = ref;
    let params: Params = {};
    for (const [name, shape] of Object.entries(a.shapes)) {
      params[name as keyof Params] = tf.keep(tf.tensor(a.initial[name]!, shape));
    }
    const adam = new Adam(params, a.betas[0], a.betas[1]);
    let clipped = 0;
    for (const grads of a.grads) {
      const g: Params = {};
      let sq = 0;
      for (const [name, shape] of Object.entries(a.shapes)) {
        g[name as keyof Params] = tf.tensor(grads[name]!, shape);
        sq += grads[name]!.reduce((s, v) => s + v * v, 0);
      }
      const scale = clipScale(Math.sqrt(sq), a.max_grad_norm);
      if (scale < 1) clipped++;
      params = adam.update(params, g, a.lr, scale);
      for (const t of Object.values(g)) t.dispose();
    }
    expect(clipped).toBe(2);
    for (const [name, expected] of Object.entries(a.final)) {
      const got = params[name as keyof Params]!.dataSync();
      expected.forEach((v, i) => expect(got[i]).toBeCloseTo(v, 5));
    }
    for (const t of Object.values(params)) t.dispose();
    adam.dispose();
  });
});
