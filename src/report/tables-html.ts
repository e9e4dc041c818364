import { escapeHtml as e } from './escape.js';
import { formatCount, formatMetric, formatSignificant, metricInfo } from './format.js';
import { deadFraction, expansionFactor, metricColumns, summaryRows } from './summary.js';
import type { ReportData, SaeReport } from './types.js';

/**
 * The HTML tables. Numeric cells carry their raw value in `data-v` so the page script sorts by number, not
 * by the formatted text; an empty `data-v` (missing metric) always sorts last.
 */

export interface Column {
  label: string;
  doc?: string;
  numeric: boolean;
}

export function th(col: Column): string {
  const title = col.doc ? ` title="${e(col.doc)}"` : '';
  return `<th scope="col" class="${col.numeric ? 'num' : 'txt'}" data-sort="${col.numeric ? 'num' : 'text'}"${title}>${e(col.label)}</th>`;
}

export function numCell(value: number | null | undefined, html: string): string {
  return `<td class="num" data-v="${value ?? ''}">${html}</td>`;
}

function table(cols: Column[], rows: string[], caption: string): string {
  return (
    `<div class="table-wrap"><table class="sortable"><caption>${e(caption)}</caption>` +
    `<thead><tr>${cols.map(th).join('')}</tr></thead><tbody>${rows.join('')}</tbody></table></div>`
  );
}

/** Anchor id of an SAE's detail card, by its position in `saes`. */
export function saeAnchor(data: ReportData, name: string): string {
  return `sae-${data.saes.findIndex((s) => s.name === name)}`;
}

function saeNameCell(data: ReportData, sae: SaeReport, canonical: boolean): string {
  const star = canonical ? '<span class="star" title="canonical SAE of its layer">★</span> ' : '';
  return `<td class="txt name" data-v="${e(sae.name)}">${star}<a href="#${saeAnchor(data, sae.name)}">${e(sae.name)}</a></td>`;
}

export function summaryTable(data: ReportData): string {
  const m = (k: string): Column => ({ label: metricInfo(k).label, doc: metricInfo(k).doc, numeric: true });
  const cols: Column[] = [
    { label: 'Layer', numeric: true },
    { label: 'SAE', numeric: false },
    { label: 'Hook', numeric: false },
    { label: 'Architecture', numeric: false },
    { label: 'Width', doc: 'd_sae (expansion factor d_sae / d_in)', numeric: true },
    m('l0'),
    m('explained_variance'),
    m('ce_loss_score'),
    m('kl_div_score'),
    {
      label: 'Dead features',
      doc: `${metricInfo('dead_features').doc} (${formatCount(data.run.n_eval_tokens)} tokens)`,
      numeric: true,
    },
  ];
  const rows = summaryRows(data).map(({ sae, canonical }) => {
    const dead = sae.metrics.dead_features;
    const frac = deadFraction(sae);
    const deadHtml =
      dead === null || dead === undefined
        ? '—'
        : `${formatCount(dead)} <span class="dim">(${formatSignificant((frac ?? 0) * 100, 2)}%)</span>`;
    return (
      `<tr${canonical ? ' class="canonical"' : ''}>` +
      numCell(sae.layer, sae.layer === null ? '—' : String(sae.layer)) +
      saeNameCell(data, sae, canonical) +
      `<td class="txt mono">${e(sae.hook_name)}</td>` +
      `<td class="txt">${e(sae.architecture)}</td>` +
      numCell(
        sae.d_sae,
        `${formatCount(sae.d_sae)} <span class="dim">(×${formatSignificant(expansionFactor(sae), 3)})</span>`,
      ) +
      ['l0', 'explained_variance', 'ce_loss_score', 'kl_div_score']
        .map((k) => numCell(sae.metrics[k], formatMetric(k, sae.metrics[k])))
        .join('') +
      numCell(dead, deadHtml) +
      '</tr>'
    );
  });
  return table(cols, rows, 'One row per SAE, by layer. Click a column header to sort.');
}

export function allMetricsTable(data: ReportData): string {
  const keys = metricColumns(data.saes);
  const cols: Column[] = [
    { label: 'SAE', numeric: false },
    ...keys.map((k) => ({ label: metricInfo(k).label, doc: `${k}: ${metricInfo(k).doc}`, numeric: true })),
  ];
  const rows = summaryRows(data).map(
    ({ sae, canonical }) =>
      `<tr${canonical ? ' class="canonical"' : ''}>${saeNameCell(data, sae, canonical)}` +
      keys.map((k) => numCell(sae.metrics[k], formatMetric(k, sae.metrics[k]))).join('') +
      '</tr>',
  );
  return table(cols, rows, 'Every metric the evaluator computed; a dash where it does not apply.');
}

/** One SAE's weight statistics (norms, biases) as a wrapping key/value line; nothing when there are none. */
export function weightStatsList(sae: SaeReport): string {
  const entries = Object.entries(sae.weight_stats);
  if (entries.length === 0) return '';
  return (
    '<dl class="stats kv-inline">' +
    entries.map(([k, v]) => `<dt>${e(k)}</dt><dd class="num">${e(formatSignificant(v))}</dd>`).join('') +
    '</dl>'
  );
}
