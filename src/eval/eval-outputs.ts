/**
 * Everything an evaluation writes once its passes are done: eval.json per SAE, the sweep summary, training
 * curves, dashboards and report-data.json.
 */
import type { ReportData, RunInfo } from '../report/types.js';
import type { FeatureContexts } from './dashboards.js';
import type { SaeEvalResult } from './evaluator.js';
import type { UnembedWeights } from './logit-effects.js';
import { summarizeSweep } from './pareto.js';
import type { CanonicalOptions, SweepSummary } from './pareto.js';
import {
  buildReportData,
  featureDashboards,
  sweepPointOf,
  writeEvalJson,
  writeReportData,
} from './report-data.js';
import type { EvalSettings } from './report-data.js';
import { trainingCurveFor } from './training-curve.js';

export interface EvalOutputs {
  /** SAE name -> its eval.json. */
  evalFiles: Map<string, string>;
  reportDataFile: string;
  data: ReportData;
  sweep: SweepSummary;
}

export async function writeEvalOutputs(args: {
  runDir: string;
  run: RunInfo;
  settings: EvalSettings;
  results: readonly SaeEvalResult[];
  /** Dashboard contexts by SAE name (empty when dashboards were not collected). */
  contexts: ReadonlyMap<string, FeatureContexts[]>;
  unembed: UnembedWeights | null;
  /** The model's tokenizer's text of one token, for logit effects (default GPT-2's). */
  decodeToken?: (id: number) => string;
  canonical: CanonicalOptions;
}): Promise<EvalOutputs> {
  const { runDir, results } = args;
  const evalFiles = new Map<string, string>();
  for (const r of results) evalFiles.set(r.target.name, await writeEvalJson(runDir, r, args.settings));
  const curves = new Map<string, Awaited<ReturnType<typeof trainingCurveFor>>>();
  for (const r of results)
    curves.set(r.target.name, await trainingCurveFor(r.target.path, r.target.folderName));
  const sweep = summarizeSweep(results.map(sweepPointOf), args.canonical);
  const data = buildReportData({
    run: args.run,
    results,
    curves,
    sweep,
    dashboards: results.flatMap((r) =>
      featureDashboards(r, args.contexts.get(r.target.name) ?? [], args.unembed, undefined, args.decodeToken),
    ),
  });
  const reportDataFile = await writeReportData(runDir, data);
  return { evalFiles, reportDataFile, data, sweep };
}
