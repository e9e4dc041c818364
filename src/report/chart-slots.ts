import { escapeHtml } from './escape.js';
import type { ChartSpec } from './charts.js';

/**
 * Collects the chart specs of one page while the sections are rendered. Each chart gets a canvas whose
 * `data-chart` names its spec in the page's JSON block; a missing spec becomes a short note, never an empty
 * canvas.
 */
export class ChartSlots {
  readonly specs: Record<string, ChartSpec> = {};

  slot(
    id: string,
    spec: ChartSpec | null,
    caption: string,
    opts: { size?: 'large' | 'small'; empty: string },
  ): string {
    if (spec === null) return `<p class="empty">${escapeHtml(opts.empty)}</p>`;
    if (id in this.specs) throw new Error(`chart id ${id} used twice`);
    this.specs[id] = spec;
    const size = opts.size ?? 'large';
    return (
      `<figure class="chart-fig"><figcaption>${escapeHtml(caption)}</figcaption>` +
      `<div class="chart chart-${size}"><canvas data-chart="${escapeHtml(id)}" role="img" aria-label="${escapeHtml(caption)}"></canvas></div></figure>`
    );
  }
}
