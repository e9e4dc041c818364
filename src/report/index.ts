import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { writeFileAtomic } from '../util/atomic-write.js';
import { loadReportAssets } from './assets.js';
import { renderHtml } from './html.js';
import { renderMarkdown } from './markdown.js';
import type { ReportData } from './types.js';
import { loadReportData, validateReportData } from './validate.js';

export type * from './types.js';
export { KNOWN_METRICS } from './types.js';
export { loadReportData, validateReportData } from './validate.js';
export { escapeHtml, escapeMarkdownCell, jsonForScript, visibleWhitespace } from './escape.js';
export { renderMarkdown } from './markdown.js';

export const REPORT_HTML = 'report.html';
export const REPORT_MD = 'report.md';

/**
 * Renders the evaluation report into `runDir`: `report.html` (self-contained: Chart.js, styles and data
 * inlined, no network) and `report.md` (the same tables in Markdown). Both are written atomically. The data is
 * validated first; a malformed field is a UserError naming it.
 */
export async function renderReport(
  data: ReportData,
  runDir: string,
): Promise<{ html: string; markdown: string }> {
  const checked = validateReportData(data, 'report data');
  const assets = await loadReportAssets();
  const html = renderHtml(checked, assets);
  const markdown = renderMarkdown(checked);
  await mkdir(runDir, { recursive: true });
  await writeFileAtomic(join(runDir, REPORT_HTML), html);
  await writeFileAtomic(join(runDir, REPORT_MD), markdown);
  return { html, markdown };
}

/** Re-renders a report from a saved `report-data.json` into `runDir` (by default the file's directory). */
export async function renderReportFromFile(
  dataFile: string,
  runDir?: string,
): Promise<{ html: string; markdown: string }> {
  const data = await loadReportData(dataFile);
  return renderReport(data, runDir ?? dirname(dataFile));
}
