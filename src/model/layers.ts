/**
 * Pieces of transformer blocks written once on the op layer, for every family to compose: the MLP
 * nonlinearities, RMS normalisation, rotary embeddings and causal self-attention (grouped-query,
 * sliding-window and soft-capped variants included).
 */
import type { Ops } from '../ops/ops.js';
import type { ActivationFunction } from './config.js';

export function activation<T>(o: Ops<T>, x: T, kind: ActivationFunction): T {
  switch (kind) {
    case 'gelu_new':
      return o.gelu(x, 'tanh');
    case 'gelu':
      return o.gelu(x, 'none');
    case 'relu':
      return o.relu(x);
    case 'silu':
      return o.mul(x, o.sigmoid(x));
  }
}

/**
 * x / sqrt(mean(x²) + eps) over the last axis: RMSNorm before its scale, which is what TransformerLens
 * hooks as `hook_normalized`; the family multiplies by its scale (w, or Gemma's 1 + w).
 */
export function rmsNormalized<T>(o: Ops<T>, x: T, eps: number): T {
  return o.div(x, o.sqrt(o.add(o.mean(o.mul(x, x), -1, true), o.scalar(eps))));
}

/** cos and sin of every position's angles, [seq, 1, rotaryDim / 2], for `rotate` (computed once per forward). */
export interface RotaryAngles<T> {
  cos: T;
  sin: T;
}

/**
 * The angles position × inverse frequency for the sequence axis of `ids` [batch, seq], in float32 as
 * transformers computes them (its cos/sin tables are float32 products too).
 */
export function rotaryAngles<T>(o: Ops<T>, ids: T, invFreq: Float32Array, key: string): RotaryAngles<T> {
  const half = invFreq.length;
  const angles = o.mul(o.reshape(o.positions(ids, 1), [-1, 1, 1]), o.constant(key, [1, 1, half], invFreq));
  return { cos: o.cos(angles), sin: o.sin(angles) };
}

/**
 * Rotary embedding of q or k [batch, seq, heads, d_head], GPT-NeoX style (the two halves of the first
 * 2 · angles-width dimensions rotate as pairs; the rest pass through): x1 cos - x2 sin, x2 cos + x1 sin.
 */
export function rotate<T>(o: Ops<T>, x: T, angles: RotaryAngles<T>, rotaryDim: number, dHead: number): T {
  const half = rotaryDim / 2;
  const parts = o.split(x, rotaryDim === dHead ? [half, half] : [half, half, dHead - rotaryDim]);
  const [x1, x2] = parts as [T, T];
  const { cos, sin } = angles;
  const r1 = o.sub(o.mul(x1, cos), o.mul(x2, sin));
  const r2 = o.add(o.mul(x2, cos), o.mul(x1, sin));
  return o.concat(parts.length === 3 ? [r1, r2, parts[2]!] : [r1, r2], -1);
}

/**
 * n · tanh(x / n): Gemma 2's soft-capping of attention scores and logits.
 */
export function softCap<T>(o: Ops<T>, x: T, cap: number): T {
  return o.mul(o.tanh(o.mul(x, o.scalar(1 / cap))), o.scalar(cap));
}

export interface AttentionOptions {
  /** Multiplies q·k (1/sqrt(d_head) unless the family says otherwise). */
  scale: number;
  /** Gemma 2: scores soft-capped at this value, after scaling and before the mask. */
  softCap?: number | null;
}

/**
 * softmax(q kᵀ · scale + mask) v per head: q and the result are [batch, seq, heads, d_head] (the
 * TransformerLens shapes of hook_q and hook_z), k and v [batch, seq, kv_heads, d_head] with kv_heads
 * dividing heads (grouped-query attention: query head h reads KV head h / (heads / kv_heads), as
 * transformers' repeat_kv and TransformerLens's repeat_interleave do); `mask` is additive [seq, seq]. q is
 * scaled rather than the [seq, seq] scores: fewer multiplies, the same numbers up to rounding.
 */
export function causalAttention<T>(o: Ops<T>, q: T, k: T, v: T, mask: T, opts: AttentionOptions): T {
  const qh = o.transpose(o.mul(q, o.scalar(opts.scale)), [0, 2, 1, 3]);
  let scores = o.batchMatMul(qh, o.transpose(k, [0, 2, 3, 1]));
  if (opts.softCap) scores = softCap(o, scores, opts.softCap);
  const probs = o.softmax(o.add(scores, mask));
  return o.transpose(o.batchMatMul(probs, o.transpose(v, [0, 2, 1, 3])), [0, 2, 1, 3]);
}

/** k or v [batch, seq, kv_heads, d_head] with each head repeated `groups` times in place: [batch, seq, kv_heads · groups, d_head]. */
export function repeatKvHeads<T>(o: Ops<T>, x: T, kvHeads: number, groups: number, dHead: number): T {
  if (groups === 1) return x;
  const tiled = o.tile(o.reshape(x, [0, 0, kvHeads, 1, dHead]), [1, 1, 1, groups, 1]);
  return o.reshape(tiled, [0, 0, kvHeads * groups, dHead]);
}
