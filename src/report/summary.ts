import { KNOWN_METRICS } from './types.js';
import type { ReportData, SaeReport } from './types.js';
import { formatCount } from './format.js';

/** One SAE with the flags the tables and charts mark it with. */
export interface SummaryRow {
  sae: SaeReport;
  canonical: boolean;
  onCeFrontier: boolean;
  onEvFrontier: boolean;
}

/** SAEs ordered by layer (SAEs without a layer last), then by L0, then by name: the "by layer" order. */
export function summaryRows(data: ReportData): SummaryRow[] {
  const canonical = new Set(Object.values(data.pareto.canonical));
  const ce = new Set(data.pareto.ce);
  const ev = new Set(data.pareto.explained_variance);
  return [...data.saes].sort(compareByLayer).map((sae) => ({
    sae,
    canonical: canonical.has(sae.name),
    onCeFrontier: ce.has(sae.name),
    onEvFrontier: ev.has(sae.name),
  }));
}

function compareByLayer(a: SaeReport, b: SaeReport): number {
  const la = a.layer ?? Number.POSITIVE_INFINITY;
  const lb = b.layer ?? Number.POSITIVE_INFINITY;
  if (la !== lb) return la < lb ? -1 : 1;
  const l0a = a.metrics.l0 ?? Number.POSITIVE_INFINITY;
  const l0b = b.metrics.l0 ?? Number.POSITIVE_INFINITY;
  if (l0a !== l0b) return l0a < l0b ? -1 : 1;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** Metric keys present (non-null) in at least one SAE: known ones in their fixed order, then others sorted. */
export function metricColumns(saes: SaeReport[]): string[] {
  const present = new Set<string>();
  for (const s of saes) {
    for (const [k, v] of Object.entries(s.metrics)) if (v !== null && v !== undefined) present.add(k);
  }
  const known: readonly string[] = KNOWN_METRICS;
  return [...known.filter((k) => present.has(k)), ...[...present].filter((k) => !known.includes(k)).sort()];
}

/** Dead features as a fraction of the dictionary, or null when the evaluator did not count them. */
export function deadFraction(sae: SaeReport): number | null {
  const dead = sae.metrics.dead_features;
  return dead === null || dead === undefined ? null : dead / sae.d_sae;
}

export function expansionFactor(sae: SaeReport): number {
  return sae.d_sae / sae.d_in;
}

/** SAEs that carry a training curve (SAEs trained in this run). */
export function trainedSaes(data: ReportData): SaeReport[] {
  return data.saes.filter((s) => s.training_curve.length > 0);
}

/** What the two training counts of unused features mean (report.md and report.html). */
export const DEAD_WINDOW_NOTE =
  "Dead (window): features that did not fire in the last dead_feature_window training steps (SAELens's count, " +
  'the features AuxK revives); it stays 0 until that many steps have run, so a shorter run shows none. ' +
  'Never fired: features that did not fire once during training.';

/** The evaluation's dead-feature count names the token count it rests on. */
export function evalDeadLabel(nEvalTokens: number): string {
  return `dead (no firing in ${formatCount(nEvalTokens)} eval tokens)`;
}
