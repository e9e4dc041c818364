/**
 * The evaluator's output (`report-data.json`), the single input of the report renderer.
 * Metric values may be null or absent where a metric does not apply (no CE metrics for a transcoder
 * without logits); the renderer shows those as a dash.
 */

/** Metrics the report knows how to label and format; any other numeric key is shown as-is. */
export const KNOWN_METRICS = [
  'mse',
  'explained_variance',
  'cossim',
  'l2_ratio',
  'relative_reconstruction_bias',
  'l0',
  'l1',
  'ce_loss_score',
  'ce_loss_with_sae',
  'ce_loss_without_sae',
  'ce_loss_with_ablation',
  'kl_div_score',
  'kl_div_with_sae',
  'kl_div_with_ablation',
  'dead_features',
  'alive_features',
  'mean_log10_feature_density',
] as const;

export type KnownMetric = (typeof KNOWN_METRICS)[number];

export type SaeMetrics = { [K in KnownMetric]?: number | null } & { [k: string]: number | null | undefined };

/** Bin edges (one more than counts) and the count in each bin. Empty arrays mean "no data". */
export interface Histogram {
  edges: number[];
  counts: number[];
}

export interface TrainingCurvePoint {
  step: number;
  tokens: number;
  loss?: number | null;
  l0?: number | null;
  explained_variance?: number | null;
  dead_features?: number | null;
  /** Features that had not fired once since training began (dead_features waits for the window). */
  never_fired_features?: number | null;
}

export interface SaeReport {
  name: string;
  path: string;
  hook_name: string;
  layer: number | null;
  architecture: string;
  d_in: number;
  d_sae: number;
  metrics: SaeMetrics;
  density_histogram: Histogram;
  l0_histogram: Histogram;
  weight_stats: { [k: string]: number };
  /** Empty for SAEs that were not trained in this run (pretrained ones). */
  training_curve: TrainingCurvePoint[];
  /**
   * The SAE's live explorer (eval-sae --explorer): its explorer.html as a URL relative to the report,
   * inside the report's folder. Absent when none was exported.
   */
  explorer?: string;
}

export interface ParetoData {
  /** Names of the SAEs on the L0 vs CE-loss-score frontier. */
  ce: string[];
  /** Names of the SAEs on the L0 vs explained-variance frontier. */
  explained_variance: string[];
  /** The canonical SAE of each layer, keyed by the layer number as a string. */
  canonical: { [layer: string]: string };
  /** How the canonical SAEs were chosen, in words. */
  rule: string;
}

export interface TopContext {
  tokens: string[];
  activations: number[];
  /** Index of the token where the feature fires most in this context. */
  max_index: number;
}

export interface TokenValue {
  token: string;
  value: number;
}

export interface FeatureDashboard {
  sae: string;
  feature: number;
  density: number;
  max_activation: number;
  top_contexts: TopContext[];
  histogram: Histogram;
  promoted: TokenValue[];
  suppressed: TokenValue[];
}

export interface RunInfo {
  name: string;
  created: string;
  model: string;
  dataset: string;
  n_eval_tokens: number;
}

export interface ReportData {
  run: RunInfo;
  saes: SaeReport[];
  pareto: ParetoData;
  dashboards: FeatureDashboard[];
}
