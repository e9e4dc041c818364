/**
 * The page's DOM: token rows with their top features, and a feature's dashboard. Every data string goes in
 * through textContent, never as markup: tokens come from whatever the reader types and from eval datasets.
 */
import { formatDensity } from '../../report/format.js';
import { visibleWhitespace } from '../../report/escape.js';
import type { FeatureDashboard } from '../../report/types.js';
import type { FeatureActivation } from './top-k.js';

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  text?: string,
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

export interface TokenRow {
  id: number;
  text: string;
  special: boolean;
  features: FeatureActivation[];
}

/** Fills the token table; each feature is a button carrying its id and exact activation. */
export function renderTokens(
  body: HTMLElement,
  rows: readonly TokenRow[],
  hasDashboard: (feature: number) => boolean,
): void {
  body.replaceChildren(
    ...rows.map((row, pos) => {
      const tr = el('tr', { class: row.special ? 'tok special' : 'tok', 'data-pos': String(pos) });
      tr.dataset['tokenId'] = String(row.id);
      tr.append(
        el('td', {}, String(pos)),
        el('td', { class: 'tk' }, visibleWhitespace(row.text, { spaces: true })),
      );
      const cell = el('td', { class: 'feats' });
      if (row.features.length === 0) cell.append(el('span', { class: 'empty' }, 'no feature fires'));
      for (const f of row.features) {
        const b = el(
          'button',
          { type: 'button', class: hasDashboard(f.feature) ? 'feat has-dash' : 'feat' },
          `${f.feature}: ${f.activation.toPrecision(3)}`,
        );
        b.dataset['feature'] = String(f.feature);
        b.dataset['act'] = String(f.activation);
        cell.append(b);
      }
      tr.append(cell);
      return tr;
    }),
  );
}

function tokenList(title: string, items: FeatureDashboard['promoted']): HTMLElement {
  const box = el('div', {}, '');
  box.append(el('strong', {}, title));
  const ul = el('ul');
  for (const t of items)
    ul.append(el('li', {}, `${visibleWhitespace(t.token, { spaces: true })}  ${t.value.toFixed(3)}`));
  box.append(ul);
  return box;
}

/** A feature's dashboard, or a note that the evaluation collected none for it. */
export function renderDashboard(
  box: HTMLElement,
  feature: number,
  dash: FeatureDashboard | undefined,
  available: number,
): void {
  const parts: HTMLElement[] = [el('h2', {}, `Feature ${feature}`)];
  if (!dash) {
    parts.push(
      el(
        'p',
        { class: 'empty' },
        available === 0
          ? 'No dashboards: no evaluation of this SAE was found when the explorer was exported (run eval-sae on it, then export again).'
          : `No dashboard for this feature: the evaluation collected ${available} (highlighted buttons).`,
      ),
    );
    box.replaceChildren(...parts);
    return;
  }
  parts.push(
    el(
      'p',
      { class: 'stats' },
      `density ${formatDensity(dash.density)} of eval tokens · max activation ${dash.max_activation.toPrecision(4)}`,
    ),
  );
  const effects = el('div', { class: 'effects' });
  effects.append(tokenList('promotes', dash.promoted), tokenList('suppresses', dash.suppressed));
  parts.push(el('h3', {}, 'Logit effects'), effects, el('h3', {}, 'Top contexts'));
  for (const ctx of dash.top_contexts) {
    const p = el('p', { class: 'ctx' });
    ctx.tokens.forEach((t, i) => {
      const span = el('span', { class: i === ctx.max_index ? 'tk mx' : 'tk' }, visibleWhitespace(t));
      span.title = `${(ctx.activations[i] ?? 0).toPrecision(3)}`;
      p.append(span);
    });
    parts.push(p);
  }
  if (dash.top_contexts.length === 0) parts.push(el('p', { class: 'empty' }, 'no contexts recorded'));
  box.replaceChildren(...parts);
}

/** Features whose promoted tokens contain the query (case-insensitive), strongest promotion first. */
export function renderSearch(
  list: HTMLElement,
  query: string,
  dashboards: readonly FeatureDashboard[],
  open: (feature: number) => void,
): void {
  const q = query.trim().toLowerCase();
  if (q === '') {
    list.replaceChildren();
    return;
  }
  const hits = dashboards
    .map((d) => ({ d, best: d.promoted.find((t) => t.token.toLowerCase().includes(q)) }))
    .filter((h) => h.best !== undefined)
    .sort((a, b) => b.best!.value - a.best!.value);
  if (hits.length === 0) {
    list.replaceChildren(el('li', { class: 'empty' }, 'no feature with a dashboard promotes it'));
    return;
  }
  list.replaceChildren(
    ...hits.map(({ d, best }) => {
      const li = el('li');
      const b = el('button', { type: 'button', class: 'feat has-dash' }, `${d.feature}`);
      b.dataset['feature'] = String(d.feature);
      b.addEventListener('click', () => open(d.feature));
      li.append(
        b,
        ` promotes ${visibleWhitespace(best!.token, { spaces: true })} (${best!.value.toFixed(3)})`,
      );
      return li;
    }),
  );
}
