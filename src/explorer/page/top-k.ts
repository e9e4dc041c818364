/** The k largest positive activations of each row of a [rows, width] matrix, largest first (ties: lower id). */
export interface FeatureActivation {
  feature: number;
  activation: number;
}

export function topFeatures(values: Float32Array, width: number, k: number): FeatureActivation[][] {
  const rows = values.length / width;
  const out: FeatureActivation[][] = [];
  for (let r = 0; r < rows; r++) {
    // A sorted list of at most k: SAE rows are mostly zeros, so few entries ever reach the insertion.
    const best: FeatureActivation[] = [];
    const base = r * width;
    for (let j = 0; j < width; j++) {
      const a = values[base + j]!;
      if (!(a > 0)) continue;
      if (best.length === k && a <= best[k - 1]!.activation) continue;
      let at = best.length;
      while (at > 0 && best[at - 1]!.activation < a) at--;
      best.splice(at, 0, { feature: j, activation: a });
      if (best.length > k) best.pop();
    }
    out.push(best);
  }
  return out;
}
