import * as tf from '@tensorflow/tfjs-core';
// Autodiff needs the gradient kernels, which tfjs-core does not register by itself.
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/pipeline/backend.js';
import { evaluateOnnx, evaluateTfjs } from '../src/ops/evaluate.js';
import type { HostArray, OpsProgram } from '../src/ops/evaluate.js';
import { batchTopKCount } from '../src/sae/architectures/batchtopk.js';
import { architectureNames, architectureOf } from '../src/sae/architectures/registry.js';
import { auxKBase } from '../src/sae/architectures/topk.js';
import type { ParamName, ParamValues } from '../src/sae/architectures/types.js';
import { resolveSaeTrainingConfig } from '../src/sae/config.js';
import type { SaeTrainingConfig, SaeTrainingConfigInput } from '../src/sae/config.js';
import { stepGradients } from '../src/sae/train-step.js';
import { Mulberry32 } from '../src/util/random.js';
import { transposeMatrix } from '../src/util/transpose.js';
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
  {
    label: 'matryoshka_batchtopk with AuxK',
    cfg: { architecture: 'matryoshka_batchtopk', k: 2.5, matryoshka_widths: [2, 5] },
    dead: true,
  },
  {
    label: 'matryoshka_batchtopk transcoder, unrescaled',
    cfg: {
      architecture: 'matryoshka_batchtopk',
      k: 3,
      matryoshka_widths: [3, 6, 9],
      rescale_acts_by_decoder_norm: false,
      d_out: D_OUT,
      hook_name_out: 'out',
    },
  },
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
  for (const name of Object.keys(architectureOf(cfg.architecture).featureParams(cfg))) {
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

/** Inputs of the architecture's training pass for `s`, W_dec in the step's [d_out, d_sae] layout. */
function stepInputs(s: Setup): Record<string, HostArray> {
  const dOut = s.cfg.d_out ?? D_IN;
  const inputs: Record<string, HostArray> = {
    x: { shape: [ROWS, D_IN], data: s.x },
    y: { shape: [ROWS, dOut], data: s.y },
    invRows: { shape: [], data: Float32Array.of(1 / ROWS) },
    coefficient: { shape: [], data: Float32Array.of(s.coefficient) },
  };
  for (const [name, v] of Object.entries(s.values)) {
    inputs[`p.${name}`] =
      name === 'W_dec'
        ? { shape: [dOut, D_SAE], data: transposeMatrix(v.data, D_SAE, dOut) }
        : { shape: v.shape, data: v.data };
  }
  const numDead = s.dead ? s.dead.reduce((a, b) => a + b, 0) : 0;
  if (s.dead && numDead > 0) {
    const base = auxKBase(s.cfg);
    inputs.deadBias = { shape: [D_SAE], data: Float32Array.from(s.dead, (d) => (d - 1) * 1e30) };
    inputs.kAux = { shape: [1], data: BigInt64Array.of(BigInt(Math.min(base, numDead))) };
    inputs.auxWeight = {
      shape: [],
      data: Float32Array.of(s.cfg.aux_loss_coefficient * Math.min(numDead / base, 1)),
    };
  }
  if (architectureOf(s.cfg.architecture).batchSelection)
    inputs.keep = { shape: [1], data: BigInt64Array.of(BigInt(batchTopKCount(s.cfg, ROWS))) };
  return inputs;
}

/** The architecture's single definition on `backend`: losses and gradients (W_dec back in [d_sae, d_out]). */
async function analytic(
  s: Setup,
  backend: 'onnx' | 'tfjs',
): Promise<{ losses: Record<string, number>; grads: Record<string, Float32Array> }> {
  const cfg = s.cfg;
  const program: OpsProgram = (o, i) => {
    const p: ParamValues<(typeof i)[string]> = {};
    for (const name of Object.keys(s.values)) p[name as ParamName] = i[`p.${name}`]!;
    const out = architectureOf(cfg.architecture).train(
      o,
      p,
      {
        x: i.x!,
        target: cfg.d_out === null ? i.x! : i.y!,
        invRows: i.invRows!,
        coefficient: i.coefficient!,
        ...(i.deadBias ? { aux: { deadBias: i.deadBias, kAux: i.kAux!, weight: i.auxWeight! } } : {}),
        ...(i.keep ? { keep: i.keep } : {}),
      },
      cfg,
    );
    const result: Record<string, (typeof i)[string]> = {};
    for (const [n, t] of out.losses) result[`loss:${n}`] = t;
    for (const [n, t] of Object.entries(out.grads)) result[`grad:${n}`] = t!;
    return result;
  };
  const inputs = stepInputs(s);
  const out = backend === 'onnx' ? await evaluateOnnx(program, inputs) : evaluateTfjs(program, inputs);
  const losses: Record<string, number> = {};
  const grads: Record<string, Float32Array> = {};
  const dOut = cfg.d_out ?? D_IN;
  for (const [key, v] of Object.entries(out)) {
    if (key.startsWith('loss:')) losses[key.slice(5)] = v.data[0]!;
    else grads[key.slice(5)] = key === 'grad:W_dec' ? transposeMatrix(v.data, dOut, D_SAE) : v.data;
  }
  return { losses, grads };
}

function tensors(s: Setup): {
  params: Record<string, tf.Tensor>;
  x: tf.Tensor2D;
  target: tf.Tensor2D;
  dead: tf.Tensor1D | null;
} {
  const params: Record<string, tf.Tensor> = {};
  for (const [name, v] of Object.entries(s.values)) params[name] = tf.tensor(v.data, v.shape);
  const x = tf.tensor2d(s.x, [ROWS, D_IN]);
  const target = s.cfg.d_out === null ? x : tf.tensor2d(s.y, [ROWS, s.cfg.d_out]);
  return { params, x, target, dead: s.dead ? tf.tensor1d(s.dead) : null };
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
    for (const backend of ['onnx', 'tfjs'] as const) {
      it(`${c.label} (${backend})`, async () => {
        for (const seed of [1, 2, 3]) {
          const s = setup(c, seed * 7919 + c.label.length);
          const { losses, grads } = await analytic(s, backend);
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
            const t = tensors(s);
            const list = names.map((n) => t.params[n]!);
            const f = (...ts: tf.Tensor[]): tf.Scalar => {
              const dict = Object.fromEntries(names.map((n, i) => [n, ts[i]!]));
              return autodiffLoss(s.cfg, dict, t.x, t.target, s.coefficient, t.dead);
            };
            return tf
              .grads(f)(list)
              .map((g) => Float32Array.from(g.dataSync()));
          });
          names.forEach((n, i) =>
            expectClose(grads[n]!, auto[i]!, `${c.label} seed ${seed} ${n} vs autodiff`),
          );
        }
      });
    }
  }

  it('every architecture returns a gradient for each of its parameters', async () => {
    for (const c of CASES) {
      const s = setup(c, 5);
      expect(Object.keys((await analytic(s, 'tfjs')).grads).sort(), c.label).toEqual(
        Object.keys(s.values).sort(),
      );
    }
  });

  it('every registered architecture has a case here', () => {
    const covered = new Set(CASES.map((c) => c.cfg.architecture));
    expect(architectureNames().filter((n) => !covered.has(n))).toEqual([]);
  });

  it("jumprelu's L0 pseudo-gradient is the half-bandwidth central difference of the step", async () => {
    // With W_dec = 0 the reconstruction ignores the threshold, leaving only the L0 term, whose central
    // difference with step ε/2 is exactly -(1/ε) Σ K((h-θ)/ε) c/B.
    const s = setup(
      CASES.find((c) => c.label === 'jumprelu')!,
      11,
    );
    s.values.W_dec!.data.fill(0);
    const { grads } = await analytic(s, 'onnx');
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

  for (const backend of ['onnx', 'tfjs'] as const) {
    it(`normalize_sae_decoder leaves each feature's W_dec gradient orthogonal to its decoder vector (${backend})`, async () => {
      const s = setup({ label: 'unit', cfg: { architecture: 'standard', normalize_sae_decoder: true } }, 3);
      const dOut = D_IN;
      const program: OpsProgram = (o, i) => {
        const p: ParamValues<(typeof i)[string]> = {};
        for (const name of Object.keys(s.values)) p[name as ParamName] = i[`p.${name}`]!;
        const pass = stepGradients(o, s.cfg, p, {
          x: i.x!,
          scaleIn: o.scalar(1),
          scaleOut: o.scalar(1),
          invRows: i.invRows!,
          coefficient: i.coefficient!,
        });
        return { g: pass.grads.W_dec!, w: i['p.W_dec']! };
      };
      const inputs = stepInputs(s);
      const out = backend === 'onnx' ? await evaluateOnnx(program, inputs) : evaluateTfjs(program, inputs);
      const g = out.g!.data;
      const w = out.w!.data;
      for (let j = 0; j < D_SAE; j++) {
        let dot = 0;
        let gn = 0;
        for (let r = 0; r < dOut; r++) {
          dot += g[r * D_SAE + j]! * w[r * D_SAE + j]!;
          gn += g[r * D_SAE + j]! ** 2;
        }
        expect(Math.abs(dot)).toBeLessThan(1e-5);
        if (j === 0) expect(gn).toBeGreaterThan(0);
      }
    });
  }
});
