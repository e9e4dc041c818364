/**
 * Pieces of transformer blocks written once on the op layer, for every family to compose: the MLP
 * nonlinearities and causal self-attention. (Rotary embeddings, RMSNorm and grouped-query attention come
 * here with the families that need them.)
 */
import type { Ops } from '../ops/ops.js';
import type { ActivationFunction } from './config.js';

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

export function activation<T>(o: Ops<T>, x: T, kind: ActivationFunction): T {
  switch (kind) {
    case 'gelu_new': {
      // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), HF's NewGELUActivation.
      const cube = o.mul(o.mul(x, x), x);
      const inner = o.mul(o.add(x, o.mul(cube, o.scalar(0.044715))), o.scalar(SQRT_2_OVER_PI));
      return o.mul(o.mul(x, o.scalar(0.5)), o.add(o.tanh(inner), o.scalar(1)));
    }
    case 'gelu':
      return o.mul(o.mul(x, o.scalar(0.5)), o.add(o.erf(o.mul(x, o.scalar(Math.SQRT1_2))), o.scalar(1)));
    case 'relu':
      return o.relu(x);
  }
}

/**
 * softmax(q kᵀ · scale + mask) v per head: q, k, v and the result are [batch, seq, heads, d_head] (the
 * TransformerLens shapes of hook_q/k/v/z), `mask` is additive [seq, seq]. q is scaled rather than the
 * [seq, seq] scores: fewer multiplies, the same numbers up to rounding.
 */
export function causalAttention<T>(o: Ops<T>, q: T, k: T, v: T, mask: T, scale: number): T {
  const qh = o.transpose(o.mul(q, o.scalar(scale)), [0, 2, 1, 3]);
  const scores = o.batchMatMul(qh, o.transpose(k, [0, 2, 3, 1]));
  const probs = o.softmax(o.add(scores, mask));
  return o.transpose(o.batchMatMul(probs, o.transpose(v, [0, 2, 1, 3])), [0, 2, 1, 3]);
}
