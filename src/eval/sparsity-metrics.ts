/**
 * Sparsity of the feature activations f [tokens, d_sae], accumulated over batches in float64:
 *   l0 = mean over tokens of #(f > 0), with its exact distribution (a count per integer L0 value);
 *   l1 = mean over tokens of Σ f (SAELens sums the activations as they are; they are non-negative for every
 *        architecture here);
 *   feature density = firings / tokens; dead features never fired on the eval tokens;
 *   the density histogram is over log10(density + 1e-10).
 * The largest activation of each feature is kept too: the feature dashboards bin their histograms by it.
 */
import { densityHistogram, logDensity } from '../sae/firing-stats.js';
import type { Histogram } from './histogram.js';
import { integerHistogram } from './histogram.js';

export interface SparsityMetrics {
  l0: number | null;
  l0_std: number | null;
  l0_median: number | null;
  l1: number | null;
  dead_features: number;
  alive_features: number;
  /** Mean over features of log10(density + 1e-10). */
  mean_log10_feature_density: number | null;
}

export interface SparsityResult {
  metrics: SparsityMetrics;
  /** Per-feature firing frequency on the eval tokens. */
  density: Float64Array;
  /** Per-feature largest activation (0 for a feature that never fired). */
  maxActivation: Float32Array;
  densityHistogram: Histogram;
  l0Histogram: Histogram;
  tokens: number;
}

export class SparsityAccumulator {
  private tokens = 0;
  private l1Sum = 0;
  private readonly firings: Float64Array;
  private readonly maxAct: Float32Array;
  /** l0Counts[k] = tokens on which exactly k features fired. */
  private readonly l0Counts: Float64Array;

  constructor(readonly dSae: number) {
    if (!Number.isSafeInteger(dSae) || dSae < 1) throw new RangeError(`d_sae must be >= 1, got ${dSae}`);
    this.firings = new Float64Array(dSae);
    this.maxAct = new Float32Array(dSae);
    this.l0Counts = new Float64Array(dSae + 1);
  }

  get count(): number {
    return this.tokens;
  }

  /** Adds `rows` tokens of feature activations (row-major [rows, d_sae]); `keep[r]` = 0 skips token r. */
  add(f: Float32Array, rows: number, keep?: Uint8Array): void {
    const S = this.dSae;
    if (f.length !== rows * S) {
      throw new RangeError(`feature batch: expected ${rows} x ${S} values, got ${f.length}`);
    }
    const firings = this.firings;
    const maxAct = this.maxAct;
    for (let r = 0; r < rows; r++) {
      if (keep && keep[r] === 0) continue;
      const base = r * S;
      let l0 = 0;
      let l1 = 0;
      for (let j = 0; j < S; j++) {
        const v = f[base + j]!;
        if (v > 0) {
          l0++;
          firings[j] = firings[j]! + 1;
          if (v > maxAct[j]!) maxAct[j] = v;
        }
        l1 += v;
      }
      this.l0Counts[l0] = this.l0Counts[l0]! + 1;
      this.l1Sum += l1;
      this.tokens++;
    }
  }

  result(): SparsityResult {
    const n = this.tokens;
    const S = this.dSae;
    const density = new Float64Array(S);
    let dead = 0;
    for (let j = 0; j < S; j++) {
      density[j] = n > 0 ? this.firings[j]! / n : 0;
      if (this.firings[j] === 0) dead++;
    }
    let l0Sum = 0;
    let l0Sq = 0;
    for (let k = 0; k <= S; k++) {
      l0Sum += k * this.l0Counts[k]!;
      l0Sq += k * k * this.l0Counts[k]!;
    }
    const logDensities = logDensity(this.firings, n);
    let logSum = 0;
    for (const v of logDensities) logSum += v;
    const l0 = n > 0 ? l0Sum / n : null;
    return {
      metrics: {
        l0,
        l0_std: l0 === null ? null : Math.sqrt(Math.max(0, l0Sq / n - l0 * l0)),
        l0_median: n > 0 ? this.l0Quantile(0.5) : null,
        l1: n > 0 ? this.l1Sum / n : null,
        dead_features: n > 0 ? dead : 0,
        alive_features: n > 0 ? S - dead : 0,
        mean_log10_feature_density: n > 0 ? logSum / S : null,
      },
      density,
      maxActivation: this.maxAct.slice(),
      densityHistogram: n > 0 ? densityHistogram(logDensities) : { edges: [], counts: [] },
      l0Histogram: integerHistogram(this.l0Counts),
      tokens: n,
    };
  }

  /** The smallest L0 value k with at least a fraction q of the tokens at or below it. */
  private l0Quantile(q: number): number {
    const target = q * this.tokens;
    let seen = 0;
    for (let k = 0; k < this.l0Counts.length; k++) {
      seen += this.l0Counts[k]!;
      if (seen >= target) return k;
    }
    return this.l0Counts.length - 1;
  }
}
