/**
 * A report on a loaded SAE without running it on data: its configuration, what was converted while
 * loading, weight statistics (src/eval's `weightStatistics`), the feature densities of sparsity.safetensors
 * when present, and the metrics of the `eval.json` eval-sae wrote for it (see `evalMetricsFor`).
 */
import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { summarize, weightStatistics, weightStatisticsJson } from '../eval/index.js';
import type { Summary } from '../eval/index.js';
import { UserError } from '../pipeline/errors.js';
import type { LoadedSae } from './types.js';

export interface EvalMetrics {
  file: string;
  /** Every numeric leaf, by dotted path (`metrics.sparsity.l0`). */
  values: Record<string, number>;
  /** The usual headline metrics, by their leaf name, where found. */
  headline: Record<string, number>;
}

export interface SaeInspection {
  source: string;
  format: string;
  release: LoadedSae['release'] | null;
  architecture: string;
  d_in: number;
  d_sae: number;
  d_out: number;
  hook_name: string | null;
  hook_name_out: string | null;
  required_processing: string;
  config: LoadedSae['config'];
  notes: string[];
  weights: Record<string, unknown>;
  /** Summary of log10 feature density from sparsity.safetensors. */
  sparsity: (Summary & { features_below_1e_5: number; features_below_1e_6: number }) | null;
  eval: EvalMetrics | null;
}

const HEADLINE = [
  'l0',
  'l1',
  'mse',
  'explained_variance',
  'cossim',
  'cosine_similarity',
  'l2_ratio',
  'relative_reconstruction_bias',
  'ce_loss_score',
  'kl_div_score',
  'kl_score',
  'dead_features',
];

function numericLeaves(value: unknown, prefix: string, out: Record<string, number>, depth = 0): void {
  if (depth > 8) return;
  if (typeof value === 'number' && Number.isFinite(value)) {
    out[prefix] = value;
  } else if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value))
      numericLeaves(v, prefix ? `${prefix}.${k}` : k, out, depth + 1);
  }
}

async function readJsonIfPresent(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw e;
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new UserError(`${file}: invalid JSON (${(e as Error).message})`);
  }
}

/**
 * The eval.json written for the SAE in `dir`, newest first: in its own folder, under its name in the parent's
 * eval.json, or where eval-sae writes one, `<eval run>/<sae name>/eval.json`, whose `path` names this folder.
 * Eval runs are looked for in the SAE's training run (`<run>/saes/<name>/`: the quickstart evaluates into the
 * run that trained) and in that run's sibling runs (`runs/eval-sae-*` beside `runs/gpt2-resid-*`).
 */
export async function evalMetricsNextTo(dir: string): Promise<EvalMetrics | null> {
  const own = path.join(dir, 'eval.json');
  let file = own;
  let data = await readJsonIfPresent(own);
  if (data === undefined) {
    file = path.join(path.dirname(path.resolve(dir)), 'eval.json');
    const parent = await readJsonIfPresent(file);
    const key = path.basename(path.resolve(dir));
    if (typeof parent === 'object' && parent !== null && Object.hasOwn(parent, key)) {
      data = (parent as Record<string, unknown>)[key];
    } else {
      const found = await evalWrittenFor(dir);
      if (found === null) return null;
      ({ file, data } = found);
    }
  }
  const values: Record<string, number> = {};
  numericLeaves(data, '', values);
  const headline: Record<string, number> = {};
  for (const [key, v] of Object.entries(values)) {
    const leaf = key.split('.').at(-1)!;
    if (HEADLINE.includes(leaf) && !(leaf in headline)) headline[leaf] = v;
  }
  return { file, values, headline };
}

async function realOrNull(p: string): Promise<string | null> {
  try {
    return await realpath(p);
  } catch {
    return null;
  }
}

async function subDirs(dir: string): Promise<string[]> {
  try {
    const entries = await readdir(dir, { withFileTypes: true });
    return entries.filter((e) => e.isDirectory()).map((e) => path.join(dir, e.name));
  } catch {
    return [];
  }
}

/** The newest `<run>/<name>/eval.json` around the SAE's training run whose `path` is this SAE's folder. */
async function evalWrittenFor(dir: string): Promise<{ file: string; data: unknown } | null> {
  const self = await realOrNull(dir);
  if (self === null) return null;
  const name = path.basename(self);
  const parent = path.dirname(self);
  const run = path.basename(parent) === 'saes' ? path.dirname(parent) : parent;
  const runs = [run, ...(await subDirs(path.dirname(run))).filter((r) => r !== run)];
  let best: { file: string; data: unknown; time: number } | null = null;
  for (const r of runs) {
    // eval-sae names an SAE's folder by the SAE's folder name, with -2, -3 on a clash.
    for (const sub of await subDirs(r)) {
      const base = path.basename(sub);
      if (base !== name && !base.startsWith(`${name}-`)) continue;
      const file = path.join(sub, 'eval.json');
      const data = await readJsonIfPresent(file).catch(() => undefined);
      if (typeof data !== 'object' || data === null) continue;
      const recorded = (data as { path?: unknown }).path;
      if (typeof recorded !== 'string' || (await realOrNull(recorded)) !== self) continue;
      const time = (await stat(file)).mtimeMs;
      if (best === null || time > best.time) best = { file, data, time };
    }
  }
  return best && { file: best.file, data: best.data };
}

function sparsitySummary(sparsity: Float32Array | null): SaeInspection['sparsity'] {
  if (!sparsity) return null;
  let below5 = 0;
  let below6 = 0;
  for (const v of sparsity) {
    if (v < -5) below5++;
    if (v < -6) below6++;
  }
  return { ...summarize(sparsity), features_below_1e_5: below5, features_below_1e_6: below6 };
}

export async function inspectSae(
  loaded: LoadedSae,
  options: { perFeature?: boolean } = {},
): Promise<SaeInspection> {
  const stats = weightStatistics({ tensors: loaded.tensors });
  const meta = loaded.config.metadata;
  const folder = loaded.format === 'gemma-scope' ? path.dirname(loaded.source) : loaded.source;
  return {
    source: loaded.source,
    format: loaded.format,
    release: loaded.release ?? null,
    architecture: loaded.config.architecture,
    d_in: loaded.config.d_in,
    d_sae: loaded.config.d_sae,
    d_out: loaded.config.d_out ?? loaded.config.d_in,
    hook_name: typeof meta.hook_name === 'string' ? meta.hook_name : null,
    hook_name_out: typeof meta.hook_name_out === 'string' ? meta.hook_name_out : null,
    required_processing: loaded.requiredProcessing,
    config: loaded.config,
    notes: loaded.notes,
    weights: weightStatisticsJson(stats, options.perFeature ?? false),
    sparsity: sparsitySummary(loaded.sparsity),
    eval: await evalMetricsNextTo(folder),
  };
}

const fmt = (v: number) =>
  Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(3) : v.toFixed(4);

/** The report as lines for a log or a terminal. */
export function describeInspection(r: SaeInspection): string[] {
  const w = r.weights as {
    decoder_norm: Summary & { max_deviation_from_1: number };
    encoder_norm: Summary;
    encoder_decoder_cosine: Summary | null;
    b_dec_norm: number;
  };
  const s = (x: Summary) => `mean ${fmt(x.mean)}, std ${fmt(x.std)}, min ${fmt(x.min)}, max ${fmt(x.max)}`;
  const lines = [
    `${r.source} (${r.format}${r.release ? `, ${r.release.release}/${r.release.saeId}` : ''})`,
    `architecture ${r.architecture}: d_in ${r.d_in}, d_sae ${r.d_sae}${r.d_out !== r.d_in ? `, d_out ${r.d_out}` : ''}; hook ${r.hook_name ?? '(unknown)'}${r.hook_name_out ? ` -> ${r.hook_name_out}` : ''}; model processing ${r.required_processing}`,
    `decoder norms: ${s(w.decoder_norm)}; max |norm - 1| ${fmt(w.decoder_norm.max_deviation_from_1)}`,
    `encoder norms: ${s(w.encoder_norm)}`,
  ];
  if (w.encoder_decoder_cosine) lines.push(`encoder-decoder cosine: ${s(w.encoder_decoder_cosine)}`);
  lines.push(`‖b_dec‖ ${fmt(w.b_dec_norm)}`);
  if (r.sparsity) {
    lines.push(
      `log10 feature density: ${s(r.sparsity)}; ${r.sparsity.features_below_1e_5} below 1e-5, ${r.sparsity.features_below_1e_6} below 1e-6`,
    );
  }
  if (r.eval) {
    const h = Object.entries(r.eval.headline).map(([k, v]) => `${k} ${fmt(v)}`);
    lines.push(
      `${r.eval.file}: ${h.length > 0 ? h.join(', ') : `${Object.keys(r.eval.values).length} values`}`,
    );
  }
  for (const n of r.notes) lines.push(`note: ${n}`);
  return lines;
}
