/**
 * SAE evaluation: metrics through the model (SAELens's names and conventions), weight statistics, sweeps
 * (Pareto frontiers, canonical SAEs), feature-dashboard data, and the eval.json / report-data.json outputs.
 */
export { flatWeightStatistics, summarize, weightStatistics, weightStatisticsJson } from './weight-stats.js';
export type { SaeHostWeights, Summary, WeightStatistics } from './weight-stats.js';
export { ReconstructionAccumulator } from './reconstruction-metrics.js';
export type { ReconstructionMetrics } from './reconstruction-metrics.js';
export { SparsityAccumulator } from './sparsity-metrics.js';
export type { SparsityMetrics, SparsityResult } from './sparsity-metrics.js';
export { DownstreamAccumulator, ReferenceDistribution } from './downstream-metrics.js';
export type { DownstreamMetrics } from './downstream-metrics.js';
export { FixedBinHistogram, integerHistogram } from './histogram.js';
export type { Histogram } from './histogram.js';
export { canonicalRule, chooseCanonical, frontierByGroup, paretoFrontier, summarizeSweep } from './pareto.js';
export type { CanonicalOptions, SweepPoint, SweepSummary } from './pareto.js';
export {
  findSaeFolders,
  hookWidth,
  loadEvalTarget,
  loadEvalTargets,
  saeModelName,
  sharedMetadata,
} from './sae-targets.js';
export type { EvalTarget, SaeLocation } from './sae-targets.js';
export { SaeEvaluator, keepMask, lossMask } from './evaluator.js';
export type { EvalMetrics, EvaluatorOptions, SaeEvalResult } from './evaluator.js';
export {
  DEFAULT_DASHBOARD_LAYOUT,
  DashboardCollector,
  requestedDashboardFeatures,
  selectDashboardFeatures,
} from './dashboards.js';
export type { DashboardLayout, FeatureContexts, TopContext } from './dashboards.js';
export { hasLogitEffect, logitEffects, tokenString, unembedInput } from './logit-effects.js';
export type { TokenValue, UnembedWeights } from './logit-effects.js';
export { dashboardContexts, saeEvaluation } from './eval-stages.js';
export type { BatchDone } from './eval-stages.js';
export { describeEvalModel, loadEvalModel, modelSpecForSaes } from './eval-model.js';
export type {
  BatchForwards,
  EvalEngine,
  EvalEngineName,
  ForwardsOptions,
  HookCapture,
  TargetForwards,
} from './eval-engine.js';
export { ModelEvalEngine } from './model-eval-engine.js';
export type { ModelEvalEngineOptions } from './model-eval-engine.js';
export type { EvalModel, ModelDescription } from './eval-model.js';
export {
  METRICS_FILENAME,
  findMetricsFile,
  readTrainingCurve,
  thinCurve,
  trainingCurveFor,
} from './training-curve.js';
export type { TrainingCurvePoint } from './training-curve.js';
export {
  EVAL_FILENAME,
  REPORT_DATA_FILENAME,
  buildReportData,
  evalJson,
  featureDashboards,
  metricsRecord,
  saeReport,
  sweepPointOf,
  writeEvalJson,
  writeReportData,
} from './report-data.js';
export type { EvalSettings } from './report-data.js';
export { resolveWindowing } from './eval-settings.js';
export type { Windowing } from './eval-settings.js';
export { writeEvalOutputs } from './eval-outputs.js';
export type { EvalOutputs } from './eval-outputs.js';
