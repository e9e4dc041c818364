/**
 * Adam with PyTorch's update (torch.optim.Adam, single-tensor path, eps 1e-8, no weight decay), on tfjs
 * tensors so the state can be saved and restored exactly:
 *   m ← m + (g - m)(1 - β1);  v ← β2 v + (1 - β2) g²
 *   p ← p - (lr / (1 - β1^t)) · m / (√v / √(1 - β2^t) + eps)
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Grads, ParamName, Params } from '../architectures/types.js';

export const ADAM_EPS = 1e-8;

export class Adam {
  /** Number of updates applied so far (PyTorch's `step`). */
  step = 0;
  readonly m: Params = {};
  readonly v: Params = {};

  constructor(
    params: Params,
    readonly beta1: number,
    readonly beta2: number,
  ) {
    for (const [name, p] of Object.entries(params) as [ParamName, tf.Tensor][]) {
      this.m[name] = tf.keep(tf.zerosLike(p));
      this.v[name] = tf.keep(tf.zerosLike(p));
    }
  }

  /**
   * Applies one update with gradients scaled by `gradScale` (gradient clipping). Returns new parameter
   * tensors; the old parameters and moments are disposed, the gradients are left to the caller.
   */
  update(params: Params, grads: Grads, lr: number, gradScale: number): Params {
    this.step += 1;
    const bc1 = 1 - this.beta1 ** this.step;
    const bc2Sqrt = Math.sqrt(1 - this.beta2 ** this.step);
    const stepSize = lr / bc1;
    const next: Params = {};
    for (const [name, p] of Object.entries(params) as [ParamName, tf.Tensor][]) {
      const grad = grads[name];
      if (grad === undefined) throw new Error(`no gradient for parameter ${name}`);
      const m = this.m[name]!;
      const v = this.v[name]!;
      const [m2, v2, p2] = tf.tidy(() => {
        const g = gradScale === 1 ? grad : tf.mul(grad, gradScale);
        const mNew = tf.add(m, tf.mul(tf.sub(g, m), 1 - this.beta1));
        const vNew = tf.add(tf.mul(v, this.beta2), tf.mul(tf.square(g), 1 - this.beta2));
        const denom = tf.add(tf.div(tf.sqrt(vNew), bc2Sqrt), ADAM_EPS);
        return [mNew, vNew, tf.sub(p, tf.mul(tf.div(mNew, denom), stepSize))];
      });
      m.dispose();
      v.dispose();
      p.dispose();
      this.m[name] = m2;
      this.v[name] = v2;
      next[name] = p2;
    }
    return next;
  }

  dispose(): void {
    for (const t of [...Object.values(this.m), ...Object.values(this.v)]) t?.dispose();
  }
}

/** PyTorch's clip_grad_norm_ factor: max_norm / (‖g‖ + 1e-6) when that is below 1, else 1 (0 disables). */
export function clipScale(gradNorm: number, maxNorm: number): number {
  if (maxNorm <= 0) return 1;
  const coef = maxNorm / (gradNorm + 1e-6);
  return coef < 1 ? coef : 1;
}
