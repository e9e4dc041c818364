import { readFile } from 'node:fs/promises';
import { UserError } from '../pipeline/errors.js';
import type {
  FeatureDashboard,
  Histogram,
  ParetoData,
  ReportData,
  RunInfo,
  SaeMetrics,
  SaeReport,
  TokenValue,
  TopContext,
  TrainingCurvePoint,
} from './types.js';

/**
 * Checks a parsed report-data object and returns it in normal form (absent optional sections become empty).
 * Every failure is a UserError naming the source and the JSON path of the bad field, so a hand-edited or
 * truncated report-data.json points straight at the problem instead of rendering a broken page.
 */
export function validateReportData(value: unknown, source: string): ReportData {
  const c = new Checker(source);
  const root = c.object(value, '');
  const run = validateRun(c, root['run'], 'run');
  const saesRaw = c.array(root['saes'], 'saes');
  const saes = saesRaw.map((s, i) => validateSae(c, s, `saes[${i}]`));
  const names = new Set<string>();
  saes.forEach((s, i) => {
    if (names.has(s.name)) c.fail(`saes[${i}].name`, `duplicate SAE name ${JSON.stringify(s.name)}`);
    names.add(s.name);
  });
  const pareto = validatePareto(c, root['pareto'], 'pareto', names);
  const dashboards =
    root['dashboards'] === undefined || root['dashboards'] === null
      ? []
      : c
          .array(root['dashboards'], 'dashboards')
          .map((d, i) => validateDashboard(c, d, `dashboards[${i}]`, names));
  return { run, saes, pareto, dashboards };
}

/** Reads and validates `report-data.json` (or any file of that shape). */
export async function loadReportData(file: string): Promise<ReportData> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new UserError(`cannot read report data ${file}: ${(e as Error).message}`, { cause: e });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${file}: not valid JSON (${(e as Error).message})`, { cause: e });
  }
  return validateReportData(parsed, file);
}

type Obj = Record<string, unknown>;

class Checker {
  constructor(private readonly source: string) {}

  fail(path: string, why: string): never {
    throw new UserError(`${this.source}: ${path === '' ? 'top level' : path}: ${why}`);
  }

  object(v: unknown, path: string): Obj {
    if (typeof v !== 'object' || v === null || Array.isArray(v))
      this.fail(path, `expected an object, got ${kind(v)}`);
    return v as Obj;
  }

  array(v: unknown, path: string): unknown[] {
    if (!Array.isArray(v)) this.fail(path, `expected an array, got ${kind(v)}`);
    return v;
  }

  string(v: unknown, path: string): string {
    if (typeof v !== 'string') this.fail(path, `expected a string, got ${kind(v)}`);
    return v;
  }

  number(v: unknown, path: string): number {
    if (typeof v !== 'number' || !Number.isFinite(v))
      this.fail(path, `expected a finite number, got ${kind(v)}`);
    return v;
  }

  integer(v: unknown, path: string, min: number): number {
    const n = this.number(v, path);
    if (!Number.isInteger(n) || n < min) this.fail(path, `expected an integer >= ${min}, got ${n}`);
    return n;
  }

  nullableNumber(v: unknown, path: string): number | null {
    return v === null || v === undefined ? null : this.number(v, path);
  }

  numbers(v: unknown, path: string): number[] {
    return this.array(v, path).map((x, i) => this.number(x, `${path}[${i}]`));
  }

  strings(v: unknown, path: string): string[] {
    return this.array(v, path).map((x, i) => this.string(x, `${path}[${i}]`));
  }
}

function kind(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'nothing (field missing)';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'number') return String(v);
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  return `a ${typeof v}`;
}

function validateRun(c: Checker, v: unknown, path: string): RunInfo {
  const o = c.object(v, path);
  return {
    name: c.string(o['name'], `${path}.name`),
    created: c.string(o['created'], `${path}.created`),
    model: c.string(o['model'], `${path}.model`),
    dataset: c.string(o['dataset'], `${path}.dataset`),
    n_eval_tokens: c.integer(o['n_eval_tokens'], `${path}.n_eval_tokens`, 0),
  };
}

function validateHistogram(c: Checker, v: unknown, path: string): Histogram {
  if (v === undefined || v === null) return { edges: [], counts: [] };
  const o = c.object(v, path);
  const edges = c.numbers(o['edges'], `${path}.edges`);
  const counts = c.numbers(o['counts'], `${path}.counts`);
  if (counts.length === 0 && edges.length === 0) return { edges, counts };
  if (edges.length !== counts.length + 1) {
    c.fail(path, `needs one more edge than counts, got ${edges.length} edges and ${counts.length} counts`);
  }
  for (let i = 1; i < edges.length; i++) {
    if (!(edges[i]! > edges[i - 1]!)) c.fail(`${path}.edges[${i}]`, 'edges must be strictly increasing');
  }
  counts.forEach((n, i) => {
    if (n < 0) c.fail(`${path}.counts[${i}]`, `negative count ${n}`);
  });
  return { edges, counts };
}

function validateMetrics(c: Checker, v: unknown, path: string): SaeMetrics {
  const o = c.object(v, path);
  const out: SaeMetrics = {};
  for (const [k, x] of Object.entries(o)) out[k] = c.nullableNumber(x, `${path}.${k}`);
  return out;
}

function validateCurvePoint(c: Checker, v: unknown, path: string): TrainingCurvePoint {
  const o = c.object(v, path);
  return {
    step: c.number(o['step'], `${path}.step`),
    tokens: c.number(o['tokens'], `${path}.tokens`),
    loss: c.nullableNumber(o['loss'], `${path}.loss`),
    l0: c.nullableNumber(o['l0'], `${path}.l0`),
    explained_variance: c.nullableNumber(o['explained_variance'], `${path}.explained_variance`),
    dead_features: c.nullableNumber(o['dead_features'], `${path}.dead_features`),
    never_fired_features: c.nullableNumber(o['never_fired_features'], `${path}.never_fired_features`),
  };
}

function validateSae(c: Checker, v: unknown, path: string): SaeReport {
  const o = c.object(v, path);
  const layer =
    o['layer'] === null || o['layer'] === undefined ? null : c.integer(o['layer'], `${path}.layer`, 0);
  const weightStatsRaw =
    o['weight_stats'] === undefined ? {} : c.object(o['weight_stats'], `${path}.weight_stats`);
  const weight_stats: Record<string, number> = {};
  for (const [k, x] of Object.entries(weightStatsRaw))
    weight_stats[k] = c.number(x, `${path}.weight_stats.${k}`);
  const curve =
    o['training_curve'] === undefined || o['training_curve'] === null
      ? []
      : c.array(o['training_curve'], `${path}.training_curve`);
  return {
    name: c.string(o['name'], `${path}.name`),
    path: c.string(o['path'], `${path}.path`),
    hook_name: c.string(o['hook_name'], `${path}.hook_name`),
    layer,
    architecture: c.string(o['architecture'], `${path}.architecture`),
    d_in: c.integer(o['d_in'], `${path}.d_in`, 1),
    d_sae: c.integer(o['d_sae'], `${path}.d_sae`, 1),
    metrics: validateMetrics(c, o['metrics'], `${path}.metrics`),
    density_histogram: validateHistogram(c, o['density_histogram'], `${path}.density_histogram`),
    l0_histogram: validateHistogram(c, o['l0_histogram'], `${path}.l0_histogram`),
    weight_stats,
    training_curve: curve.map((p, i) => validateCurvePoint(c, p, `${path}.training_curve[${i}]`)),
    ...(o['explorer'] === undefined || o['explorer'] === null
      ? {}
      : { explorer: validateExplorerLink(c, o['explorer'], `${path}.explorer`) }),
  };
}

/**
 * A link into the report's own folder: relative, plain path segments only. The report promises it needs no
 * network, and a hand-edited report-data.json must not turn an SAE's section into a link elsewhere.
 */
function validateExplorerLink(c: Checker, v: unknown, path: string): string {
  const link = c.string(v, path);
  const segments = link.split('/');
  if (!segments.every((s) => /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(s))) {
    c.fail(path, `expected a relative path inside the report's folder, got ${JSON.stringify(link)}`);
  }
  return link;
}

function validateSaeNames(c: Checker, v: unknown, path: string, names: Set<string>): string[] {
  const list = c.strings(v, path);
  list.forEach((n, i) => {
    if (!names.has(n)) c.fail(`${path}[${i}]`, `${JSON.stringify(n)} is not the name of an SAE in saes`);
  });
  return list;
}

function validatePareto(c: Checker, v: unknown, path: string, names: Set<string>): ParetoData {
  const o = c.object(v, path);
  const canonicalRaw = o['canonical'] === undefined ? {} : c.object(o['canonical'], `${path}.canonical`);
  const canonical: Record<string, string> = {};
  for (const [layer, name] of Object.entries(canonicalRaw)) {
    const n = c.string(name, `${path}.canonical.${layer}`);
    if (!names.has(n))
      c.fail(`${path}.canonical.${layer}`, `${JSON.stringify(n)} is not the name of an SAE in saes`);
    canonical[layer] = n;
  }
  return {
    ce: o['ce'] === undefined ? [] : validateSaeNames(c, o['ce'], `${path}.ce`, names),
    explained_variance:
      o['explained_variance'] === undefined
        ? []
        : validateSaeNames(c, o['explained_variance'], `${path}.explained_variance`, names),
    canonical,
    rule: o['rule'] === undefined ? '' : c.string(o['rule'], `${path}.rule`),
  };
}

function validateContext(c: Checker, v: unknown, path: string): TopContext {
  const o = c.object(v, path);
  const tokens = c.strings(o['tokens'], `${path}.tokens`);
  const activations = c.numbers(o['activations'], `${path}.activations`);
  if (activations.length !== tokens.length) {
    c.fail(path, `has ${tokens.length} tokens but ${activations.length} activations`);
  }
  const max_index = c.integer(o['max_index'], `${path}.max_index`, 0);
  if (tokens.length > 0 && max_index >= tokens.length) {
    c.fail(`${path}.max_index`, `${max_index} is past the last of ${tokens.length} tokens`);
  }
  return { tokens, activations, max_index };
}

function validateTokenValues(c: Checker, v: unknown, path: string): TokenValue[] {
  if (v === undefined || v === null) return [];
  return c.array(v, path).map((x, i) => {
    const o = c.object(x, `${path}[${i}]`);
    return {
      token: c.string(o['token'], `${path}[${i}].token`),
      value: c.number(o['value'], `${path}[${i}].value`),
    };
  });
}

function validateDashboard(c: Checker, v: unknown, path: string, names: Set<string>): FeatureDashboard {
  const o = c.object(v, path);
  const sae = c.string(o['sae'], `${path}.sae`);
  if (!names.has(sae)) c.fail(`${path}.sae`, `${JSON.stringify(sae)} is not the name of an SAE in saes`);
  const contexts =
    o['top_contexts'] === undefined || o['top_contexts'] === null
      ? []
      : c.array(o['top_contexts'], `${path}.top_contexts`);
  return {
    sae,
    feature: c.integer(o['feature'], `${path}.feature`, 0),
    density: c.number(o['density'], `${path}.density`),
    max_activation: c.number(o['max_activation'], `${path}.max_activation`),
    top_contexts: contexts.map((x, i) => validateContext(c, x, `${path}.top_contexts[${i}]`)),
    histogram: validateHistogram(c, o['histogram'], `${path}.histogram`),
    promoted: validateTokenValues(c, o['promoted'], `${path}.promoted`),
    suppressed: validateTokenValues(c, o['suppressed'], `${path}.suppressed`),
  };
}
