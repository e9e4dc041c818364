/**
 * The evaluator's outputs: `<run>/<sae>/eval.json` per SAE and `<run>/report-data.json` (the report
 * renderer's input, shape in src/report/types.ts).
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { FeatureDashboard, ReportData, RunInfo, SaeReport } from '../report/types.js';
import { writeJsonAtomic } from '../util/atomic-write.js';
import type { FeatureContexts } from './dashboards.js';
import type { SaeEvalResult } from './evaluator.js';
import { logitEffects, unembedInput } from './logit-effects.js';
import type { UnembedWeights } from './logit-effects.js';
import type { SweepPoint, SweepSummary } from './pareto.js';
import type { EvalTarget } from './sae-targets.js';
import type { TrainingCurvePoint } from './training-curve.js';
import { flatWeightStatistics, weightStatisticsJson } from './weight-stats.js';

export const EVAL_FILENAME = 'eval.json';
export const REPORT_DATA_FILENAME = 'report-data.json';

export interface EvalSettings {
  model: string;
  dataset: string;
  context_size: number;
  prepend_bos: boolean;
  /** Token positions run through the model. */
  n_eval_tokens: number;
  exclude_special_tokens: boolean;
  excluded_token_ids: number[];
  created: string;
}

/** Null for anything that is not a finite number (JSON has no NaN or Infinity). */
function finiteOrNull(v: number | null | undefined): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

export function metricsRecord(result: SaeEvalResult): Record<string, number | null> {
  return Object.fromEntries(
    Object.entries(result.metrics).map(([k, v]) => [k, finiteOrNull(v as number | null)]),
  );
}

export function sweepPointOf(result: SaeEvalResult): SweepPoint {
  return {
    name: result.target.name,
    group: result.target.group,
    l0: finiteOrNull(result.metrics.l0),
    ce_loss_score: finiteOrNull(result.metrics.ce_loss_score),
    explained_variance: finiteOrNull(result.metrics.explained_variance),
  };
}

function describeTarget(t: EvalTarget) {
  return {
    sae: t.name,
    path: t.path,
    architecture: t.config.architecture,
    hook_name: t.hookIn.name,
    ...(t.transcoder ? { hook_name_out: t.hookOut.name } : {}),
    layer: t.hookIn.layer,
    d_in: t.config.d_in,
    d_sae: t.config.d_sae,
    ...(t.transcoder ? { d_out: t.config.d_out ?? t.config.d_in } : {}),
  };
}

/** The content of `<run>/<sae>/eval.json`. */
export function evalJson(result: SaeEvalResult, settings: EvalSettings): Record<string, unknown> {
  return {
    ...describeTarget(result.target),
    ...settings,
    metrics: metricsRecord(result),
    feature_metrics: { feature_density: Array.from(result.sparsity.density) },
    density_histogram: result.sparsity.densityHistogram,
    l0_histogram: result.sparsity.l0Histogram,
    weight_stats: weightStatisticsJson(result.target.weightStats),
  };
}

/** Writes `<runDir>/<sae name>/eval.json` atomically; returns its path. */
export async function writeEvalJson(
  runDir: string,
  result: SaeEvalResult,
  settings: EvalSettings,
): Promise<string> {
  const dir = path.join(runDir, result.target.name);
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, EVAL_FILENAME);
  await writeJsonAtomic(file, evalJson(result, settings));
  return file;
}

/** Dashboards of one SAE: collected contexts plus density, maximum and logit effects of each feature. */
export function featureDashboards(
  result: SaeEvalResult,
  contexts: readonly FeatureContexts[],
  unembed: UnembedWeights | null,
  topTokens = 10,
  decodeToken?: (id: number) => string,
): FeatureDashboard[] {
  const { target, sparsity } = result;
  const [dSae, dOut] = target.decoder.shape as [number, number];
  const inputs = contexts.map((c) => {
    if (!unembed || c.feature >= dSae) return null;
    const row = target.decoder.data.subarray(c.feature * dOut, (c.feature + 1) * dOut);
    return unembedInput(target.hookOut, row, unembed);
  });
  const present = inputs.filter((v): v is Float64Array => v !== null);
  const effects = unembed && present.length > 0 ? logitEffects(present, unembed, topTokens, decodeToken) : [];
  let next = 0;
  return contexts.map((c, i) => {
    const effect = inputs[i] ? effects[next++] : undefined;
    return {
      sae: target.name,
      feature: c.feature,
      density: sparsity.density[c.feature] ?? 0,
      max_activation: sparsity.maxActivation[c.feature] ?? 0,
      top_contexts: c.top_contexts,
      histogram: c.histogram,
      promoted: effect?.promoted ?? [],
      suppressed: effect?.suppressed ?? [],
    };
  });
}

export function saeReport(result: SaeEvalResult, trainingCurve: TrainingCurvePoint[]): SaeReport {
  const t = result.target;
  return {
    name: t.name,
    path: t.path,
    hook_name: t.hookIn.name,
    layer: t.hookIn.layer,
    architecture: t.config.architecture,
    d_in: t.config.d_in,
    d_sae: t.config.d_sae,
    metrics: metricsRecord(result),
    density_histogram: result.sparsity.densityHistogram,
    l0_histogram: result.sparsity.l0Histogram,
    weight_stats: Object.fromEntries(
      Object.entries(flatWeightStatistics(t.weightStats)).filter(([, v]) => Number.isFinite(v)),
    ),
    training_curve: trainingCurve,
  };
}

export function buildReportData(args: {
  run: RunInfo;
  results: readonly SaeEvalResult[];
  curves: ReadonlyMap<string, TrainingCurvePoint[]>;
  sweep: SweepSummary;
  dashboards: FeatureDashboard[];
}): ReportData {
  return {
    run: args.run,
    saes: args.results.map((r) => saeReport(r, args.curves.get(r.target.name) ?? [])),
    pareto: {
      ce: args.sweep.ce,
      explained_variance: args.sweep.explained_variance,
      canonical: args.sweep.canonical,
      rule: args.sweep.rule,
    },
    dashboards: args.dashboards,
  };
}

export async function writeReportData(runDir: string, data: ReportData): Promise<string> {
  const file = path.join(runDir, REPORT_DATA_FILENAME);
  await writeJsonAtomic(file, data);
  return file;
}
