/**
 * Synthetic activations with known sparse features for recovery tests: `nFeatures` random unit
 * directions in R^d; each token activates each feature independently with probability
 * `meanActive / nFeatures`, with a magnitude uniform in [0.5, 1.5].
 */
import { Mulberry32 } from '../src/util/random.js';

export interface SyntheticData {
  d: number;
  nFeatures: number;
  /** [nFeatures, d] unit rows. */
  features: Float32Array;
  /** Next batch of `rows` tokens, row-major [rows, d], with the mean number of active features. */
  batch(rows: number): { x: Float32Array; active: number };
}

function gaussian(rng: Mulberry32): number {
  const u = Math.max(rng.next(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.next());
}

export function syntheticData(d: number, nFeatures: number, meanActive: number, seed: number): SyntheticData {
  const rng = new Mulberry32(seed);
  const features = new Float32Array(nFeatures * d);
  for (let f = 0; f < nFeatures; f++) {
    let sq = 0;
    const row = Array.from({ length: d }, () => gaussian(rng));
    for (const v of row) sq += v * v;
    row.forEach((v, i) => (features[f * d + i] = v / Math.sqrt(sq)));
  }
  const p = meanActive / nFeatures;
  return {
    d,
    nFeatures,
    features,
    batch(rows) {
      const x = new Float32Array(rows * d);
      let active = 0;
      for (let r = 0; r < rows; r++) {
        for (let f = 0; f < nFeatures; f++) {
          if (rng.next() >= p) continue;
          active++;
          const c = 0.5 + rng.next();
          for (let i = 0; i < d; i++) x[r * d + i]! += c * features[f * d + i]!;
        }
      }
      return { x, active: active / rows };
    },
  };
}

/** Mean over true features of the best cosine similarity with any decoder row. */
export function meanBestCosine(
  features: Float32Array,
  nFeatures: number,
  wDec: Float32Array,
  dSae: number,
  d: number,
): number {
  const norms = new Float64Array(dSae);
  for (let j = 0; j < dSae; j++) {
    let sq = 0;
    for (let i = 0; i < d; i++) sq += wDec[j * d + i]! ** 2;
    norms[j] = Math.sqrt(sq) || 1;
  }
  let total = 0;
  for (let f = 0; f < nFeatures; f++) {
    let best = -1;
    for (let j = 0; j < dSae; j++) {
      let dot = 0;
      for (let i = 0; i < d; i++) dot += features[f * d + i]! * wDec[j * d + i]!;
      best = Math.max(best, dot / norms[j]!);
    }
    total += best;
  }
  return total / nFeatures;
}
