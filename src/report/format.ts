import type { KnownMetric } from './types.js';

/** How each known metric is labelled and printed; shared by the HTML and Markdown reports so they agree. */
export interface MetricInfo {
  label: string;
  /** One line shown as a column-header tooltip. */
  doc: string;
  format: (v: number) => string;
}

const fixed = (digits: number) => (v: number) => v.toFixed(digits);

/** Significant digits without locale grouping; switches to exponent form for very small or large values. */
export function formatSignificant(v: number, digits = 4): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a < 1e-3 || a >= 1e6) return v.toExponential(digits - 1);
  return Number(v.toPrecision(digits)).toString();
}

/** Integer with thousands separators, locale-independent so reports are reproducible byte for byte. */
export function formatCount(v: number): string {
  const sign = v < 0 ? '-' : '';
  return (
    sign +
    Math.round(Math.abs(v))
      .toString()
      .replace(/\B(?=(\d{3})+(?!\d))/g, ',')
  );
}

/** 1234567 -> "1.23M": token counts on axes and in headers. */
export function formatSi(v: number): string {
  const a = Math.abs(v);
  for (const [div, suffix] of [
    [1e9, 'B'],
    [1e6, 'M'],
    [1e3, 'k'],
  ] as const) {
    if (a >= div) return `${Number((v / div).toPrecision(3))}${suffix}`;
  }
  return String(Number(v.toPrecision(3)));
}

/** Feature density (fraction of tokens): percent when readable, exponent form when tiny. */
export function formatDensity(d: number): string {
  if (d === 0) return '0';
  if (d >= 1e-3) return `${Number((d * 100).toPrecision(3))}%`;
  return d.toExponential(2);
}

export const METRIC_INFO: Record<KnownMetric, MetricInfo> = {
  mse: { label: 'MSE', doc: 'mean over tokens of Σ_d (x − x̂)²', format: (v) => formatSignificant(v) },
  explained_variance: {
    label: 'Explained var.',
    doc: '1 − E‖x − x̂‖² / (E‖x‖² − ‖E x‖²)',
    format: fixed(4),
  },
  cossim: { label: 'Cos sim', doc: 'mean cosine similarity of x and x̂', format: fixed(4) },
  l2_ratio: { label: 'L2 ratio', doc: 'mean ‖x̂‖ / ‖x‖', format: fixed(4) },
  relative_reconstruction_bias: {
    label: 'Rel. recon. bias',
    doc: 'E‖x̂‖² / E⟨x, x̂⟩ (1 = unbiased)',
    format: fixed(4),
  },
  l0: {
    label: 'L0',
    doc: 'mean number of active features per token',
    format: (v) => (v < 10 ? v.toFixed(2) : v.toFixed(1)),
  },
  l1: { label: 'L1', doc: 'mean over tokens of Σ f', format: (v) => formatSignificant(v) },
  ce_loss_score: {
    label: 'CE loss score',
    doc: '(CE_ablation − CE_sae) / (CE_ablation − CE_clean); 1 = no loss increase',
    format: fixed(4),
  },
  ce_loss_with_sae: {
    label: 'CE with SAE',
    doc: 'next-token cross-entropy (nats) with the SAE spliced in',
    format: fixed(4),
  },
  ce_loss_without_sae: {
    label: 'CE clean',
    doc: 'next-token cross-entropy (nats) of the unmodified model',
    format: fixed(4),
  },
  ce_loss_with_ablation: {
    label: 'CE zero-abl.',
    doc: 'next-token cross-entropy (nats) with the hook zero-ablated',
    format: fixed(4),
  },
  kl_div_score: { label: 'KL score', doc: '(KL_ablation − KL_sae) / KL_ablation', format: fixed(4) },
  kl_div_with_sae: {
    label: 'KL with SAE',
    doc: 'KL(clean ‖ patched) in nats, SAE spliced in',
    format: (v) => formatSignificant(v),
  },
  kl_div_with_ablation: {
    label: 'KL zero-abl.',
    doc: 'KL(clean ‖ patched) in nats, hook zero-ablated',
    format: (v) => formatSignificant(v),
  },
  dead_features: {
    label: 'Dead',
    doc: 'features that never fired on the evaluation tokens',
    format: formatCount,
  },
  alive_features: { label: 'Alive', doc: 'features that fired at least once', format: formatCount },
  mean_log10_feature_density: {
    label: 'Mean log₁₀ density',
    doc: 'mean over features of log10(firings / tokens + 1e-10)',
    format: fixed(2),
  },
};

export function metricInfo(key: string): MetricInfo {
  return (
    (METRIC_INFO as Record<string, MetricInfo | undefined>)[key] ?? {
      label: key,
      doc: key,
      format: (v) => formatSignificant(v),
    }
  );
}

/** The text shown for a metric value; a dash where the metric is absent or does not apply. */
export function formatMetric(key: string, v: number | null | undefined): string {
  return v === null || v === undefined ? '—' : metricInfo(key).format(v);
}
