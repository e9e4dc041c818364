/**
 * Global gradient-norm clipping and Adam with PyTorch's update (torch.optim.Adam, single-tensor path, eps
 * 1e-8, no weight decay), written once on the op layer:
 *   g ← clip · g,  clip = min(max_grad_norm / (‖g‖ + 1e-6), 1)   (clip_grad_norm_; 1 when disabled)
 *   m ← β1 m + (1 - β1) g;  v ← β2 v + (1 - β2) g²
 *   p ← p - (lr / (1 - β1^t)) · m / (√v / √(1 - β2^t) + eps)
 * The clip factor and the bias corrections are folded into scalars so that each parameter is read and
 * written as few times as possible: m = β1·m + ((1-β1)·clip)·g, v = β2·v + ((1-β2)·clip²)·g²,
 * p -= (step_size·√(1-β2^t)) · m / (√v + eps·√(1-β2^t)), step_size = lr / (1 - β1^t).
 */
import type { Ops } from '../../ops/ops.js';

export const ADAM_EPS = 1e-8;

export interface AdamSettings {
  beta1: number;
  beta2: number;
  /** 0 disables clipping. */
  maxGradNorm: number;
}

/** Per-step scalars: step_size = lr / (1 - β1^t) and √(1 - β2^t), t the 1-based update count. */
export function adamStepScalars(
  lr: number,
  t: number,
  s: AdamSettings,
): { stepSize: number; bc2Sqrt: number } {
  return { stepSize: lr / (1 - s.beta1 ** t), bc2Sqrt: Math.sqrt(1 - s.beta2 ** t) };
}

export interface AdamState<T> {
  param: T;
  m: T;
  v: T;
}

/**
 * One clipped Adam update of every parameter; `gradSq` is Σ grad² over all of them (before clipping).
 * Returns the next parameter and moments per name.
 */
export function adamUpdate<T>(
  o: Ops<T>,
  s: AdamSettings,
  state: Readonly<Record<string, AdamState<T>>>,
  grads: Readonly<Record<string, T>>,
  gradSq: T,
  step: { stepSize: T; bc2Sqrt: T },
): Record<string, AdamState<T>> {
  const clip =
    s.maxGradNorm > 0
      ? o.minimum(o.div(o.scalar(s.maxGradNorm), o.add(o.sqrt(gradSq), o.scalar(1e-6))), o.scalar(1))
      : undefined;
  const mScale = clip === undefined ? o.scalar(1 - s.beta1) : o.mul(clip, o.scalar(1 - s.beta1));
  const vScale = clip === undefined ? o.scalar(1 - s.beta2) : o.mul(o.mul(clip, clip), o.scalar(1 - s.beta2));
  const epsScaled = o.mul(step.bc2Sqrt, o.scalar(ADAM_EPS));
  const stepScaled = o.mul(step.stepSize, step.bc2Sqrt);
  const next: Record<string, AdamState<T>> = {};
  for (const [name, st] of Object.entries(state)) {
    const g = grads[name];
    if (g === undefined) throw new Error(`no gradient for parameter ${name}`);
    const m = o.add(o.mul(st.m, o.scalar(s.beta1)), o.mul(g, mScale));
    const v = o.add(o.mul(st.v, o.scalar(s.beta2)), o.mul(o.mul(g, g), vScale));
    const param = o.sub(st.param, o.mul(o.div(m, o.add(o.sqrt(v), epsScaled)), stepScaled));
    next[name] = { param, m, v };
  }
  return next;
}
