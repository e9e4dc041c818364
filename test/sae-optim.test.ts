import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/pipeline/backend.js';
import { evaluateOnnx, evaluateTfjs } from '../src/ops/evaluate.js';
import type { HostArray, OpsProgram } from '../src/ops/evaluate.js';
import { resolveSaeTrainingConfig } from '../src/sae/config.js';
import type { LrSchedulerName } from '../src/sae/config.js';
import { adamStepScalars, adamUpdate } from '../src/sae/optim/adam.js';
import type { AdamState } from '../src/sae/optim/adam.js';
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
  for (const backend of ['onnx', 'tfjs'] as const) {
    it(`three steps, two of them clipped (${backend})`, async () => {
      const { adam: a } = ref;
      const settings = { beta1: a.betas[0], beta2: a.betas[1], maxGradNorm: a.max_grad_norm };
      const names = Object.keys(a.shapes);
      const state: Record<string, { param: number[]; m: number[]; v: number[] }> = {};
      for (const name of names) {
        const n = a.initial[name]!.length;
        state[name] = {
          param: a.initial[name]!,
          m: new Array<number>(n).fill(0),
          v: new Array<number>(n).fill(0),
        };
      }
      let clipped = 0;
      for (const [t, grads] of a.grads.entries()) {
        let sq = 0;
        for (const name of names) sq += grads[name]!.reduce((s, v) => s + v * v, 0);
        if (a.max_grad_norm / (Math.sqrt(sq) + 1e-6) < 1) clipped++;
        const inputs: Record<string, HostArray> = {};
        for (const name of names) {
          const shape = a.shapes[name]!;
          inputs[`p.${name}`] = { shape, data: Float32Array.from(state[name]!.param) };
          inputs[`m.${name}`] = { shape, data: Float32Array.from(state[name]!.m) };
          inputs[`v.${name}`] = { shape, data: Float32Array.from(state[name]!.v) };
          inputs[`g.${name}`] = { shape, data: Float32Array.from(grads[name]!) };
        }
        const scalars = adamStepScalars(a.lr, t + 1, settings);
        inputs.stepSize = { shape: [], data: Float32Array.of(scalars.stepSize) };
        inputs.bc2Sqrt = { shape: [], data: Float32Array.of(scalars.bc2Sqrt) };
        const program: OpsProgram = (o, i) => {
          const st: Record<string, AdamState<(typeof i)[string]>> = {};
          const g: Record<string, (typeof i)[string]> = {};
          for (const name of names) {
            st[name] = { param: i[`p.${name}`]!, m: i[`m.${name}`]!, v: i[`v.${name}`]! };
            g[name] = i[`g.${name}`]!;
          }
          const gradSq = names.map((n) => o.sumSquares(g[n]!)).reduce((x, y) => o.add(x, y));
          const next = adamUpdate(o, settings, st, g, gradSq, { stepSize: i.stepSize!, bc2Sqrt: i.bc2Sqrt! });
          const out: Record<string, (typeof i)[string]> = {};
          for (const name of names)
            Object.assign(out, {
              [`p.${name}`]: next[name]!.param,
              [`m.${name}`]: next[name]!.m,
              [`v.${name}`]: next[name]!.v,
            });
          return out;
        };
        const out = backend === 'onnx' ? await evaluateOnnx(program, inputs) : evaluateTfjs(program, inputs);
        for (const name of names) {
          state[name] = {
            param: Array.from(out[`p.${name}`]!.data),
            m: Array.from(out[`m.${name}`]!.data),
            v: Array.from(out[`v.${name}`]!.data),
          };
        }
      }
      expect(clipped).toBe(2);
      for (const [name, expected] of Object.entries(a.final)) {
        expected.forEach((v, i) => expect(state[name]!.param[i]).toBeCloseTo(v, 5));
      }
    });
  }
});
