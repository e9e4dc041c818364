/**
 * The training curve of an SAE trained by saeflow: the `train` records its trainer wrote to the run's
 * metrics.jsonl (`<run>/saes/<name>/` is the SAE folder, `<run>/metrics.jsonl` the metrics). Optional data:
 * no file, or lines that do not parse (a run killed mid-write), simply give fewer points.
 */
import { createReadStream, existsSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';

export interface TrainingCurvePoint {
  step: number;
  tokens: number;
  loss: number | null;
  l0: number | null;
  explained_variance: number | null;
  dead_features: number | null;
  never_fired_features: number | null;
}

export const METRICS_FILENAME = 'metrics.jsonl';

/** metrics.jsonl beside the SAE folder or beside its parent (a trainer's `saes/` directory). */
export function findMetricsFile(saeFolder: string): string | null {
  const parent = path.dirname(saeFolder);
  for (const dir of [parent, path.dirname(parent)]) {
    const file = path.join(dir, METRICS_FILENAME);
    if (existsSync(file)) return file;
  }
  return null;
}

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

/** Thins a curve to at most `maxPoints`, evenly by index, always keeping the last point. */
export function thinCurve<T>(points: readonly T[], maxPoints: number): T[] {
  if (points.length <= maxPoints) return [...points];
  const every = Math.ceil(points.length / maxPoints);
  const out = points.filter((_, i) => i % every === 0);
  if (out[out.length - 1] !== points[points.length - 1]) out.push(points[points.length - 1]!);
  return out;
}

/** The `train` records of SAE `saeName` in `file`, in file order, thinned to `maxPoints`. */
export async function readTrainingCurve(
  file: string,
  saeName: string,
  maxPoints = 500,
): Promise<TrainingCurvePoint[]> {
  const points: TrainingCurvePoint[] = [];
  const lines = createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity });
  for await (const line of lines) {
    // Cheap filter before parsing: most lines of a long run belong to other events or SAEs.
    if (!line.includes('"train"')) continue;
    let record: Record<string, unknown>;
    try {
      record = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    if (record.event !== 'train' || record.sae !== saeName) continue;
    const step = num(record.step);
    const tokens = num(record.tokens);
    if (step === null || tokens === null) continue;
    points.push({
      step,
      tokens,
      loss: num(record.loss),
      l0: num(record.l0),
      explained_variance: num(record.explained_variance),
      dead_features: num(record.dead_features),
      never_fired_features: num(record.never_fired_features),
    });
  }
  return thinCurve(points, maxPoints);
}

/** The curve for an SAE folder, or [] when no metrics file is found next to it. */
export async function trainingCurveFor(saeFolder: string, saeName: string): Promise<TrainingCurvePoint[]> {
  const file = findMetricsFile(saeFolder);
  return file ? readTrainingCurve(file, saeName) : [];
}
