import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Observable, lastValueFrom, toArray } from 'rxjs';
import { type ActivationBatch, type ActivationDtype, makeActivationBatch } from '../src/arrow/index.js';

/** The value the pyarrow fixtures hold at (row, j): a multiple of 1/16, exact in float16. */
export function formulaValue(row: number, j: number): number {
  return (((row * 31 + j * 7) % 97) - 48) / 16;
}

export function formulaMatrix(firstRow: number, rows: number, d: number): Float32Array {
  const out = new Float32Array(rows * d);
  for (let r = 0; r < rows; r++) for (let j = 0; j < d; j++) out[r * d + j] = formulaValue(firstRow + r, j);
  return out;
}

/** Deterministic, incompressible-looking float values for row `row`, column j of hook number `h`. */
export function noiseValue(row: number, j: number, h: number): number {
  const x = Math.sin(row * 12.9898 + j * 78.233 + h * 37.719) * 43758.5453;
  return (x - Math.floor(x)) * 4 - 2;
}

export interface TestHook {
  readonly name: string;
  readonly d: number;
}

export const HOOKS: readonly TestHook[] = [
  { name: 'blocks.0.hook_resid_pre', d: 16 },
  { name: 'blocks.1.hook_mlp_out', d: 8 },
];

/** Rows [firstRow, firstRow + rows) of a synthetic token stream with ids (context 32) and noise activations. */
export function syntheticBatch(
  firstRow: number,
  rows: number,
  hooks: readonly TestHook[] = HOOKS,
  dtype: ActivationDtype = 'float32',
): ActivationBatch {
  const seq = new BigInt64Array(rows);
  const pos = new Int32Array(rows);
  const token = new Int32Array(rows);
  for (let i = 0; i < rows; i++) {
    const r = firstRow + i;
    seq[i] = BigInt(Math.floor(r / 32));
    pos[i] = r % 32;
    token[i] = (r * 7919) % 50257;
  }
  const data: Record<string, { data: Float32Array; d: number }> = {};
  hooks.forEach((h, k) => {
    const values = new Float32Array(rows * h.d);
    for (let i = 0; i < rows; i++)
      for (let j = 0; j < h.d; j++) values[i * h.d + j] = noiseValue(firstRow + i, j, k);
    data[h.name] = { data: values, d: h.d };
  });
  return makeActivationBatch({ seq, pos, token, hooks: data, dtype });
}

/** The same token stream cut into batches of the given sizes. */
export function syntheticStream(
  sizes: readonly number[],
  hooks: readonly TestHook[] = HOOKS,
): ActivationBatch[] {
  const out: ActivationBatch[] = [];
  let row = 0;
  for (const n of sizes) {
    out.push(syntheticBatch(row, n, hooks));
    row += n;
  }
  return out;
}

export function collect<T>(obs: Observable<T>): Promise<T[]> {
  return lastValueFrom(obs.pipe(toArray()));
}

export function makeTempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `saeflow-${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Every file of a directory with its bytes, for byte-for-byte comparisons. */
export function dirContents(dir: string): Map<string, Buffer> {
  return new Map(
    readdirSync(dir)
      .sort()
      .map((n) => [n, readFileSync(join(dir, n))]),
  );
}
