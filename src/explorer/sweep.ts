/**
 * Explorers for every SAE of an evaluation run (eval-sae --explorer, the quickstart): `<run>/explorer/<sae>/`
 * each, with the dashboards that run collected, and one copy of the page script and onnxruntime's
 * WebAssembly in `<run>/explorer/` shared by all of them (13.6 MiB per SAE otherwise).
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { WeightProcessing } from '../model/process-weights.js';
import { UserError } from '../pipeline/errors.js';
import type { FeatureDashboard } from '../report/types.js';
import { writeExplorer } from './export.js';
import type { ExplorerResult } from './export.js';
import { PAGE_FILE } from './manifest.js';
import { writeRuntimeFiles } from './page-files.js';

export const EXPLORERS_DIR = 'explorer';

export interface SweepExplorer {
  /** The SAE's name in the evaluation. */
  name: string;
  /** explorer.html as a URL relative to the run folder (what report.html links). */
  href: string;
  result: ExplorerResult;
}

/**
 * A folder name for an SAE: its name where that is a plain visible name, else with the other characters
 * replaced, so the page is reachable through saeflow-serve (which refuses hidden names) and any server.
 */
export function explorerFolderName(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\./, '_') || '_';
}

export async function writeSweepExplorers(opts: {
  runDir: string;
  saes: ReadonlyArray<{ name: string; path: string }>;
  /** The report's dashboards (FeatureDashboard.sae names the SAE), and the report-data.json they are in. */
  dashboards: readonly FeatureDashboard[];
  dashboardsSource: string;
  model: string;
  processing: WeightProcessing | null;
  weights: 'auto' | 'float32' | 'float16';
  topK: number;
  maxModelBytes: number;
  log: (msg: string) => void;
  /** An SAE whose explorer is refused (a UserError: a model too large for a tab) is skipped with this. */
  warn: (msg: string) => void;
}): Promise<SweepExplorer[]> {
  const root = path.join(opts.runDir, EXPLORERS_DIR);
  await mkdir(root, { recursive: true });
  await writeRuntimeFiles(root, false);
  const written: SweepExplorer[] = [];
  const used = new Set<string>();
  for (const sae of opts.saes) {
    let folder = explorerFolderName(sae.name);
    for (let n = 2; used.has(folder); n++) folder = `${explorerFolderName(sae.name)}-${n}`;
    used.add(folder);
    const mine = opts.dashboards.filter((d) => d.sae === sae.name);
    const result = await writeExplorer({
      sae: sae.path,
      out: path.join(root, folder),
      model: opts.model,
      processing: opts.processing,
      weights: opts.weights,
      topK: opts.topK,
      maxModelBytes: opts.maxModelBytes,
      runtime: '..',
      dashboards: mine.length > 0 ? { source: opts.dashboardsSource, dashboards: mine } : null,
      log: (msg) => opts.log(`explorer ${sae.name}: ${msg}`),
    }).catch((e: unknown) => {
      if (!(e instanceof UserError)) throw e;
      opts.warn(`no explorer for ${sae.name}: ${e.message}`);
      return null;
    });
    if (result === null) continue;
    written.push({ name: sae.name, href: `${EXPLORERS_DIR}/${folder}/${PAGE_FILE}`, result });
  }
  return written;
}
