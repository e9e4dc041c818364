/**
 * Reconstruction quality of x̂ against x, accumulated over batches of tokens in float64 so that memory stays
 * flat and the result does not depend on how the tokens were batched.
 *
 * Definitions (per token, then the mean over the tokens kept by the mask):
 *   mse = Σ_d (x - x̂)²
 *   explained_variance = 1 - E‖x - x̂‖² / (E‖x‖² - ‖E x‖²)
 *   cossim = cos(x, x̂)                        (0 when x or x̂ is the zero vector)
 *   l2_ratio = ‖x̂‖ / ‖x‖                       (‖x‖ < 1e-4 divides by 1 instead, as SAELens does)
 *   relative_reconstruction_bias = E‖x̂‖² / E⟨x, x̂⟩
 * Differences from SAELens's `get_sparsity_and_variance_metrics`: its `mse` divides each token's squared
 * error by the batch's token count before averaging, and its relative reconstruction bias is the mean of
 * per-batch ratios; both depend on the batch size, ours do not. Its `explained_variance` (the version read
 * for this port) subtracts (mean_d E[x_d²])² where the variance needs ‖E x‖²; we use the latter, as defined
 * above. Its cossim has no guard for a zero vector (NaN).
 */

export interface ReconstructionMetrics {
  mse: number | null;
  explained_variance: number | null;
  cossim: number | null;
  l2_norm_in: number | null;
  l2_norm_out: number | null;
  l2_ratio: number | null;
  relative_reconstruction_bias: number | null;
}

/** Below this ‖x‖ the l2 ratio divides by 1 (SAELens's guard against near-zero inputs). */
const L2_RATIO_MIN_NORM = 1e-4;

export class ReconstructionAccumulator {
  private tokens = 0;
  private sqErr = 0;
  private xSq = 0;
  private xHatSq = 0;
  private dot = 0;
  private cos = 0;
  private ratio = 0;
  private normIn = 0;
  private normOut = 0;
  private readonly sumX: Float64Array;

  constructor(readonly width: number) {
    if (!Number.isSafeInteger(width) || width < 1) throw new RangeError(`width must be >= 1, got ${width}`);
    this.sumX = new Float64Array(width);
  }

  /** Tokens accumulated so far. */
  get count(): number {
    return this.tokens;
  }

  /**
   * Adds `rows` tokens: `x` and `xHat` are row-major [rows, width]; `keep[r]` = 0 leaves token r out
   * (special tokens), absent keeps every token.
   */
  add(x: Float32Array, xHat: Float32Array, rows: number, keep?: Uint8Array): void {
    const d = this.width;
    if (x.length !== rows * d || xHat.length !== rows * d) {
      throw new RangeError(
        `reconstruction batch: expected ${rows} x ${d} values, got x ${x.length} and x̂ ${xHat.length}`,
      );
    }
    const sumX = this.sumX;
    for (let r = 0; r < rows; r++) {
      if (keep && keep[r] === 0) continue;
      const base = r * d;
      let err = 0;
      let xx = 0;
      let hh = 0;
      let xh = 0;
      for (let j = 0; j < d; j++) {
        const a = x[base + j]!;
        const b = xHat[base + j]!;
        const diff = a - b;
        err += diff * diff;
        xx += a * a;
        hh += b * b;
        xh += a * b;
        sumX[j] = sumX[j]! + a;
      }
      const nx = Math.sqrt(xx);
      const nh = Math.sqrt(hh);
      this.tokens++;
      this.sqErr += err;
      this.xSq += xx;
      this.xHatSq += hh;
      this.dot += xh;
      this.cos += nx > 0 && nh > 0 ? xh / (nx * nh) : 0;
      this.ratio += nh / (nx < L2_RATIO_MIN_NORM ? 1 : nx);
      this.normIn += nx;
      this.normOut += nh;
    }
  }

  result(): ReconstructionMetrics {
    const n = this.tokens;
    if (n === 0) {
      return {
        mse: null,
        explained_variance: null,
        cossim: null,
        l2_norm_in: null,
        l2_norm_out: null,
        l2_ratio: null,
        relative_reconstruction_bias: null,
      };
    }
    let meanSq = 0;
    for (const s of this.sumX) meanSq += (s / n) ** 2;
    const totalVariance = this.xSq / n - meanSq;
    const mse = this.sqErr / n;
    return {
      mse,
      explained_variance: totalVariance > 0 ? 1 - mse / totalVariance : null,
      cossim: this.cos / n,
      l2_norm_in: this.normIn / n,
      l2_norm_out: this.normOut / n,
      l2_ratio: this.ratio / n,
      relative_reconstruction_bias: this.dot !== 0 ? this.xHatSq / this.dot : null,
    };
  }
}
