/**
 * Feature firing statistics, as SAELens's trainer keeps them: steps since each feature last fired (dead
 * features: more than `dead_feature_window` steps), and firing counts over the current feature-sampling
 * window (reset every `feature_sampling_window` steps). Counts are float64 on the JS side: exact, cheap
 * (one [d_sae] vector read back per step) and trivially saved for bit-identical resumption.
 */
/** A closed feature-sampling window, JSON-ready for metrics.jsonl (per-feature values: `logFeatureDensity`). */
export interface SparsityReport {
  mean_log10_feature_density: number;
  /** Features with density below 1e-5 and 1e-6. */
  below_1e5: number;
  below_1e6: number;
  histogram: DensityHistogram;
  window_tokens: number;
}

export interface DensityHistogram {
  /** Bin edges over log10(density + 1e-10), ascending; counts[i] is in [edges[i], edges[i+1]). */
  edges: number[];
  counts: number[];
}

export const DENSITY_EPS = 1e-10;

export function logDensity(counts: Float64Array, tokens: number): Float32Array {
  const out = new Float32Array(counts.length);
  for (let j = 0; j < counts.length; j++)
    out[j] = Math.log10((tokens > 0 ? counts[j]! / tokens : 0) + DENSITY_EPS);
  return out;
}

/** A histogram of log10 densities with fixed bins from -10 to 0 (the last bin includes 0). */
export function densityHistogram(logDensities: Float32Array, binWidth = 0.5): DensityHistogram {
  const bins = Math.round(10 / binWidth);
  const edges = Array.from({ length: bins + 1 }, (_, i) => -10 + i * binWidth);
  const counts = new Array<number>(bins).fill(0);
  for (const v of logDensities) {
    const i = Math.min(bins - 1, Math.max(0, Math.floor((v + 10) / binWidth)));
    counts[i]! += 1;
  }
  return { edges, counts };
}

export class FiringStats {
  /** Steps since each feature last fired (SAELens's n_forward_passes_since_fired). */
  readonly sinceFired: Float64Array;
  /** Firings per feature in the current window (act_freq_scores) and the tokens they cover. */
  readonly windowCounts: Float64Array;
  windowTokens = 0;
  /** The last completed window, used for sparsity when the current one has just started. */
  readonly lastWindowCounts: Float64Array;
  lastWindowTokens = 0;
  /** Firings over the whole run. */
  readonly totalCounts: Float64Array;
  totalTokens = 0;

  constructor(readonly dSae: number) {
    this.sinceFired = new Float64Array(dSae);
    this.windowCounts = new Float64Array(dSae);
    this.lastWindowCounts = new Float64Array(dSae);
    this.totalCounts = new Float64Array(dSae);
  }

  /** Records one step: `counts[j]` tokens of `rows` fired feature j. */
  record(counts: ArrayLike<number>, rows: number): void {
    for (let j = 0; j < this.dSae; j++) {
      const c = counts[j]!;
      this.sinceFired[j] = c > 0 ? 0 : this.sinceFired[j]! + 1;
      this.windowCounts[j]! += c;
      this.totalCounts[j]! += c;
    }
    this.windowTokens += rows;
    this.totalTokens += rows;
  }

  deadCount(window: number): number {
    let n = 0;
    for (let j = 0; j < this.dSae; j++) if (this.sinceFired[j]! > window) n++;
    return n;
  }

  /**
   * Features that have not fired once since training began. Unlike deadCount, this does not wait for the
   * window: a run shorter than dead_feature_window reports no dead features however many never fired.
   */
  neverFiredCount(): number {
    let n = 0;
    for (let j = 0; j < this.dSae; j++) if (this.totalCounts[j] === 0) n++;
    return n;
  }

  /** 1 for dead features, 0 otherwise. */
  deadMask(window: number): Float32Array {
    const mask = new Float32Array(this.dSae);
    for (let j = 0; j < this.dSae; j++) mask[j] = this.sinceFired[j]! > window ? 1 : 0;
    return mask;
  }

  /** Ends the window: reports its sparsity and starts a new one. */
  closeWindow(): SparsityReport {
    const report = sparsityReport(this.windowCounts, this.windowTokens);
    this.lastWindowCounts.set(this.windowCounts);
    this.lastWindowTokens = this.windowTokens;
    this.windowCounts.fill(0);
    this.windowTokens = 0;
    return report;
  }

  /** log10 feature density for sparsity.safetensors: the current window, or the last one if it is empty. */
  logFeatureDensity(): Float32Array {
    return this.windowTokens > 0
      ? logDensity(this.windowCounts, this.windowTokens)
      : logDensity(this.lastWindowCounts, this.lastWindowTokens);
  }
}

export function sparsityReport(counts: Float64Array, tokens: number): SparsityReport {
  const log = logDensity(counts, tokens);
  let sum = 0;
  let below5 = 0;
  let below6 = 0;
  for (let j = 0; j < counts.length; j++) {
    sum += log[j]!;
    const density = tokens > 0 ? counts[j]! / tokens : 0;
    if (density < 1e-5) below5++;
    if (density < 1e-6) below6++;
  }
  return {
    mean_log10_feature_density: sum / counts.length,
    below_1e5: below5,
    below_1e6: below6,
    histogram: densityHistogram(log),
    window_tokens: tokens,
  };
}
