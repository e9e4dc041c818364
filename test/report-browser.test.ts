/**
 * Opens a rendered report in headless Chromium (the build shipped inside the npm package `@sparticuz/chromium`, so
 * `npm ci` is all the test needs; driven by playwright-core) and checks what
 * a reader would see: every chart drawn, no errors, no network, hostile tokens shown as text and never run.
 * Leaves a full-page screenshot in test/artifacts/report.png for a human look.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import packagedChromium from '@sparticuz/chromium';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderReport } from '../src/report/index.js';
import { HOSTILE_TOKENS, minimalReportData, syntheticReportData } from './report-synthetic.js';

/**
 * The few browser APIs the page.evaluate callbacks use, typed here rather than through lib "dom", which would
 * put DOM globals into every Node file of the project. The callbacks reach them as `globalThis as Browser`.
 */
interface PageElement {
  textContent: string | null;
  dataset: Record<string, string | undefined>;
  getAttribute(name: string): string | null;
}
interface PageCanvas extends PageElement {
  width: number;
  height: number;
  getContext(kind: '2d'): {
    getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray };
  };
}
interface PageRow extends PageElement {
  cells: ArrayLike<PageElement>;
}
interface BrowserGlobals {
  document: {
    querySelectorAll<T extends PageElement = PageElement>(selector: string): ArrayLike<T>;
    querySelector(selector: string): PageElement | null;
    documentElement: { scrollHeight: number };
  };
  requestAnimationFrame(callback: () => void): number;
  Chart?: { getChart(canvas: PageCanvas): unknown };
  __pwned?: unknown;
}

// Our own flags rather than the package's `args`, which turn off web security and would let the page fetch things
// this test must see it never fetches.
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
const ARTIFACTS = fileURLToPath(new URL('./artifacts/', import.meta.url));
const SCREENSHOT = join(ARTIFACTS, 'report.png');

let dir: string;
let browser: Browser | undefined;
let page: Page;
let fileUrl: string;
const consoleErrors: string[] = [];
const consoleWarnings: string[] = [];
const pageErrors: string[] = [];
const requests: string[] = [];
const dialogs: string[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'saeflow-report-browser-'));
  await renderReport(syntheticReportData(), dir);
  fileUrl = pathToFileURL(join(dir, 'report.html')).href;
  // Unpacks the browser, its fonts and SwiftShader into the temp directory on first use (a few seconds).
  const executablePath = await packagedChromium.executablePath();
  browser = await chromium.launch({
    executablePath,
    args: ARGS,
    // The fonts unpacked beside the binary, so text renders on a machine without system fonts.
    env: {
      ...process.env,
      FONTCONFIG_PATH: process.env['FONTCONFIG_PATH'] ?? join(dirname(executablePath), 'fonts'),
    },
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
    if (m.type() === 'warning') consoleWarnings.push(m.text());
  });
  page.on('pageerror', (err) => pageErrors.push(err.message));
  page.on('request', (r) => requests.push(r.url()));
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  await page.goto(fileUrl, { waitUntil: 'load' });
  // Chart.js draws synchronously (animations are off), but give a resize pass a frame to settle.
  await page.evaluate(
    () =>
      new Promise((resolve) =>
        (globalThis as unknown as BrowserGlobals).requestAnimationFrame(() => resolve(null)),
      ),
  );
});

afterAll(async () => {
  await browser?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('report.html in Chromium', () => {
  it('loads without console errors, page errors or dialogs, and fetches nothing but itself', () => {
    expect(pageErrors).toEqual([]);
    expect(consoleErrors).toEqual([]);
    expect(consoleWarnings).toEqual([]);
    expect(dialogs).toEqual([]);
    expect(requests).toEqual([fileUrl]);
  });

  it('draws every chart: a Chart.js instance with visible pixels on each canvas', async () => {
    const charts = await page.evaluate(() => {
      const g = globalThis as unknown as BrowserGlobals;
      return Array.from(g.document.querySelectorAll<PageCanvas>('canvas')).map((canvas) => {
        const ctx = canvas.getContext('2d');
        const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
        let inked = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i]! > 0) inked++;
        return {
          id: canvas.dataset['chart'] ?? '',
          hasChart: g.Chart?.getChart(canvas) !== undefined,
          width: canvas.width,
          height: canvas.height,
          inkedFraction: inked / (canvas.width * canvas.height),
        };
      });
    });
    const data = syntheticReportData();
    // layers + 2 Pareto + 2 histograms per SAE + 4 training curves + 1 histogram per dashboard.
    expect(charts).toHaveLength(1 + 2 + 2 * data.saes.length + 4 + data.dashboards.length);
    for (const c of charts) {
      expect(c.hasChart, c.id).toBe(true);
      expect(c.width, c.id).toBeGreaterThan(100);
      expect(c.height, c.id).toBeGreaterThan(100);
      // Axes, labels and data together cover well over 1% of any chart drawn here; a blank canvas has 0.
      expect(c.inkedFraction, c.id).toBeGreaterThan(0.01);
    }
    expect(await page.locator('.chart-fig + .empty, p.empty:has-text("Chart failed")').count()).toBe(0);
  });

  it('shows hostile tokens as text, without running or parsing them as markup', async () => {
    const result = await page.evaluate(
      (hostile) => {
        const g = globalThis as unknown as BrowserGlobals;
        const texts = Array.from(g.document.querySelectorAll('.tk')).map((s) => s.textContent);
        return {
          found: hostile.map((h) => texts.includes(h)),
          pwned: g.__pwned ?? null,
          injected: g.document.querySelectorAll('img, svg, iframe, object, embed').length,
          scripts: g.document.querySelectorAll('script').length,
          // The peak token of the all-hostile context carries its activation and text in the tooltip.
          title:
            g.document.querySelector('.dash .contexts li:last-child .tk.mx')?.getAttribute('title') ?? '',
        };
      },
      [HOSTILE_TOKENS[0], HOSTILE_TOKENS[1], HOSTILE_TOKENS[2], HOSTILE_TOKENS[3], HOSTILE_TOKENS[4]],
    );
    expect(result.found).toEqual([true, true, true, true, true]);
    expect(result.pwned).toBeNull();
    expect(result.injected).toBe(0);
    expect(result.scripts).toBe(3);
    expect(result.title).toMatch(/^\d+(\.\d+)? {2}“<\/script><img·src=x·onerror=alert\(1\)>”$/);
    expect(dialogs).toEqual([]);
  });

  it('makes whitespace inside tokens visible', async () => {
    const texts = await page.evaluate(() =>
      Array.from((globalThis as unknown as BrowserGlobals).document.querySelectorAll('.tk')).map(
        (s) => s.textContent,
      ),
    );
    expect(texts).toContain('↵↵');
    expect(texts).toContain('→');
    expect(texts).toContain('⟨U+202E⟩evil');
    expect(await page.locator('.tk.empty').count()).toBeGreaterThan(0);
  });

  it('sorts the summary table by a numeric column, missing values last', async () => {
    const column = (i: number) =>
      page.evaluate(
        (col) =>
          Array.from(
            (globalThis as unknown as BrowserGlobals).document.querySelectorAll<PageRow>('#summary tbody tr'),
          ).map((r) => r.cells[col]!.dataset['v'] ?? ''),
        i,
      );
    await page.click('#summary th:has-text("CE loss score")');
    const asc = await column(7);
    expect(asc.at(-1)).toBe('');
    const nums = asc.slice(0, -1).map(Number);
    expect(nums).toEqual([...nums].sort((a, b) => a - b));
    await page.click('#summary th:has-text("CE loss score")');
    const desc = await column(7);
    expect(desc.at(-1)).toBe('');
    expect(desc.slice(0, -1).map(Number)).toEqual([...nums].reverse());
    expect(await page.getAttribute('#summary th:has-text("CE loss score")', 'aria-sort')).toBe('descending');
  });

  it('redraws the charts at a new size and saves a full-page screenshot', async () => {
    // Playwright's fullPage capture resizes the page behind Chart.js's back and catches the canvases cleared;
    // making the viewport as tall as the page and letting Chart.js redraw first gives a faithful picture.
    const height = await page.evaluate(
      () => (globalThis as unknown as BrowserGlobals).document.documentElement.scrollHeight,
    );
    await page.setViewportSize({ width: 1280, height });
    await page.evaluate(
      () =>
        new Promise((resolve) => {
          const g = globalThis as unknown as BrowserGlobals;
          g.requestAnimationFrame(() => g.requestAnimationFrame(() => resolve(null)));
        }),
    );
    const blank = await page.evaluate(() =>
      Array.from((globalThis as unknown as BrowserGlobals).document.querySelectorAll<PageCanvas>('canvas'))
        .filter((canvas) => {
          const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
          for (let i = 3; i < data.length; i += 4) if (data[i]! > 0) return false;
          return true;
        })
        .map((canvas) => canvas.dataset['chart']),
    );
    expect(blank).toEqual([]);
    await mkdir(ARTIFACTS, { recursive: true });
    const png = await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(png.length).toBeGreaterThan(50_000);
    expect(consoleErrors).toEqual([]);
    expect(pageErrors).toEqual([]);
  });
});

describe('a minimal report.html in Chromium', () => {
  it('opens cleanly with one SAE, no CE metrics, no curves and no dashboards', async () => {
    const out = join(dir, 'minimal');
    await renderReport(minimalReportData(), out);
    const url = pathToFileURL(join(out, 'report.html')).href;
    const p = await browser!.newPage({ viewport: { width: 1000, height: 800 } });
    const problems: string[] = [];
    const seen: string[] = [];
    p.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') problems.push(m.text());
    });
    p.on('pageerror', (err) => problems.push(err.message));
    p.on('request', (r) => seen.push(r.url()));
    await p.goto(url, { waitUntil: 'load' });
    const charts = await p.evaluate(() => {
      const g = globalThis as unknown as BrowserGlobals;
      return Array.from(g.document.querySelectorAll<PageCanvas>('canvas')).map(
        (c) => [c.dataset['chart'], g.Chart?.getChart(c) !== undefined] as const,
      );
    });
    expect(problems).toEqual([]);
    expect(seen).toEqual([url]);
    expect(charts).toEqual([['pareto-ev', true]]);
    expect(await p.locator('#training .empty').textContent()).toContain('No training curves');
    await p.close();
  });
});
