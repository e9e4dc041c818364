import { escapeMarkdownCell as md } from './escape.js';
import {
  formatCount,
  formatDensity,
  formatMetric,
  formatSi,
  formatSignificant,
  metricInfo,
} from './format.js';
import {
  DEAD_WINDOW_NOTE,
  deadFraction,
  expansionFactor,
  metricColumns,
  summaryRows,
  trainedSaes,
} from './summary.js';
import type { FeatureDashboard, ReportData, TopContext, TrainingCurvePoint } from './types.js';

/** Tokens either side of the peak in a dashboard's context excerpt. */
const EXCERPT_RADIUS = 8;

/**
 * The Markdown summary: the same tables as the HTML report (summary, frontiers, all metrics, training end
 * points, dashboards) for pasting into notes or an issue. All data text goes through escapeMarkdownCell.
 */
export function renderMarkdown(data: ReportData): string {
  const out: string[] = [];
  const run = data.run;
  out.push(`# ${md(run.name)}: SAE evaluation report`, '');
  out.push(
    `- **Model:** ${md(run.model)}`,
    `- **Dataset:** ${md(run.dataset)}`,
    `- **Evaluation tokens:** ${formatCount(run.n_eval_tokens)}`,
    `- **SAEs:** ${data.saes.length}`,
    `- **Created:** ${md(run.created)}`,
  );
  const explorers = data.saes.filter((s) => s.explorer !== undefined);
  if (explorers.length > 0) {
    out.push(
      `- **Live explorers** (serve this folder with \`npx saeflow-serve\`): ${explorers
        .map((s) => `[${md(s.name)}](${s.explorer})`)
        .join(', ')}`,
    );
  }
  out.push('');

  out.push('## Summary', '');
  if (data.saes.length === 0) {
    out.push('No SAEs were evaluated.', '');
  } else {
    const rows = summaryRows(data).map(({ sae, canonical }) => {
      const dead = sae.metrics.dead_features;
      const frac = deadFraction(sae);
      return [
        sae.layer === null ? '—' : String(sae.layer),
        `${canonical ? '★ ' : ''}${md(sae.name)}`,
        md(sae.hook_name),
        md(sae.architecture),
        `${formatCount(sae.d_sae)} (×${formatSignificant(expansionFactor(sae), 3)})`,
        formatMetric('l0', sae.metrics.l0),
        formatMetric('explained_variance', sae.metrics.explained_variance),
        formatMetric('ce_loss_score', sae.metrics.ce_loss_score),
        formatMetric('kl_div_score', sae.metrics.kl_div_score),
        dead === null || dead === undefined
          ? '—'
          : `${formatCount(dead)} (${formatSignificant((frac ?? 0) * 100, 2)}%)`,
      ];
    });
    out.push(
      ...table(
        [
          'Layer',
          'SAE',
          'Hook',
          'Architecture',
          'Width',
          'L0',
          'Explained var.',
          'CE loss score',
          'KL score',
          `Dead features (over ${formatCount(run.n_eval_tokens)} eval tokens)`,
        ],
        [false, false, false, false, true, true, true, true, true, true],
        rows,
      ),
      '',
    );
    if (summaryRows(data).some((r) => r.canonical)) {
      out.push(`★ canonical SAE of its layer${data.pareto.rule ? `: ${md(data.pareto.rule)}` : ''}`, '');
    }
  }

  out.push('## Pareto frontiers', '');
  const frontier = (names: string[]) => (names.length === 0 ? 'none' : names.map((n) => md(n)).join(' → '));
  out.push(
    `- **L0 vs CE loss score:** ${frontier(data.pareto.ce)}`,
    `- **L0 vs explained variance:** ${frontier(data.pareto.explained_variance)}`,
    '',
  );
  const canonical = Object.entries(data.pareto.canonical).sort(
    ([a], [b]) => Number(a) - Number(b) || (a < b ? -1 : 1),
  );
  if (canonical.length > 0) {
    out.push(
      ...table(
        ['Layer', 'Canonical SAE'],
        [true, false],
        canonical.map(([l, n]) => [md(l), md(n)]),
      ),
      '',
    );
  }

  const keys = metricColumns(data.saes);
  if (data.saes.length > 0 && keys.length > 0) {
    out.push('## All metrics', '');
    out.push(
      ...table(
        ['SAE', ...keys.map((k) => metricInfo(k).label)],
        [false, ...keys.map(() => true)],
        summaryRows(data).map(({ sae }) => [
          md(sae.name),
          ...keys.map((k) => formatMetric(k, sae.metrics[k])),
        ]),
      ),
      '',
    );
  }

  const trained = trainedSaes(data);
  if (trained.length > 0) {
    out.push('## Training (last logged values)', '');
    const last = (
      pts: TrainingCurvePoint[],
      k: 'loss' | 'l0' | 'explained_variance' | 'dead_features' | 'never_fired_features',
    ) => {
      for (let i = pts.length - 1; i >= 0; i--) {
        const v = pts[i]![k];
        if (v !== null && v !== undefined) return v;
      }
      return null;
    };
    out.push(
      ...table(
        ['SAE', 'Steps', 'Tokens', 'Loss', 'L0', 'Explained var.', 'Dead (window)', 'Never fired'],
        [false, true, true, true, true, true, true, true],
        trained.map((s) => {
          const end = s.training_curve[s.training_curve.length - 1]!;
          const dead = last(s.training_curve, 'dead_features');
          const never = last(s.training_curve, 'never_fired_features');
          return [
            md(s.name),
            formatCount(end.step),
            formatSi(end.tokens),
            formatMetric('loss', last(s.training_curve, 'loss')),
            formatMetric('l0', last(s.training_curve, 'l0')),
            formatMetric('explained_variance', last(s.training_curve, 'explained_variance')),
            dead === null ? '—' : formatCount(dead),
            never === null ? '—' : formatCount(never),
          ];
        }),
      ),
      '',
      DEAD_WINDOW_NOTE,
      '',
    );
  }

  if (data.dashboards.length > 0) {
    out.push('## Feature dashboards', '');
    out.push(
      'Top context: the tokens around the strongest activation, which is in bold; ↵ marks a newline, · a space in a lone token.',
      '',
    );
    out.push(
      ...table(
        ['SAE', 'Feature', 'Density', 'Max activation', 'Top promoted', 'Top suppressed', 'Top context'],
        [false, true, true, true, false, false, false],
        data.dashboards.map((d) => dashboardRow(d)),
      ),
      '',
    );
  }
  return `${out.join('\n').trimEnd()}\n`;
}

function dashboardRow(d: FeatureDashboard): string[] {
  const tokens = (list: { token: string; value: number }[]) =>
    list.length === 0
      ? '—'
      : list
          .slice(0, 5)
          .map(
            (t) =>
              `“${md(t.token, { spaces: true })}” ${t.value > 0 ? '+' : ''}${formatSignificant(t.value, 3)}`,
          )
          .join(', ');
  return [
    md(d.sae),
    String(d.feature),
    formatDensity(d.density),
    formatSignificant(d.max_activation, 4),
    tokens(d.promoted),
    tokens(d.suppressed),
    d.top_contexts.length === 0 ? '—' : contextExcerpt(d.top_contexts[0]!),
  ];
}

/** A window of tokens around the peak, the peak token in bold; an ellipsis where the window cuts the text. */
export function contextExcerpt(ctx: TopContext): string {
  const from = Math.max(0, ctx.max_index - EXCERPT_RADIUS);
  const to = Math.min(ctx.tokens.length, ctx.max_index + EXCERPT_RADIUS + 1);
  const parts = ctx.tokens.slice(from, to).map((tok, j) => {
    const text = md(tok);
    if (from + j !== ctx.max_index) return text;
    // Emphasis markers must hug non-space text, so leading/trailing spaces stay outside the bold.
    const m = /^( *)(.*?)( *)$/s.exec(text)!;
    return m[2] === '' ? text : `${m[1]}**${m[2]}**${m[3]}`;
  });
  return `${from > 0 ? '…' : ''}${parts.join('')}${to < ctx.tokens.length ? '…' : ''}`;
}

function table(header: string[], numeric: boolean[], rows: string[][]): string[] {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(numeric.map((n) => (n ? '---:' : '---'))), ...rows.map(line)];
}
