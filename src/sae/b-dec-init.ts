/**
 * Data-dependent b_dec initialisation (`b_dec_init_method`, from SAELens before 6.0): the mean or the
 * geometric median of a sample of the activations b_dec is subtracted from/added to. The geometric median
 * uses Weiszfeld's iterations as SAELens did (start at the mean, weights 1/max(‖x - m‖, 1e-6), at most 100
 * iterations, stop when the objective improves by no more than ftol · objective), in float64.
 */
export function columnMean(data: Float32Array, rows: number, width: number): Float64Array {
  const mean = new Float64Array(width);
  for (let r = 0; r < rows; r++) for (let c = 0; c < width; c++) mean[c]! += data[r * width + c]!;
  for (let c = 0; c < width; c++) mean[c]! /= rows;
  return mean;
}

function distances(data: Float32Array, rows: number, width: number, point: Float64Array): Float64Array {
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let sq = 0;
    for (let c = 0; c < width; c++) {
      const d = data[r * width + c]! - point[c]!;
      sq += d * d;
    }
    out[r] = Math.sqrt(sq);
  }
  return out;
}

export function geometricMedian(
  data: Float32Array,
  rows: number,
  width: number,
  options: { eps?: number; maxIter?: number; ftol?: number } = {},
): Float64Array {
  const { eps = 1e-6, maxIter = 100, ftol = 1e-20 } = options;
  let median = columnMean(data, rows, width);
  let objective = distances(data, rows, width, median).reduce((a, b) => a + b, 0);
  for (let it = 0; it < maxIter; it++) {
    const d = distances(data, rows, width, median);
    const next = new Float64Array(width);
    let total = 0;
    for (let r = 0; r < rows; r++) {
      const w = 1 / Math.max(d[r]!, eps);
      total += w;
      for (let c = 0; c < width; c++) next[c]! += w * data[r * width + c]!;
    }
    for (let c = 0; c < width; c++) next[c]! /= total;
    median = next;
    const previous = objective;
    objective = distances(data, rows, width, median).reduce((a, b) => a + b, 0);
    if (Math.abs(previous - objective) <= ftol * objective) break;
  }
  return median;
}
