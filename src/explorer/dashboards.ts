/**
 * The feature dashboards an explorer can show: those eval-sae collected for this SAE. inspect-sae's lookup
 * (evalMetricsNextTo) finds the SAE's newest eval.json; eval-sae writes report-data.json, which holds the
 * dashboards, in the directory above it (`<eval run>/<sae>/eval.json`, `<eval run>/report-data.json`).
 */
import { readFile, realpath } from 'node:fs/promises';
import path from 'node:path';
import { REPORT_DATA_FILENAME } from '../eval/report-data.js';
import type { FeatureDashboard, ReportData } from '../report/types.js';
import { evalMetricsNextTo } from '../sae-formats/inspect.js';

export interface FoundDashboards {
  /** The report-data.json they came from. */
  source: string;
  dashboards: FeatureDashboard[];
}

async function realOrNull(p: string): Promise<string | null> {
  try {
    return await realpath(p);
  } catch {
    return null;
  }
}

/** The dashboards of the SAE in `saeDir`, or null when no evaluation of it wrote any. */
export async function findDashboards(saeDir: string): Promise<FoundDashboards | null> {
  const metrics = await evalMetricsNextTo(saeDir);
  if (metrics === null) return null;
  const source = path.join(path.dirname(path.dirname(metrics.file)), REPORT_DATA_FILENAME);
  let data: ReportData;
  try {
    data = JSON.parse(await readFile(source, 'utf8')) as ReportData;
  } catch {
    return null; // an eval.json without its report (an interrupted run): no dashboards, not an error
  }
  const self = await realOrNull(saeDir);
  // The report names SAEs by eval name (`-2` on a clash); its path says which folder each one is.
  const names = new Set<string>();
  for (const s of data.saes ?? []) {
    if ((await realOrNull(s.path)) === self) names.add(s.name);
  }
  const dashboards = (data.dashboards ?? []).filter((d) => names.has(d.sae));
  return dashboards.length === 0 ? null : { source, dashboards };
}
