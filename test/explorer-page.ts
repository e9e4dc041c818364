/**
 * Headless Chromium on the explorer page, for the explorer test and bench/explorer.ts: the browser the report
 * test uses (@sparticuz/chromium driven by playwright-core, with its launch flags), the page opened from a
 * static server on its folder with every console problem and request recorded, and a text run through it.
 */
import { dirname, join } from 'node:path';
import packagedChromium from '@sparticuz/chromium';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';
import { PAGE_FILE } from '../src/explorer/manifest.js';
import { serveFolder } from '../src/explorer/static-server.js';
import type { ServeOptions, StaticServer } from '../src/explorer/static-server.js';

// The report test's flags (web security stays on, so the page cannot reach what the test must see it never does).
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface PageFeature {
  feature: number;
  activation: number;
}
export interface PageRow {
  tokenId: number;
  features: PageFeature[];
}
/** The few DOM shapes the page.evaluate callbacks read (no lib "dom" in the Node tests). */
interface DomElement {
  dataset: Record<string, string | undefined>;
  querySelectorAll(selector: string): ArrayLike<DomElement>;
}
interface DomGlobals {
  document: { querySelectorAll(selector: string): ArrayLike<DomElement> };
}

/**
 * WebGPU on the CPU: Chromium's SwiftShader Vulkan gives a WebGPU adapter with no GPU, so the page's WebGPU
 * path runs for real on any machine (slowly; it checks the numbers, not the speed).
 */
const SOFTWARE_WEBGPU = [
  '--enable-unsafe-webgpu',
  '--enable-features=Vulkan',
  '--use-angle=swiftshader',
  '--use-webgpu-adapter=swiftshader',
  '--enable-unsafe-swiftshader',
];

export async function launchChromium(options: { softwareWebgpu?: boolean } = {}): Promise<Browser> {
  const executablePath = await packagedChromium.executablePath();
  return chromium.launch({
    executablePath,
    args: options.softwareWebgpu ? [...ARGS.filter((a) => a !== '--disable-gpu'), ...SOFTWARE_WEBGPU] : ARGS,
    // The fonts unpacked beside the binary, so text renders on a machine without system fonts.
    env: {
      ...process.env,
      FONTCONFIG_PATH: process.env['FONTCONFIG_PATH'] ?? join(dirname(executablePath), 'fonts'),
    },
  });
}

export interface OpenedPage {
  page: Page;
  server: StaticServer;
  problems: string[];
  urls: string[];
}

/** Serves the explorer's folder and opens its page once it has run its default text. */
export async function openExplorer(
  browser: Browser,
  folder: string,
  options: ServeOptions & { query?: string } = {},
): Promise<OpenedPage> {
  const server = await serveFolder(folder, options);
  return openPage(browser, server, PAGE_FILE + (options.query ? `?${options.query}` : ''), {
    explorer: true,
  });
}

/** Opens `urlPath` on `server` with every problem and request recorded; waits for an explorer to be done. */
export async function openPage(
  browser: Browser,
  server: StaticServer,
  urlPath: string,
  { explorer }: { explorer: boolean },
): Promise<OpenedPage> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const problems: string[] = [];
  const urls: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`failed: ${r.url()}`));
  page.on('request', (r) => urls.push(r.url()));
  await page.goto(server.url + urlPath, { waitUntil: 'load' });
  // The explorer runs its default text once ready.
  if (explorer) await waitForExplorer(page);
  return { page, server, problems, urls };
}

export async function waitForExplorer(page: Page): Promise<void> {
  await page.waitForSelector('#status[data-state="done"]', { timeout: 60_000 });
}

/** Types the text, runs it, and reads back every token row. */
export async function runText(
  page: Page,
  text: string,
): Promise<{ rows: PageRow[]; tokens: number; ms: number }> {
  const before = Number(await page.getAttribute('#status', 'data-runs'));
  await page.fill('#text', text);
  await page.click('#run');
  await page.waitForFunction(
    (n) => {
      const s = (globalThis as unknown as DomGlobals).document.querySelectorAll('#status')[0]!;
      return s.dataset['state'] === 'done' && Number(s.dataset['runs']) > n;
    },
    before,
    { timeout: 60_000 },
  );
  const rows = await page.evaluate(() =>
    Array.from((globalThis as unknown as DomGlobals).document.querySelectorAll('#tokens tr.tok')).map(
      (tr) => ({
        tokenId: Number(tr.dataset['tokenId']),
        features: Array.from(tr.querySelectorAll('button.feat')).map((b) => ({
          feature: Number(b.dataset['feature']),
          activation: Number(b.dataset['act']),
        })),
      }),
    ),
  );
  return {
    rows,
    tokens: Number(await page.getAttribute('#status', 'data-tokens')),
    ms: Number(await page.getAttribute('#status', 'data-ms')),
  };
}
