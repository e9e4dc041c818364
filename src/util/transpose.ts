/** The transpose of a row-major [rows, cols] matrix, optionally scaled; a new array. */
export function transposeMatrix(data: Float32Array, rows: number, cols: number, scale = 1): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    if (scale === 1) for (let c = 0; c < cols; c++) out[c * rows + r] = data[base + c]!;
    else for (let c = 0; c < cols; c++) out[c * rows + r] = data[base + c]! * scale;
  }
  return out;
}
