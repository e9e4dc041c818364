/**
 * eval-sae's `--explorer`: an explorer per evaluated SAE (sweep.ts), recorded in the report data as the
 * link report.html shows in each SAE's section. An SAE whose explorer cannot be made (a model too large
 * for a browser tab) is reported and keeps the report's export note; the evaluation itself stands.
 */
import type { WeightProcessing } from '../model/process-weights.js';
import type { ReportData } from '../report/types.js';
import { writeSweepExplorers } from './sweep.js';
import type { SweepExplorer } from './sweep.js';

/** As explore-sae's defaults. */
const MAX_MODEL_BYTES = 2048 * 2 ** 20;
const TOP_K = 8;

export async function exportExplorers(opts: {
  runDir: string;
  /** Its saes[].explorer are set to the links of the explorers written. */
  data: ReportData;
  dashboardsSource: string;
  model: string;
  processing: WeightProcessing;
  log: { info(msg: string): void; warn(msg: string): void };
}): Promise<SweepExplorer[]> {
  const started = performance.now();
  const written = await writeSweepExplorers({
    runDir: opts.runDir,
    saes: opts.data.saes,
    dashboards: opts.data.dashboards,
    dashboardsSource: opts.dashboardsSource,
    model: opts.model,
    processing: opts.processing,
    weights: 'auto',
    topK: TOP_K,
    maxModelBytes: MAX_MODEL_BYTES,
    log: (msg) => opts.log.info(msg),
    warn: (msg) => opts.log.warn(msg),
  });
  for (const x of written) {
    const sae = opts.data.saes.find((s) => s.name === x.name);
    if (sae) sae.explorer = x.href;
  }
  const mib = (n: number) => (n / 2 ** 20).toFixed(1);
  opts.log.info(
    `explorers: ${written.map((x) => `${x.href} (${mib(x.result.pageBytes)} MiB page)`).join(', ')}; ` +
      `written in ${((performance.now() - started) / 1000).toFixed(1)} s; open them with npx saeflow-serve ${opts.runDir}`,
  );
  return written;
}
