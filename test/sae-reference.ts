/**
 * Test-only references for the SAE architectures:
 * - `referenceLoss`: the total training loss in float64 plain JS, written literally from SAELens's
 *   definitions (no shared code with src/sae), for central finite differences;
 * - `jumpReluThresholdGrad`: the straight-through pseudo-gradient of log_threshold, in float64;
 * - `autodiffLoss`: the same loss as tfjs ops (decoder norms and all), for tf.grads.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { SaeTrainingConfig } from '../src/sae/config.js';

export type Params64 = Record<string, { shape: number[]; data: Float64Array }>;

export interface RefInput {
  x: Float64Array;
  y: Float64Array;
  rows: number;
  coefficient: number;
  deadMask: Float64Array | null;
  /** topk's AuxK target y - x̂, held constant while finite differences perturb the parameters. */
  fixedResidual?: number[];
}

const relu = (v: number): number => (v > 0 ? v : 0);

function matmul(a: ArrayLike<number>, b: ArrayLike<number>, n: number, k: number, m: number): Float64Array {
  const out = new Float64Array(n * m);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let t = 0; t < k; t++) s += a[i * k + t]! * b[t * m + j]!;
      out[i * m + j] = s;
    }
  return out;
}

function rowNorms(w: Float64Array, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += w[r * cols + c]! ** 2;
    out[r] = Math.sqrt(s);
  }
  return out;
}

interface Dims {
  B: number;
  dIn: number;
  S: number;
  dOut: number;
}

function dims(cfg: SaeTrainingConfig, rows: number): Dims {
  return { B: rows, dIn: cfg.d_in, S: cfg.d_sae, dOut: cfg.d_out ?? cfg.d_in };
}

function centered(p: Params64, inp: RefInput, cfg: SaeTrainingConfig, d: Dims): Float64Array {
  const xc = Float64Array.from(inp.x);
  if (cfg.apply_b_dec_to_input) {
    for (let b = 0; b < d.B; b++) for (let i = 0; i < d.dIn; i++) xc[b * d.dIn + i]! -= p.b_dec!.data[i]!;
  }
  return xc;
}

function decode(acts: Float64Array, p: Params64, inp: RefInput, d: Dims, skip: boolean): Float64Array {
  const out = matmul(acts, p.W_dec!.data, d.B, d.S, d.dOut);
  const skipOut = skip && p.W_skip ? matmul(inp.x, p.W_skip.data, d.B, d.dIn, d.dOut) : null;
  for (let b = 0; b < d.B; b++)
    for (let o = 0; o < d.dOut; o++) {
      out[b * d.dOut + o]! += p.b_dec!.data[o]! + (skipOut ? skipOut[b * d.dOut + o]! : 0);
    }
  return out;
}

function sqErr(a: Float64Array, t: ArrayLike<number>, rows: number): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - t[i]!) ** 2;
  return s / rows;
}

/** Indices of the `k` largest entries of `values` (ties broken by index). */
function topIndices(values: number[], k: number): number[] {
  return values
    .map((v, i) => [v, i] as const)
    .sort((p, q) => q[0] - p[0] || p[1] - q[1])
    .slice(0, k)
    .map(([, i]) => i);
}

export function referenceLoss(cfg: SaeTrainingConfig, p: Params64, inp: RefInput): number {
  return evaluate(cfg, p, inp).loss;
}

function evaluate(cfg: SaeTrainingConfig, p: Params64, inp: RefInput): { loss: number; recon: Float64Array } {
  const d = dims(cfg, inp.rows);
  const xc = centered(p, inp, cfg, d);
  const target = cfg.d_out === null ? inp.x : inp.y;
  const norms = rowNorms(p.W_dec!.data, d.S, d.dOut);
  const pre = matmul(xc, p.W_enc!.data, d.B, d.dIn, d.S);

  switch (cfg.architecture) {
    case 'standard': {
      const f = pre.map((v, i) => relu(v + p.b_enc!.data[i % d.S]!));
      let l1 = 0;
      f.forEach((v, i) => (l1 += v * norms[i % d.S]!));
      const recon = decode(f, p, inp, d, true);
      return { loss: sqErr(recon, target, d.B) + (inp.coefficient * l1) / d.B, recon };
    }
    case 'jumprelu': {
      const h = pre.map((v, i) => v + p.b_enc!.data[i % d.S]!);
      const theta = p.log_threshold!.data.map(Math.exp);
      const f = h.map((v, i) => (v > theta[i % d.S]! ? v : 0));
      let l0 = 0;
      h.forEach((v, i) => (l0 += v > theta[i % d.S]! ? 1 : 0));
      const recon = decode(f, p, inp, d, true);
      return { loss: sqErr(recon, target, d.B) + (inp.coefficient * l0) / d.B, recon };
    }
    case 'gated': {
      const expR = p.r_mag!.data.map(Math.exp);
      const f = new Float64Array(d.B * d.S);
      const g = new Float64Array(d.B * d.S);
      pre.forEach((P, i) => {
        const j = i % d.S;
        const piGate = P + p.b_gate!.data[j]!;
        const piMag = P * expR[j]! + p.b_mag!.data[j]!;
        f[i] = piGate > 0 ? relu(piMag) : 0;
        g[i] = relu(piGate);
      });
      let l1 = 0;
      g.forEach((v, i) => (l1 += v * norms[i % d.S]!));
      const recon = decode(f, p, inp, d, true);
      const loss =
        sqErr(recon, target, d.B) +
        (inp.coefficient * l1) / d.B +
        sqErr(decode(g, p, inp, d, true), target, d.B);
      return { loss, recon };
    }
    case 'topk':
    case 'batchtopk':
    case 'matryoshka_batchtopk': {
      const h = pre.map((v, i) => v + p.b_enc!.data[i % d.S]!);
      const hr = cfg.rescale_acts_by_decoder_norm ? h.map((v, i) => v * norms[i % d.S]!) : h;
      const f = new Float64Array(d.B * d.S);
      if (cfg.architecture === 'topk') {
        for (let b = 0; b < d.B; b++) {
          const row = Array.from(hr.subarray(b * d.S, (b + 1) * d.S));
          for (const j of topIndices(row, cfg.k)) f[b * d.S + j] = relu(row[j]!);
        }
      } else {
        const acts = Array.from(hr, relu);
        for (const i of topIndices(acts, Math.floor(cfg.k * d.B))) f[i] = acts[i]!;
      }
      const a = cfg.rescale_acts_by_decoder_norm ? f.map((v, i) => v / norms[i % d.S]!) : f;
      const recon = decode(a, p, inp, d, true);
      let loss = sqErr(recon, target, d.B);
      const numDead = inp.deadMask ? inp.deadMask.reduce((s, v) => s + v, 0) : 0;
      if (numDead > 0 && cfg.aux_loss_coefficient > 0) {
        const base = Math.max(1, Math.floor(d.dOut / 2));
        const kAux = Math.min(base, numDead);
        const scale = Math.min(numDead / base, 1);
        const aux = new Float64Array(d.B * d.S);
        for (let b = 0; b < d.B; b++) {
          const row = Array.from(hr.subarray(b * d.S, (b + 1) * d.S), (v, j) =>
            inp.deadMask![j] ? v : -Infinity,
          );
          for (const j of topIndices(row, kAux)) aux[b * d.S + j] = row[j]!;
        }
        const auxA = cfg.rescale_acts_by_decoder_norm ? aux.map((v, i) => v / norms[i % d.S]!) : aux;
        const auxRecon = decode(auxA, p, inp, d, false);
        const residual = inp.fixedResidual ?? Array.from(recon, (v, i) => target[i]! - v);
        loss += cfg.aux_loss_coefficient * scale * sqErr(auxRecon, residual, d.B);
      }
      if (cfg.architecture === 'matryoshka_batchtopk') {
        // Every nested prefix but the full width reconstructs the target alone (no skip connection).
        const widths = cfg.matryoshka_widths.filter((w) => w < d.S);
        for (const w of widths) {
          const inner = a.map((v, i) => (i % d.S < w ? v : 0));
          loss += sqErr(decode(inner, p, inp, d, false), target, d.B);
        }
      }
      return { loss, recon };
    }
    default:
      throw new Error(`no reference for architecture ${cfg.architecture}`);
  }
}

/** Central differences of `referenceLoss` for every entry of every parameter. */
export function finiteDifferences(cfg: SaeTrainingConfig, p: Params64, base: RefInput, h = 1e-6): Params64 {
  const target = cfg.d_out === null ? base.x : base.y;
  const recon = evaluate(cfg, p, base).recon;
  const inp = { ...base, fixedResidual: Array.from(recon, (v, i) => target[i]! - v) };
  {
    const out: Params64 = {};
    for (const [name, t] of Object.entries(p)) {
      const g = new Float64Array(t.data.length);
      for (let i = 0; i < t.data.length; i++) {
        const orig = t.data[i]!;
        t.data[i] = orig + h;
        const up = referenceLoss(cfg, p, inp);
        t.data[i] = orig - h;
        const down = referenceLoss(cfg, p, inp);
        t.data[i] = orig;
        g[i] = (up - down) / (2 * h);
      }
      out[name] = { shape: t.shape, data: g };
    }
    return out;
  }
}

/** JumpReLU's straight-through gradient of the loss with respect to log_threshold, in float64. */
export function jumpReluThresholdGrad(cfg: SaeTrainingConfig, p: Params64, inp: RefInput): Float64Array {
  const d = dims(cfg, inp.rows);
  const xc = centered(p, inp, cfg, d);
  const h = matmul(xc, p.W_enc!.data, d.B, d.dIn, d.S).map((v, i) => v + p.b_enc!.data[i % d.S]!);
  const theta = p.log_threshold!.data.map(Math.exp);
  const f = h.map((v, i) => (v > theta[i % d.S]! ? v : 0));
  const recon = decode(f, p, inp, d, true);
  const target = cfg.d_out === null ? inp.x : inp.y;
  const G = recon.map((v, i) => (2 * (v - target[i]!)) / d.B);
  // dL/df = G W_decᵀ
  const dF = new Float64Array(d.B * d.S);
  for (let b = 0; b < d.B; b++)
    for (let j = 0; j < d.S; j++) {
      let s = 0;
      for (let o = 0; o < d.dOut; o++) s += G[b * d.dOut + o]! * p.W_dec!.data[j * d.dOut + o]!;
      dF[b * d.S + j] = s;
    }
  const eps = cfg.jumprelu_bandwidth;
  const out = new Float64Array(d.S);
  for (let j = 0; j < d.S; j++) {
    let dTheta = 0;
    for (let b = 0; b < d.B; b++) {
      const u = (h[b * d.S + j]! - theta[j]!) / eps;
      const k = u > -0.5 && u < 0.5 ? 1 : 0;
      dTheta += -(theta[j]! / eps) * k * dF[b * d.S + j]! - (1 / eps) * k * (inp.coefficient / d.B);
    }
    out[j] = dTheta * theta[j]!;
  }
  return out;
}

/**
 * The loss as tfjs ops for autodiff, written like SAELens's modules (decoder norms differentiated, STE
 * through tf.customGrad for JumpReLU). Masks from comparisons carry no gradient.
 */
export function autodiffLoss(
  cfg: SaeTrainingConfig,
  p: Record<string, tf.Tensor>,
  x: tf.Tensor2D,
  y: tf.Tensor2D,
  coefficient: number,
  deadMask: tf.Tensor1D | null,
): tf.Scalar {
  const B = x.shape[0];
  const target = cfg.d_out === null ? x : y;
  const xc = cfg.apply_b_dec_to_input ? tf.sub(x, p.b_dec!) : x;
  const decodeT = (acts: tf.Tensor, skip: boolean): tf.Tensor => {
    const out = tf.add(tf.matMul(acts as tf.Tensor2D, p.W_dec as tf.Tensor2D), p.b_dec!);
    return skip && p.W_skip ? tf.add(out, tf.matMul(x, p.W_skip as tf.Tensor2D)) : out;
  };
  const mse = (a: tf.Tensor, t: tf.Tensor): tf.Scalar => tf.div(tf.sum(tf.square(tf.sub(a, t))), B);
  // A constant copy: tfjs has no gradients for comparisons and topk, and masks carry none anyway.
  const detach = (t: tf.Tensor): tf.Tensor => tf.tensor(t.dataSync(), t.shape);
  const norms = tf.sqrt(tf.sum(tf.square(p.W_dec!), 1));
  const pre = tf.matMul(xc as tf.Tensor2D, p.W_enc as tf.Tensor2D);
  switch (cfg.architecture) {
    case 'standard': {
      const f = tf.relu(tf.add(pre, p.b_enc!));
      const l1 = tf.mul(tf.sum(tf.mul(f, norms)), coefficient / B);
      return tf.add(mse(decodeT(f, true), target), l1);
    }
    case 'jumprelu': {
      const h = tf.add(pre, p.b_enc!);
      const theta = tf.exp(p.log_threshold!);
      const eps = cfg.jumprelu_bandwidth;
      const rect = (u: tf.Tensor): tf.Tensor => tf.cast(tf.less(tf.abs(u), 0.5), 'float32');
      const jump = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
        const [hh, th, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
        save([hh, th]);
        const active = tf.cast(tf.greater(hh, th), 'float32');
        return {
          value: tf.mul(hh, active),
          gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
            const [hs, ts] = saved as [tf.Tensor, tf.Tensor];
            const k = rect(tf.div(tf.sub(hs, ts), eps));
            return [
              tf.mul(dy, tf.cast(tf.greater(hs, ts), 'float32')),
              tf.sum(tf.mul(tf.mul(k, dy), tf.div(ts, -eps)), 0),
            ];
          },
        };
      });
      const step = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
        const [hh, th, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
        save([hh, th]);
        return {
          value: tf.cast(tf.greater(hh, th), 'float32'),
          gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
            const [hs, ts] = saved as [tf.Tensor, tf.Tensor];
            const k = rect(tf.div(tf.sub(hs, ts), eps));
            return [tf.zerosLike(hs), tf.sum(tf.mul(tf.mul(k, dy), -1 / eps), 0)];
          },
        };
      });
      const f = jump(h, theta);
      const l0 = tf.mul(tf.sum(step(h, theta)), coefficient / B);
      return tf.add(mse(decodeT(f, true), target), l0);
    }
    case 'gated': {
      const piGate = tf.add(pre, p.b_gate!);
      const piMag = tf.add(
        tf.matMul(xc as tf.Tensor2D, tf.mul(p.W_enc!, tf.exp(p.r_mag!)) as tf.Tensor2D),
        p.b_mag!,
      );
      const f = tf.mul(tf.cast(tf.greater(detach(piGate), 0), 'float32'), tf.relu(piMag));
      const g = tf.relu(piGate);
      const l1 = tf.mul(tf.sum(tf.mul(g, norms)), coefficient / B);
      return tf.addN([mse(decodeT(f, true), target), l1, mse(decodeT(g, true), target)]) as tf.Scalar;
    }
    case 'topk':
    case 'batchtopk':
    case 'matryoshka_batchtopk': {
      const h = tf.add(pre, p.b_enc!);
      const hr = cfg.rescale_acts_by_decoder_norm ? tf.mul(h, norms) : h;
      const hrc = detach(hr);
      let mask: tf.Tensor;
      if (cfg.architecture === 'topk') {
        const kth = tf.slice(tf.topk(hrc, cfg.k).values, [0, cfg.k - 1], [-1, 1]);
        mask = tf.cast(tf.greaterEqual(hrc, kth), 'float32');
      } else {
        const n = Math.floor(cfg.k * B);
        const kth = tf.slice(tf.topk(tf.reshape(tf.relu(hrc), [-1]), n).values, [n - 1], [1]);
        mask = tf.cast(tf.greaterEqual(tf.relu(hrc), kth), 'float32');
      }
      const f = tf.mul(tf.relu(hr), mask);
      const a = cfg.rescale_acts_by_decoder_norm ? tf.div(f, norms) : f;
      const recon = decodeT(a, true);
      let loss = mse(recon, target);
      const numDead = deadMask ? tf.sum(deadMask).dataSync()[0]! : 0;
      if (deadMask && numDead > 0) {
        const base = Math.max(1, Math.floor(target.shape[1] / 2));
        const kAux = Math.min(base, numDead);
        const scale = Math.min(numDead / base, 1);
        const masked = tf.where(
          tf.cast(tf.broadcastTo(deadMask, hr.shape), 'bool'),
          hrc,
          tf.fill(hr.shape, -Infinity),
        );
        const kth = tf.slice(tf.topk(masked, kAux).values, [0, kAux - 1], [-1, 1]);
        const auxActs = tf.mul(hr, tf.cast(tf.greaterEqual(masked, kth), 'float32'));
        const auxA = cfg.rescale_acts_by_decoder_norm ? tf.div(auxActs, norms) : auxActs;
        const residual = tf.sub(target, recon).dataSync();
        const residualT = tf.tensor(residual, recon.shape);
        loss = tf.add(loss, tf.mul(mse(decodeT(auxA, false), residualT), cfg.aux_loss_coefficient * scale));
      }
      if (cfg.architecture === 'matryoshka_batchtopk') {
        for (const w of cfg.matryoshka_widths.filter((v) => v < cfg.d_sae)) {
          const prefix = tf.tensor1d(Array.from({ length: cfg.d_sae }, (_, j) => (j < w ? 1 : 0)));
          loss = tf.add(loss, mse(decodeT(tf.mul(a, prefix), false), target));
        }
      }
      return loss;
    }
    default:
      throw new Error(`no autodiff reference for architecture ${cfg.architecture}`);
  }
}
