import * as tf from '@tensorflow/tfjs-core';
// Autodiff needs the gradient kernels, which tfjs-core does not register by itself.
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/pipeline/backend.js';
import { ARCHITECTURE_MODULES } from '../src/sae/architectures/index.js';
import type { Params, StepInput } from '../src/sae/architectures/index.js';
import { resolveSaeTrainingConfig } from '../src/sae/config.js';
import type { SaeTrainingConfig, SaeTrainingConfigInput } from '../src/sae/config.js';
import { removeParallelComponent } from '../src/sae/engines/tfjs-step.js';
import { Mulberry32 } from '../src/util/random.js';
import { autodiffLoss, finiteDifferences, jumpReluThresholdGrad, referenceLoss } from './sae-reference.js';
import type { Params64, RefInput } from './sae-reference.js';

const D_IN = 5;
const D_SAE = 9;
const D_OUT = 4;
const ROWS = 6;

function normals(rng: Mulberry32, n: number, scale: number, shift = 0): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(rng.next(), 1e-12);
    out[i] = shift + scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.next());
  }
  return out;
}

interface Case {
  label: string;
  cfg: Partial<SaeTrainingConfigInput>;
  dead?: boolean;
}

const transcoder = { d_out: D_OUT, hook_name_out: 'out', skip_connection: true };
const CASES: Case[] = [
  { label: 'standard', cfg: { architecture: 'standard', l1_coefficient: 0.7 } },
  { label: 'standard, no b_dec on input', cfg: { architecture: 'standard', apply_b_dec_to_input: false } },
  { label: 'standard transcoder with skip', cfg: { architecture: 'standard', ...transcoder } },
  { label: 'topk (rescaled by decoder norm) with AuxK', cfg: { architecture: 'topk', k: 3 }, dead: true },
  {
    label: 'topk without rescaling, with AuxK',
    cfg: { architecture: 'topk', k: 3, rescale_acts_by_decoder_norm: false, aux_loss_coefficient: 0.5 },
    dead: true,
  },
  { label: 'topk transcoder with skip', cfg: { architecture: 'topk', k: 2, ...transcoder }, dead: true },
  { label: 'batchtopk with AuxK', cfg: { architecture: 'batchtopk', k: 2.5 }, dead: true },
  { label: 'jumprelu', cfg: { architecture: 'jumprelu', jumprelu_bandwidth: 0.4, l0_coefficient: 0.3 } },
  {
    label: 'jumprelu transcoder with skip',
    cfg: { architecture: 'jumprelu', jumprelu_bandwidth: 0.4, ...transcoder },
  },
  { label: 'gated', cfg: { architecture: 'gated', l1_coefficient: 0.4 } },
  { label: 'gated transcoder with skip', cfg: { architecture: 'gated', ...transcoder } },
];

const DEAD = [1, 0, 1, 0, 0, 1, 0, 0, 1];

interface Setup {
  cfg: SaeTrainingConfig;
  values: Record<string, { shape: number[]; data: Float32Array }>;
  x: Float32Array;
  y: Float32Array;
  coefficient: number;
  dead: Float32Array | null;
}

function setup(c: Case, seed: number): Setup {
  const cfg = resolveSaeTrainingConfig({
    d_in: D_IN,
    d_sae: D_SAE,
    hook_name: 'in',
    train_batch_size_tokens: ROWS,
    training_tokens: ROWS * 10,
    ...c.cfg,
  });
  const rng = new Mulberry32(seed);
  const dOut = cfg.d_out ?? D_IN;
  const values: Setup['values'] = {
    W_enc: { shape: [D_IN, D_SAE], data: normals(rng, D_IN * D_SAE, 0.6) },
    W_dec: { shape: [D_SAE, dOut], data: normals(rng, D_SAE * dOut, 0.5) },
    b_dec: { shape: [dOut], data: normals(rng, dOut, 0.3) },
  };
  if (cfg.skip_connection) values.W_skip = { shape: [D_IN, dOut], data: normals(rng, D_IN * dOut, 0.3) };
  for (const name of Object.keys(ARCHITECTURE_MODULES[cfg.architecture].featureParams(cfg))) {
    const data =
      name === 'log_threshold'
        ? normals(rng, D_SAE, 0.3, Math.log(0.4))
        : name === 'r_mag'
          ? normals(rng, D_SAE, 0.3)
          : normals(rng, D_SAE, 0.2, 0.1);
    values[name] = { shape: [D_SAE], data };
  }
  return {
    cfg,
    values,
    x: normals(rng, ROWS * D_IN, 1),
    y: normals(rng, ROWS * dOut, 1),
    coefficient: cfg.architecture === 'jumprelu' ? cfg.l0_coefficient : cfg.l1_coefficient,
    dead: c.dead ? Float32Array.from(DEAD) : null,
  };
}

function tensors(s: Setup): { params: Params; input: StepInput } {
  const params: Params = {};
  for (const [name, v] of Object.entries(s.values)) params[name as keyof Params] = tf.tensor(v.data, v.shape);
  const x = tf.tensor2d(s.x, [ROWS, D_IN]);
  const target = s.cfg.d_out === null ? x : tf.tensor2d(s.y, [ROWS, s.cfg.d_out]);
  const numDead = s.dead ? s.dead.reduce((a, b) => a + b, 0) : 0;
  return {
    params,
    input: { x, target, coefficient: s.coefficient, deadMask: s.dead ? tf.tensor1d(s.dead) : null, numDead },
  };
}

function analytic(s: Setup): { losses: Record<string, number>; grads: Record<string, Float32Array> } {
  return tf.tidy(() => {
    const { params, input } = tensors(s);
    const module = ARCHITECTURE_MODULES[s.cfg.architecture];
    const fwd = module.forward(params, input, s.cfg);
    const grads = module.backward(params, input, fwd, s.cfg);
    const losses = Object.fromEntries(Object.entries(fwd.losses).map(([n, t]) => [n, t.dataSync()[0]!]));
    const g = Object.fromEntries(
      Object.entries(grads).map(([n, t]) => [n, Float32Array.from(t!.dataSync())]),
    );
    return { losses, grads: g };
  });
}

function to64(s: Setup): { p: Params64; inp: RefInput } {
  const p: Params64 = {};
  for (const [name, v] of Object.entries(s.values))
    p[name] = { shape: v.shape, data: Float64Array.from(v.data) };
  return {
    p,
    inp: {
      x: Float64Array.from(s.x),
      y: Float64Array.from(s.y),
      rows: ROWS,
      coefficient: s.coefficient,
      deadMask: s.dead ? Float64Array.from(s.dead) : null,
    },
  };
}

function expectClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  what: string,
  atol = 2e-4,
  rtol = 2e-4,
): void {
  expect(actual.length, what).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const tol = atol + rtol * Math.abs(expected[i]!);
    if (!(Math.abs(actual[i]! - expected[i]!) <= tol)) {
      throw new Error(`${what}[${i}]: got ${actual[i]}, expected ${expected[i]} (tolerance ${tol})`);
    }
  }
}

beforeAll(async () => {
  await selectBackend('cpu');
});

describe('SAE gradients against float64 finite differences and tfjs autodiff', () => {
  for (const c of CASES) {
    it(c.label, () => {
      for (const seed of [1, 2, 3]) {
        const s = setup(c, seed * 7919 + c.label.length);
        const { losses, grads } = analytic(s);
        const { p, inp } = to64(s);

        const total = Object.values(losses).reduce((a, b) => a + b, 0);
        expect(total).toBeCloseTo(referenceLoss(s.cfg, p, inp), 4);

        const fd = finiteDifferences(s.cfg, p, inp);
        for (const [name, g] of Object.entries(grads)) {
          // The threshold's gradient is a straight-through estimate, not the true (zero a.e.) derivative.
          if (name === 'log_threshold') {
            expectClose(g, jumpReluThresholdGrad(s.cfg, p, inp), `${c.label} seed ${seed} ${name} vs STE`);
          } else {
            expectClose(g, fd[name]!.data, `${c.label} seed ${seed} ${name} vs finite differences`);
          }
        }

        const names = Object.keys(grads);
        const auto = tf.tidy(() => {
          const { params, input } = tensors(s);
          const list = names.map((n) => params[n as keyof Params]!);
          const f = (...ts: tf.Tensor[]): tf.Scalar => {
            const dict = Object.fromEntries(names.map((n, i) => [n, ts[i]!]));
            return autodiffLoss(s.cfg, dict, input.x, input.target, s.coefficient, input.deadMask);
          };
          return tf
            .grads(f)(list)
            .map((t) => Float32Array.from(t.dataSync()));
        });
        names.forEach((n, i) => expectClose(grads[n]!, auto[i]!, `${c.label} seed ${seed} ${n} vs autodiff`));
      }
    });
  }

  it('every architecture returns a gradient for each of its parameters', () => {
    for (const c of CASES) {
      const s = setup(c, 5);
      expect(Object.keys(analytic(s).grads).sort(), c.label).toEqual(Object.keys(s.values).sort());
    }
  });

  it("jumprelu's L0 pseudo-gradient is the half-bandwidth central difference of the step", () => {
    // With W_dec = 0 the reconstruction ignores the threshold, leaving only the L0 term, whose central
    // difference with step ε/2 is exactly -(1/ε) Σ K((h-θ)/ε) c/B.
    const s = setup(
      CASES.find((c) => c.label === 'jumprelu')!,
      11,
    );
    s.values.W_dec!.data.fill(0);
    const { grads } = analytic(s);
    const { p, inp } = to64(s);
    const eps = s.cfg.jumprelu_bandwidth;
    const logT = p.log_threshold!.data;
    for (let j = 0; j < D_SAE; j++) {
      const theta = Math.exp(logT[j]!);
      const at = (t: number): number => {
        logT[j] = Math.log(t);
        const v = referenceLoss(s.cfg, p, inp);
        logT[j] = Math.log(theta);
        return v;
      };
      const dTheta = (at(theta + eps / 2) - at(theta - eps / 2)) / eps;
      expect(grads.log_threshold![j]! / theta).toBeCloseTo(dTheta, 4);
    }
    expect(grads.log_threshold!.some((v) => v !== 0)).toBe(true);
  });

  it('removing the parallel component leaves each W_dec row gradient orthogonal to its row', () => {
    const [g, w] = tf.tidy(() => {
      const wt = tf.randomNormal([7, 5], 0, 1, 'float32', 3) as tf.Tensor2D;
      const gt = tf.randomNormal([7, 5], 0, 1, 'float32', 4) as tf.Tensor2D;
      return [removeParallelComponent(gt, wt).arraySync(), wt.arraySync()];
    });
    for (let r = 0; r < 7; r++) {
      const dot = g[r]!.reduce((s, v, c) => s + v * w[r]![c]!, 0);
      expect(Math.abs(dot)).toBeLessThan(1e-5);
    }
  });
});
