import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The static parts of every report: Chart.js, the page script and the stylesheet, inlined verbatim. */
export interface ReportAssets {
  chartJs: string;
  chartJsVersion: string;
  appJs: string;
  css: string;
}

let cached: Promise<ReportAssets> | undefined;

/** Reads the assets once per process (Chart.js from node_modules, so its version is the locked one). */
export function loadReportAssets(): Promise<ReportAssets> {
  cached ??= readAssets().catch((err: unknown) => {
    cached = undefined;
    throw err;
  });
  return cached;
}

async function readAssets(): Promise<ReportAssets> {
  // The package's exports map hides dist/ subpaths, so find the UMD build next to its resolvable entry point.
  const require = createRequire(import.meta.url);
  const chartDist = dirname(require.resolve('chart.js'));
  const here = dirname(fileURLToPath(import.meta.url));
  const [umd, pkg, appJs, css] = await Promise.all([
    readFile(join(chartDist, 'chart.umd.min.js'), 'utf8'),
    readFile(join(chartDist, '..', 'package.json'), 'utf8'),
    readFile(join(here, 'assets', 'report-app.js'), 'utf8'),
    readFile(join(here, 'assets', 'report.css'), 'utf8'),
  ]);
  // A source-map comment would point devtools at a file that is not there.
  const chartJs = umd.replace(/\n?\/\/# sourceMappingURL=\S+\s*$/, '\n');
  for (const [name, text] of [
    ['chart.umd.min.js', chartJs],
    ['report-app.js', appJs],
  ] as const) {
    // Either sequence would end or confuse the inline <script> element the text is placed in.
    if (/<\/script|<!--/i.test(text))
      throw new Error(`${name} contains </script or <!-- and cannot be inlined`);
  }
  if (/<\/style/i.test(css)) throw new Error('report.css contains </style and cannot be inlined');
  const version = (JSON.parse(pkg) as { version?: unknown }).version;
  return { chartJs, chartJsVersion: typeof version === 'string' ? version : 'unknown', appJs, css };
}
