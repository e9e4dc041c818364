/**
 * The quickstart's way to the explorer, end to end: eval-sae with --explorer true on a small run of two SAEs
 * writes an explorer per SAE (one shared copy of the script and onnxruntime's WebAssembly) with the run's
 * own dashboards, and the report links them; saeflow-serve serves the run with the cross-origin-isolation
 * headers; in headless Chromium the report's link opens a page that runs on its default threads and shows
 * the features saeflow's own encode computes (test/explorer-reference.ts).
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExplorerManifest } from '../src/explorer/manifest.js';
import { serve } from '../src/explorer/serve-cli.js';
import type { StaticServer } from '../src/explorer/static-server.js';
import type { ReplacementSae } from '../src/model/index.js';
import { selectBackend } from '../src/pipeline/backend.js';
import { parseCliArgs } from '../src/pipeline/cli-args.js';
import { runPipeline } from '../src/pipeline/runner.js';
import type { FeatureDashboard, ReportData } from '../src/report/types.js';
import { writeSaeFolder } from '../src/sae/saelens-folder.js';
import { launchChromium, openPage, runText, waitForExplorer } from './explorer-page.js';
import {
  expectedThreads,
  expectedTop,
  expectOnlyOwnRequests,
  expectSameFeatures,
  referenceFeatures,
} from './explorer-reference.js';
import { randomSae } from './replacement-helpers.js';
import { testIo } from './runner-io.js';

const TINY_GPT2 = path.resolve('models/tiny-gpt2');
const HOOK = 'blocks.1.hook_resid_post';
const SAES: Record<string, ReplacementSae> = {
  wide: randomSae({ architecture: 'standard', hook: HOOK, dSae: 128, seed: 31 }),
  narrow: randomSae({ architecture: 'topk', hook: HOOK, dSae: 96, k: 6, seed: 32 }),
};
const TEXT = 'Call me Ishmael. The whale swam past the ship.';

let dir: string;
let run: string;
let result: { report: string; explorers: string[] };
let browser: Browser | undefined;
let server: StaticServer | null = null;
const printed: string[] = [];

beforeAll(async () => {
  await selectBackend('wasm');
  dir = await mkdtemp(path.join(tmpdir(), 'saeflow-explorer-report-'));
  for (const [name, sae] of Object.entries(SAES)) {
    const at = path.join(dir, 'train', 'saes', name);
    await mkdir(at, { recursive: true });
    await writeSaeFolder(at, sae.config, {
      architecture: sae.config.architecture,
      tensors: { ...sae.tensors },
    });
  }
  run = path.join(dir, 'eval');
  const outcome = await runPipeline(
    parseCliArgs([
      'pipelines/eval-sae.ts',
      ...['--sae', path.join(dir, 'train', 'saes'), '--model', TINY_GPT2],
      ...['--n_eval_tokens', '256', '--n_dashboard_features', '3', '--explorer', 'true', '--out', run],
    ]),
    testIo(),
  );
  expect(outcome?.status).toBe('completed');
  result = outcome!.result as typeof result;
  browser = await launchChromium();
  server = await serve([run, '--port', '0'], (line) => printed.push(line));
});

afterAll(async () => {
  await server?.close();
  await browser?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('eval-sae --explorer', () => {
  it('writes an explorer per SAE with its dashboards, sharing one runtime, and records their links', async () => {
    const data = JSON.parse(await readFile(path.join(run, 'report-data.json'), 'utf8')) as ReportData;
    expect(Object.fromEntries(data.saes.map((s) => [s.name, s.explorer]))).toEqual({
      narrow: 'explorer/narrow/explorer.html',
      wide: 'explorer/wide/explorer.html',
    });
    expect(result.explorers.sort()).toEqual(data.saes.map((s) => path.join(run, s.explorer!)).sort());
    // One copy of onnxruntime's 13.6 MiB WebAssembly and of the script for the whole run.
    expect(existsSync(path.join(run, 'explorer', 'ort-wasm-simd-threaded.wasm'))).toBe(true);
    expect(existsSync(path.join(run, 'explorer', 'explorer.js'))).toBe(true);
    for (const name of Object.keys(SAES)) {
      const folder = path.join(run, 'explorer', name);
      expect(existsSync(path.join(folder, 'ort-wasm-simd-threaded.wasm'))).toBe(false);
      const manifest = JSON.parse(
        await readFile(path.join(folder, 'explorer.json'), 'utf8'),
      ) as ExplorerManifest;
      expect(manifest.runtime.wasm).toBe('../ort-wasm-simd-threaded.wasm');
      expect(manifest.dashboards?.source).toBe(path.join(run, 'report-data.json'));
      const shown = JSON.parse(
        await readFile(path.join(folder, 'features.json'), 'utf8'),
      ) as FeatureDashboard[];
      expect(shown).toEqual(data.dashboards.filter((d) => d.sae === name));
      expect(shown).toHaveLength(3);
    }
    const markdown = await readFile(path.join(run, 'report.md'), 'utf8');
    expect(markdown).toContain('[narrow](explorer/narrow/explorer.html)');
  });

  it('is served by saeflow-serve, which prints the report and both explorers', () => {
    expect(printed.slice(1)).toEqual([
      `  report:   ${server!.url}report.html`,
      `  explorer: ${server!.url}explorer/narrow/explorer.html`,
      `  explorer: ${server!.url}explorer/wide/explorer.html`,
    ]);
  });

  for (const name of Object.keys(SAES)) {
    it(`opens ${name}'s explorer from the report's link, cross-origin isolated, with saeflow's features`, async () => {
      const opened = await openPage(browser!, server!, 'report.html', { explorer: false });
      try {
        const link = opened.page.locator(`p.explorer a[href="explorer/${name}/explorer.html"]`);
        expect(await link.count()).toBe(1);
        await link.click();
        await opened.page.waitForURL(`${server!.url}explorer/${name}/explorer.html`);
        await waitForExplorer(opened.page);
        const threads = await expectedThreads(opened.page);
        expect(await opened.page.getAttribute('#status', 'data-threads')).toBe(String(threads));
        expect(await opened.page.locator('#about').textContent()).toContain('3 feature dashboards');

        const { rows } = await runText(opened.page, TEXT);
        const sae = SAES[name]!;
        const ref = await referenceFeatures(TINY_GPT2, sae, HOOK, TEXT);
        const expected = expectedTop(ref.features, sae.config.d_sae, 8);
        expect(expected.filter((r) => r.length > 0).length).toBeGreaterThan(ref.ids.length / 2);
        expectSameFeatures(rows, ref.ids, expected);
        expectOnlyOwnRequests(opened);
        const asked = opened.server.requests.map((r) => r.path);
        expect(asked).toContain('/explorer/ort-wasm-simd-threaded.wasm');
        expect(asked).toContain(`/explorer/${name}/model.onnx`);
      } finally {
        await opened.page.close();
      }
    });
  }
});
