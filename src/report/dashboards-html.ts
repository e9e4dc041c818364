import { histogramChart } from './charts.js';
import type { ChartSlots } from './chart-slots.js';
import { escapeHtml as e, visibleWhitespace } from './escape.js';
import { formatDensity, formatSignificant } from './format.js';
import { saeAnchor } from './tables-html.js';
import type { FeatureDashboard, ReportData, SaeReport, TokenValue, TopContext } from './types.js';

/** Palette slot of dashboard histograms (matches the highlight colour of the contexts). */
const COLOR_ACTIVATION = 2;

/**
 * Background opacity of a token: activation over the feature's maximum, so the strongest token of the
 * feature is fully coloured in every context and contexts are comparable with each other.
 */
export function tokenIntensity(activation: number, scale: number): number {
  if (!(scale > 0) || !(activation > 0)) return 0;
  return Math.min(1, activation / scale);
}

/** A token for display on its own (lists, tooltips): whitespace visible, spaces as ·, empty as ∅. */
function tokenLabel(token: string): string {
  return token === '' ? '∅' : visibleWhitespace(token, { spaces: true });
}

/** The activation that gets full colour: the feature's maximum, or a larger one seen in its contexts. */
export function highlightScale(d: FeatureDashboard): number {
  let scale = d.max_activation;
  // A loop, not Math.max(...all): long contexts could exceed the argument-count limit.
  for (const c of d.top_contexts) for (const a of c.activations) if (a > scale) scale = a;
  return scale;
}

function contextHtml(ctx: TopContext, scale: number): string {
  const spans = ctx.tokens.map((tok, i) => {
    const act = ctx.activations[i]!;
    const a = tokenIntensity(act, scale);
    const cls = ['tk'];
    if (i === ctx.max_index) cls.push('mx');
    if (tok === '') cls.push('empty');
    const style = a > 0 ? ` style="--a:${a.toFixed(2)}"` : '';
    const title = `${formatSignificant(act, 3)}  “${tokenLabel(tok)}”`;
    return `<span class="${cls.join(' ')}"${style} title="${e(title)}">${e(visibleWhitespace(tok))}</span>`;
  });
  const peak = ctx.activations[ctx.max_index];
  return (
    `<li><span class="ctx-peak num" title="activation at the highlighted (outlined) token">${peak === undefined ? '—' : e(formatSignificant(peak, 3))}</span>` +
    `<span class="ctx">${spans.join('')}</span></li>`
  );
}

function tokenValueTable(title: string, items: TokenValue[], cls: string): string {
  if (items.length === 0)
    return `<div class="logits ${cls}"><h5>${e(title)}</h5><p class="empty">none given</p></div>`;
  const rows = items
    .map(
      (t) =>
        `<tr><td><code class="tok" title="${e(JSON.stringify(t.token))}">${e(tokenLabel(t.token))}</code></td>` +
        `<td class="num">${t.value > 0 ? '+' : ''}${e(formatSignificant(t.value, 3))}</td></tr>`,
    )
    .join('');
  return `<div class="logits ${cls}"><h5>${e(title)}</h5><table><tbody>${rows}</tbody></table></div>`;
}

export function dashboardId(index: number): string {
  return `dash-${index}`;
}

function dashboardCard(data: ReportData, d: FeatureDashboard, index: number, charts: ChartSlots): string {
  const scale = highlightScale(d);
  const contexts =
    d.top_contexts.length === 0
      ? '<p class="empty">No contexts: the feature did not fire on the evaluation tokens.</p>'
      : `<ol class="contexts">${d.top_contexts.map((c) => contextHtml(c, scale)).join('')}</ol>`;
  const hist = charts.slot(
    `dash-${index}-hist`,
    histogramChart(d.histogram, 'activation', 'tokens', COLOR_ACTIVATION),
    'Activation histogram (tokens where the feature fires)',
    { size: 'small', empty: 'No activation histogram.' },
  );
  return (
    `<article class="card dash" id="${dashboardId(index)}">` +
    `<header><h3>Feature ${d.feature} <span class="sub">in <a href="#${saeAnchor(data, d.sae)}">${e(d.sae)}</a></span></h3>` +
    `<dl class="stats"><dt>density</dt><dd title="${e(String(d.density))}">${e(formatDensity(d.density))}</dd>` +
    `<dt>max activation</dt><dd>${e(formatSignificant(d.max_activation, 4))}</dd></dl></header>` +
    `<div class="dash-body"><div class="dash-contexts"><h4>Top activating contexts</h4>${contexts}</div>` +
    `<div class="dash-side">${hist}<div class="logit-lists">` +
    tokenValueTable('Promoted tokens (logit effect)', d.promoted, 'promoted') +
    tokenValueTable('Suppressed tokens (logit effect)', d.suppressed, 'suppressed') +
    '</div></div></div></article>'
  );
}

/** Index table of the dashboards (links to each card), then the cards grouped by SAE. */
export function dashboardsSection(data: ReportData, charts: ChartSlots): string {
  if (data.dashboards.length === 0) return '<p class="empty">No feature dashboards in this report.</p>';
  const index = data.dashboards
    .map(
      (d, i) =>
        `<tr><td class="txt" data-v="${e(d.sae)}">${e(d.sae)}</td>` +
        `<td class="num" data-v="${d.feature}"><a href="#${dashboardId(i)}">${d.feature}</a></td>` +
        `<td class="num" data-v="${d.density}">${e(formatDensity(d.density))}</td>` +
        `<td class="num" data-v="${d.max_activation}">${e(formatSignificant(d.max_activation, 4))}</td>` +
        `<td class="txt" data-v="${e(d.promoted[0]?.token ?? '')}">${d.promoted
          .slice(0, 3)
          .map((t) => `<code class="tok">${e(tokenLabel(t.token))}</code>`)
          .join(' ')}</td></tr>`,
    )
    .join('');
  const indexTable =
    '<div class="table-wrap"><table class="sortable"><caption>Features with dashboards. Click a feature to jump to it.</caption>' +
    '<thead><tr><th class="txt" data-sort="text">SAE</th><th class="num" data-sort="num">Feature</th>' +
    '<th class="num" data-sort="num">Density</th><th class="num" data-sort="num">Max activation</th>' +
    `<th class="txt" data-sort="text">Top promoted</th></tr></thead><tbody>${index}</tbody></table></div>`;
  const cards: string[] = [];
  for (const sae of data.saes) {
    const mine = data.dashboards.map((d, i) => [d, i] as const).filter(([d]) => d.sae === sae.name);
    if (mine.length === 0) continue;
    cards.push(`<h3 class="group">${e(sae.name)}</h3>`);
    for (const [d, i] of mine) cards.push(dashboardCard(data, d, i, charts));
  }
  return indexTable + explorerNote(data) + cards.join('');
}

/** How to open the explorers the report links (browsers run no modules from file:// pages). */
const SERVE_HINT =
  'served by <code>npx saeflow-serve &lt;this report&#39;s folder&gt;</code>, which prints its address ' +
  '(opened from disk, the explorer cannot run)';

/** The link to an SAE's live explorer, for its section, when eval-sae exported one. */
export function explorerLink(sae: SaeReport): string {
  if (sae.explorer === undefined) return '';
  return (
    `<p class="explorer"><a href="${e(sae.explorer)}">Open the live feature explorer</a>: type text and see ` +
    'which of its features fire, with the model and the SAE running in your browser.</p>'
  );
}

/**
 * How to open the live explorer (issue 18) for these SAEs: a link in each SAE's section when eval-sae
 * exported them (--explorer true), else the command that writes one, with these dashboards included (a
 * page needs its own folder of files, the model graph and onnxruntime's WebAssembly, that a
 * self-contained report cannot carry).
 */
function explorerNote(data: ReportData): string {
  const withDashboards = data.saes.filter((s) => data.dashboards.some((d) => d.sae === s.name));
  const first = withDashboards[0];
  if (!first) return '';
  if (withDashboards.every((s) => s.explorer !== undefined)) {
    return (
      '<p class="note">Type your own text and see which features fire: each SAE in the SAEs section links ' +
      `its live explorer, with these dashboards, ${SERVE_HINT}.</p>`
    );
  }
  return (
    '<p class="note">Type your own text and see which features fire, with the model and the SAE running in ' +
    'your browser: <code>npx run-pipeline pipelines/explore-sae.ts --sae ' +
    `${e(first.path)}</code> (any SAE above), then serve its folder with ` +
    '<code>npx saeflow-serve &lt;its run&gt;</code> and open the address it prints; or evaluate with ' +
    '<code>--explorer true</code> to get one per SAE, linked from the report.</p>'
  );
}
