import { summaryRows, trainedSaes } from './summary.js';
import type { Histogram, ReportData, SaeReport, TrainingCurvePoint } from './types.js';

/**
 * Library-neutral chart descriptions, decided here (which series, which axes, log or linear) so the logic is
 * typed and unit-testable; the page script only maps them onto Chart.js. A spec is made only when it has
 * data: every chart in the page therefore has something to draw, and missing data shows as a note instead.
 */
export interface AxisSpec {
  label: string;
  log?: boolean;
  /** Tick format: `si` for token counts (1.2M), `int` for whole numbers, otherwise plain. */
  ticks?: 'si' | 'int' | 'plain';
  min?: number;
  max?: number;
}

export interface PointSpec {
  x: number;
  y: number;
  /** SAE name shown in the tooltip. */
  name?: string;
}

export interface SeriesSpec {
  label: string;
  points: PointSpec[];
  /** Palette index (colours are the page's business). */
  color: number;
  line: boolean;
  pointRadius: number;
  /** Drawn emphasised (the Pareto frontier, canonical SAEs). */
  emphasis?: boolean;
  /** Plot against the right-hand axis. */
  right?: boolean;
}

export interface XyChartSpec {
  type: 'xy';
  x: AxisSpec;
  y: AxisSpec;
  y2?: AxisSpec;
  series: SeriesSpec[];
}

export interface HistogramChartSpec {
  type: 'histogram';
  x: AxisSpec;
  y: AxisSpec;
  edges: number[];
  counts: number[];
  color: number;
}

export type ChartSpec = XyChartSpec | HistogramChartSpec;

/** Palette slots with a fixed meaning; per-layer and per-SAE series use the slots after these. */
export const COLOR_FRONTIER = 0;
export const COLOR_L0 = 1;
export const COLOR_CE = 2;
const FIRST_FREE_COLOR = 3;

function finite(v: number | null | undefined): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

/** A log axis when all values are positive and span about an order of magnitude or more. */
export function wantsLog(values: number[]): boolean {
  if (values.length < 2) return false;
  const min = Math.min(...values);
  const max = Math.max(...values);
  return min > 0 && max / min >= 8;
}

function layerLabel(layer: number | null): string {
  return layer === null ? 'no layer' : `layer ${layer}`;
}

/** Scatter of all SAEs (one series per layer) plus the frontier drawn as a line through its members. */
export function paretoChart(
  data: ReportData,
  metric: 'ce_loss_score' | 'explained_variance',
  frontier: string[],
  yLabel: string,
): XyChartSpec | null {
  const saes = data.saes.filter((s) => finite(s.metrics.l0) && finite(s.metrics[metric]));
  if (saes.length === 0) return null;
  const layers = [...new Set(summaryRows(data).map((r) => r.sae.layer))];
  const point = (s: SaeReport): PointSpec => ({ x: s.metrics.l0!, y: s.metrics[metric]!, name: s.name });
  const series: SeriesSpec[] = layers
    .map((layer, i) => ({
      label: layerLabel(layer),
      points: saes.filter((s) => s.layer === layer).map(point),
      color: FIRST_FREE_COLOR + i,
      line: false,
      pointRadius: 5,
    }))
    .filter((s) => s.points.length > 0);
  const onFrontier = saes.filter((s) => frontier.includes(s.name)).map(point);
  if (onFrontier.length > 0) {
    series.unshift({
      label: 'Pareto frontier',
      points: onFrontier.sort((a, b) => a.x - b.x),
      color: COLOR_FRONTIER,
      line: true,
      pointRadius: 8,
      emphasis: true,
    });
  }
  return {
    type: 'xy',
    x: { label: 'L0 (active features per token)', log: wantsLog(saes.map((s) => s.metrics.l0!)) },
    y: { label: yLabel },
    series,
  };
}

/** L0 (left axis) and CE loss score (right axis) against layer: canonical SAEs joined, all SAEs as points. */
export function layerChart(data: ReportData): XyChartSpec | null {
  const rows = summaryRows(data).filter((r) => r.sae.layer !== null);
  const withL0 = rows.filter((r) => finite(r.sae.metrics.l0));
  const withCe = rows.filter((r) => finite(r.sae.metrics.ce_loss_score));
  if (withL0.length === 0 && withCe.length === 0) return null;
  const series: SeriesSpec[] = [];
  const add = (
    label: string,
    rs: typeof rows,
    key: 'l0' | 'ce_loss_score',
    color: number,
    right: boolean,
  ) => {
    const points = rs.map((r) => ({ x: r.sae.layer!, y: r.sae.metrics[key]!, name: r.sae.name }));
    const canonical = rs
      .filter((r) => r.canonical)
      .map((r) => ({ x: r.sae.layer!, y: r.sae.metrics[key]!, name: r.sae.name }));
    if (canonical.length > 0) {
      series.push({
        label: `${label}, canonical`,
        points: canonical,
        color,
        line: true,
        pointRadius: 6,
        emphasis: true,
        right,
      });
    }
    series.push({ label: `${label}, all SAEs`, points, color, line: false, pointRadius: 4, right });
  };
  if (withL0.length > 0) add('L0', withL0, 'l0', COLOR_L0, false);
  if (withCe.length > 0) add('CE loss score', withCe, 'ce_loss_score', COLOR_CE, withL0.length > 0);
  const l0Axis: AxisSpec = {
    label: 'L0 (active features per token)',
    log: wantsLog(withL0.map((r) => r.sae.metrics.l0!)),
  };
  const ceAxis: AxisSpec = { label: 'CE loss score' };
  // Half a layer of margin each side, so points on the first and last layer are not cut by the plot edge.
  const layers = rows.map((r) => r.sae.layer!);
  return {
    type: 'xy',
    x: { label: 'layer', ticks: 'int', min: Math.min(...layers) - 0.5, max: Math.max(...layers) + 0.5 },
    y: withL0.length > 0 ? l0Axis : ceAxis,
    ...(withL0.length > 0 && withCe.length > 0 ? { y2: ceAxis } : {}),
    series,
  };
}

export function histogramChart(
  h: Histogram,
  xLabel: string,
  yLabel: string,
  color: number,
): HistogramChartSpec | null {
  if (h.counts.length === 0 || h.counts.every((c) => c === 0)) return null;
  return {
    type: 'histogram',
    x: { label: xLabel },
    y: { label: yLabel },
    edges: h.edges,
    counts: h.counts,
    color,
  };
}

export type CurveKey = 'loss' | 'l0' | 'explained_variance' | 'dead_features';

export const CURVE_LABELS: Record<CurveKey, string> = {
  loss: 'training loss',
  l0: 'L0 (active features per token)',
  explained_variance: 'explained variance',
  dead_features: 'dead features (no firing in the window) and never fired',
};

/** One line per trained SAE of `key` against training tokens; null when no SAE logged that quantity. */
export function trainingChart(data: ReportData, key: CurveKey): XyChartSpec | null {
  const saes = trainedSaes(data);
  const series: SeriesSpec[] = [];
  saes.forEach((s, i) => {
    const points = s.training_curve
      .filter((p: TrainingCurvePoint) => finite(p[key]))
      .map((p) => ({ x: p.tokens, y: p[key]! }));
    if (points.length > 0) {
      const label = key === 'dead_features' ? `${s.name}: dead (window)` : s.name;
      series.push({ label, points, color: FIRST_FREE_COLOR + i, line: true, pointRadius: 0 });
    }
    if (key === 'dead_features') {
      // Dead-by-window stays 0 until dead_feature_window steps have run; features that never fired show
      // what it cannot, early in training and in runs shorter than the window.
      const never = s.training_curve
        .filter((p: TrainingCurvePoint) => finite(p.never_fired_features))
        .map((p) => ({ x: p.tokens, y: p.never_fired_features! }));
      if (never.length > 0) {
        series.push({
          label: `${s.name}: never fired`,
          points: never,
          color: FIRST_FREE_COLOR + i,
          line: true,
          pointRadius: 1.5,
        });
      }
    }
  });
  if (series.length === 0) return null;
  const ys = series.flatMap((s) => s.points.map((p) => p.y));
  return {
    type: 'xy',
    x: { label: 'training tokens', ticks: 'si' },
    y: {
      label: CURVE_LABELS[key],
      log: key === 'loss' && wantsLog(ys),
      ...(key === 'dead_features' ? { ticks: 'int' as const } : {}),
    },
    series,
  };
}
