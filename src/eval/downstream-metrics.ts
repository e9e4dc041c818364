/**
 * What splicing an SAE into the model does to its predictions, accumulated over batches in float64.
 *
 * Following SAELens's `get_downstream_reconstruction_metrics`: next-token cross-entropy of the clean model,
 * with the hook replaced by the SAE's reconstruction, and with the hook zero-ablated; KL divergence of the
 * clean next-token distribution against the patched one, at every position; each averaged over all kept
 * positions of all batches, then
 *   ce_loss_score = (CE_zero_ablation - CE_with_sae) / (CE_zero_ablation - CE_clean)
 *   kl_div_score  = (KL_zero_ablation - KL_with_sae) / KL_zero_ablation
 * A score whose denominator is 0 is null (undefined rather than infinite).
 */

export interface DownstreamMetrics {
  ce_loss_score: number | null;
  ce_loss_with_sae: number | null;
  ce_loss_without_sae: number | null;
  ce_loss_with_ablation: number | null;
  kl_div_score: number | null;
  kl_div_with_sae: number | null;
  kl_div_with_ablation: number | null;
}

/**
 * The clean model's next-token distributions for one batch, [rows, vocab] logits in; kept as probabilities
 * plus each row's log-sum-exp so that every comparison costs one pass over the other logits.
 */
export class ReferenceDistribution {
  private readonly probs: Float32Array;
  private readonly lse: Float64Array;
  private readonly mass: Float64Array;

  constructor(
    private readonly logits: Float32Array,
    readonly rows: number,
    readonly vocab: number,
  ) {
    if (logits.length !== rows * vocab) {
      throw new RangeError(`logits: expected ${rows} x ${vocab} values, got ${logits.length}`);
    }
    this.probs = new Float32Array(logits.length);
    this.lse = new Float64Array(rows);
    this.mass = new Float64Array(rows);
    for (let r = 0; r < rows; r++) {
      const base = r * vocab;
      let max = -Infinity;
      for (let v = 0; v < vocab; v++) if (logits[base + v]! > max) max = logits[base + v]!;
      // One exp per entry: exp(a - max) is stored, then normalised in place.
      let sum = 0;
      for (let v = 0; v < vocab; v++) {
        const e = Math.exp(logits[base + v]! - max);
        this.probs[base + v] = e;
        sum += e;
      }
      this.lse[r] = max + Math.log(sum);
      let mass = 0;
      for (let v = 0; v < vocab; v++) {
        const p = this.probs[base + v]! / sum;
        this.probs[base + v] = p;
        mass += p;
      }
      this.mass[r] = mass;
    }
  }

  /**
   * KL(p_clean ‖ q) per row for the logits of a patched run:
   * Σ_v p_v (a_v - b_v) + (lse_b - lse_a) Σ_v p_v, with a the clean logits and b the patched ones.
   */
  klAgainst(other: Float32Array): Float64Array {
    const { rows, vocab } = this;
    if (other.length !== rows * vocab) {
      throw new RangeError(`logits: expected ${rows} x ${vocab} values, got ${other.length}`);
    }
    const out = new Float64Array(rows);
    const { probs, logits } = this;
    for (let r = 0; r < rows; r++) {
      const base = r * vocab;
      let cross = 0;
      let max = -Infinity;
      for (let v = 0; v < vocab; v++) {
        const b = other[base + v]!;
        cross += probs[base + v]! * (logits[base + v]! - b);
        if (b > max) max = b;
      }
      let sum = 0;
      for (let v = 0; v < vocab; v++) sum += Math.exp(other[base + v]! - max);
      const kl = cross + (max + Math.log(sum) - this.lse[r]!) * this.mass[r]!;
      // Rounding can leave a hair below zero where the distributions agree.
      out[r] = Math.max(0, kl);
    }
    return out;
  }
}

function sumKept(values: ArrayLike<number>, keep: Uint8Array | undefined): { sum: number; n: number } {
  let sum = 0;
  let n = 0;
  for (let i = 0; i < values.length; i++) {
    if (keep && keep[i] === 0) continue;
    sum += values[i]!;
    n++;
  }
  return { sum, n };
}

export class DownstreamAccumulator {
  private ceN = 0;
  private ceClean = 0;
  private ceSae = 0;
  private ceAblation = 0;
  private klN = 0;
  private klSae = 0;
  private klAblation = 0;

  /** Per-position losses of one batch (same layout for all three); `keep[i]` = 0 leaves position i out. */
  addCe(
    clean: ArrayLike<number>,
    withSae: ArrayLike<number>,
    ablated: ArrayLike<number>,
    keep?: Uint8Array,
  ): void {
    if (withSae.length !== clean.length || ablated.length !== clean.length) {
      throw new RangeError(
        `CE batch: ${clean.length} clean, ${withSae.length} with-SAE and ${ablated.length} ablated losses`,
      );
    }
    const c = sumKept(clean, keep);
    this.ceClean += c.sum;
    this.ceSae += sumKept(withSae, keep).sum;
    this.ceAblation += sumKept(ablated, keep).sum;
    this.ceN += c.n;
  }

  /** Per-position KL divergences of one batch; `keep[i]` = 0 leaves position i out. */
  addKl(withSae: ArrayLike<number>, ablated: ArrayLike<number>, keep?: Uint8Array): void {
    if (ablated.length !== withSae.length) {
      throw new RangeError(`KL batch: ${withSae.length} with-SAE and ${ablated.length} ablated values`);
    }
    const s = sumKept(withSae, keep);
    this.klSae += s.sum;
    this.klAblation += sumKept(ablated, keep).sum;
    this.klN += s.n;
  }

  result(): DownstreamMetrics {
    const ce = this.ceN > 0;
    const kl = this.klN > 0;
    const clean = ce ? this.ceClean / this.ceN : null;
    const withSae = ce ? this.ceSae / this.ceN : null;
    const ablation = ce ? this.ceAblation / this.ceN : null;
    const klSae = kl ? this.klSae / this.klN : null;
    const klAblation = kl ? this.klAblation / this.klN : null;
    return {
      ce_loss_score:
        clean !== null && withSae !== null && ablation !== null && ablation !== clean
          ? (ablation - withSae) / (ablation - clean)
          : null,
      ce_loss_with_sae: withSae,
      ce_loss_without_sae: clean,
      ce_loss_with_ablation: ablation,
      kl_div_score:
        klSae !== null && klAblation !== null && klAblation !== 0 ? (klAblation - klSae) / klAblation : null,
      kl_div_with_sae: klSae,
      kl_div_with_ablation: klAblation,
    };
  }
}
