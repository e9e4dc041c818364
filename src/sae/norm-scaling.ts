/**
 * `normalize_activations: expected_average_only_in` (Anthropic's April 2024 update, SAELens's
 * ActivationScaler): inputs are multiplied by s = √d / E‖x‖, E‖x‖ being the mean over
 * `n_batches_for_norm_estimate` batches of each batch's mean token norm. Transcoders scale their input and
 * their target separately (s_in from x, s_out from y). The factors are folded into the saved weights.
 */
export class NormEstimate {
  private sum = 0;
  batches = 0;

  constructor(readonly width: number) {}

  /** Adds one batch's mean token norm. */
  observe(data: Float32Array, rows: number): void {
    let total = 0;
    for (let r = 0; r < rows; r++) {
      let sq = 0;
      for (let c = 0; c < this.width; c++) {
        const v = data[r * this.width + c]!;
        sq += v * v;
      }
      total += Math.sqrt(sq);
    }
    this.sum += total / rows;
    this.batches += 1;
  }

  scalingFactor(): number {
    const meanNorm = this.sum / this.batches;
    return Math.sqrt(this.width) / meanNorm;
  }

  toJSON(): { sum: number; batches: number } {
    return { sum: this.sum, batches: this.batches };
  }

  restore(state: { sum: number; batches: number }): void {
    this.sum = state.sum;
    this.batches = state.batches;
  }
}
