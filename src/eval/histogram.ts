/** Histograms as the report draws them: `edges` ascending, one more than `counts`; counts[i] is in [edges[i], edges[i+1]). */
export interface Histogram {
  edges: number[];
  counts: number[];
}

/**
 * A histogram of integer values given as exact counts per value (`counts[k]` = how often k occurred):
 * bins of equal integer width covering 0..the largest value seen, at most `maxBins` of them. Empty when
 * nothing was counted.
 */
export function integerHistogram(counts: ArrayLike<number>, maxBins = 40): Histogram {
  let last = -1;
  for (let k = 0; k < counts.length; k++) if (counts[k]! > 0) last = k;
  if (last < 0) return { edges: [], counts: [] };
  const width = Math.max(1, Math.ceil((last + 1) / maxBins));
  const bins = Math.ceil((last + 1) / width);
  const out = new Array<number>(bins).fill(0);
  for (let k = 0; k <= last; k++) {
    const b = Math.floor(k / width);
    out[b] = out[b]! + counts[k]!;
  }
  return { edges: Array.from({ length: bins + 1 }, (_, i) => i * width), counts: out };
}

/** Fixed bins over [lo, hi]; values outside are clamped into the first or last bin. */
export class FixedBinHistogram {
  private readonly counts: number[];

  constructor(
    readonly lo: number,
    readonly hi: number,
    readonly bins: number,
  ) {
    if (!(hi > lo) || !Number.isInteger(bins) || bins < 1) {
      throw new RangeError(`histogram needs hi > lo and bins >= 1, got [${lo}, ${hi}] with ${bins}`);
    }
    this.counts = new Array<number>(bins).fill(0);
  }

  add(v: number): void {
    const i = Math.min(
      this.bins - 1,
      Math.max(0, Math.floor(((v - this.lo) / (this.hi - this.lo)) * this.bins)),
    );
    this.counts[i] = this.counts[i]! + 1;
  }

  result(): Histogram {
    const step = (this.hi - this.lo) / this.bins;
    const edges = Array.from({ length: this.bins + 1 }, (_, i) => this.lo + i * step);
    edges[this.bins] = this.hi;
    return { edges, counts: [...this.counts] };
  }
}
