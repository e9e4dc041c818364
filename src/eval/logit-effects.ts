/**
 * The tokens a feature promotes and suppresses: its decoder direction taken to the residual stream, then
 * through the unembedding, W_dec[f] · W_U.
 *
 * The values are those sae_dashboard shows on a TransformerLens model loaded with its defaults (`fold_ln`,
 * `center_unembed`): a residual direction r is centred over d_model and scaled by ln_final's weight (the
 * linear part of the final LayerNorm, up to its per-token 1/σ), multiplied by W_U (the tied wte), and the
 * mean over the vocabulary is subtracted (it moves every logit alike, so it changes no probability).
 *
 * Where the decoder writes: residual-width hooks directly; `attn.hook_z` through that layer's W_O;
 * `mlp.hook_post` through W_out; `ln_final.hook_normalized` goes to W_U without the LayerNorm. Other hooks
 * (q/k/v, mlp.hook_pre, ln1/ln2) feed non-linear computations and have no direct logit effect: none is given.
 */
import type { DashboardWeights, HookPoint } from '../model/index.js';
import { gpt2Tokenizer } from '../tokenizer/index.js';

export interface TokenValue {
  token: string;
  value: number;
}

/** The host weights logit effects need, kept after the rest of the model's host copy is dropped. */
export type UnembedWeights = DashboardWeights;

const RESIDUAL_SITES = new Set([
  'hook_embed',
  'hook_pos_embed',
  'hook_resid_pre',
  'hook_resid_mid',
  'hook_resid_post',
  'hook_attn_out',
  'hook_mlp_out',
]);

/** True when a decoder writing at this hook has a direct effect on the logits. */
export function hasLogitEffect(hook: HookPoint): boolean {
  return (
    RESIDUAL_SITES.has(hook.site) ||
    hook.site === 'attn.hook_z' ||
    hook.site === 'mlp.hook_post' ||
    hook.site === 'ln_final.hook_normalized'
  );
}

/** row [n_in] @ W [n_in, d_model]. */
function project(row: Float32Array, w: Float32Array, dModel: number): Float64Array {
  const out = new Float64Array(dModel);
  for (let i = 0; i < row.length; i++) {
    const v = row[i]!;
    if (v === 0) continue;
    const base = i * dModel;
    for (let j = 0; j < dModel; j++) out[j] = out[j]! + v * w[base + j]!;
  }
  return out;
}

/**
 * The vector that multiplies W_U for a decoder row written at `hook`: the LayerNorm-adjusted residual
 * direction, or the row itself at ln_final. Null when the hook has no direct logit effect.
 */
export function unembedInput(hook: HookPoint, row: Float32Array, w: UnembedWeights): Float64Array | null {
  if (!hasLogitEffect(hook)) return null;
  if (hook.site === 'ln_final.hook_normalized') return Float64Array.from(row);
  let residual: Float64Array;
  if (hook.site === 'attn.hook_z') {
    const wo = w.attnOut.get(hook.layer!);
    if (!wo) return null;
    residual = project(row, wo, w.dModel);
  } else if (hook.site === 'mlp.hook_post') {
    const wout = w.mlpOut.get(hook.layer!);
    if (!wout) return null;
    residual = project(row, wout, w.dModel);
  } else {
    residual = Float64Array.from(row);
  }
  let mean = 0;
  for (const v of residual) mean += v;
  mean /= residual.length;
  for (let j = 0; j < residual.length; j++) residual[j] = (residual[j]! - mean) * w.lnFinalWeight[j]!;
  return residual;
}

/** GPT-2's text of one token (`<id>` outside its vocabulary); other models pass their tokenizer's. */
export function tokenString(id: number): string {
  return gpt2Tokenizer.decodeToken(id);
}

/**
 * Logit effects of several directions at once (one pass over W_U), each reduced to its `top` most
 * promoted and most suppressed tokens (largest first, and most negative first).
 */
export function logitEffects(
  inputs: readonly Float64Array[],
  w: UnembedWeights,
  top = 10,
  decodeToken: (id: number) => string = tokenString,
): Array<{ promoted: TokenValue[]; suppressed: TokenValue[] }> {
  const { vocab, dModel, unembed } = w;
  const values = inputs.map(() => new Float64Array(vocab));
  for (let v = 0; v < vocab; v++) {
    const base = v * dModel;
    for (let k = 0; k < inputs.length; k++) {
      const dir = inputs[k]!;
      let s = 0;
      for (let j = 0; j < dModel; j++) s += dir[j]! * unembed[base + j]!;
      values[k]![v] = s;
    }
  }
  return values.map((vals) => {
    let mean = 0;
    for (const x of vals) mean += x;
    mean /= vocab;
    const order = Array.from({ length: vocab }, (_, i) => i).sort((a, b) => vals[b]! - vals[a]! || a - b);
    const n = Math.min(top, vocab);
    const entry = (id: number): TokenValue => ({ token: decodeToken(id), value: vals[id]! - mean });
    return {
      promoted: order.slice(0, n).map(entry),
      suppressed: order
        .slice(vocab - n)
        .reverse()
        .map(entry),
    };
  });
}
