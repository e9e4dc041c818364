/**
 * The explorer end to end: exports it (explore-sae's writeExplorer) for the embedded tiny-gpt2 and a random
 * SAE, serves the folder on 127.0.0.1, opens it in headless Chromium (the report test's browser), types a
 * sentence, and compares the per-token top features the page shows with saeflow's own encode of the same
 * tokens on the other engine (TensorFlow.js: the model's hook activations, then the SAE's encoder), so the
 * tokenizer, BOS, the exported graph, onnxruntime-web and the page's top-k are all checked against code
 * that shares none of them but the definitions. Also: no console errors, no request outside the folder,
 * a dashboard on click, and the in-page forward's speed. Leaves test/artifacts/explorer.png.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeExplorer } from '../src/explorer/export.js';
import type { ExplorerResult } from '../src/explorer/export.js';
import { readModelConfig } from '../src/model/index.js';
import type { ReplacementSae } from '../src/model/index.js';
import { selectBackend } from '../src/pipeline/backend.js';
import type { FeatureDashboard } from '../src/report/types.js';
import { writeSaeFolder } from '../src/sae/saelens-folder.js';
import { launchChromium, openExplorer, openPage, runText } from './explorer-page.js';
import type { OpenedPage } from './explorer-page.js';
import {
  expectedThreads,
  expectedTop,
  expectOnlyOwnRequests,
  expectSameFeatures,
  referenceFeatures,
} from './explorer-reference.js';
import { randomSae } from './replacement-helpers.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ARTIFACTS = join(ROOT, 'test/artifacts');
const TINY_GPT2 = join(ROOT, 'models/tiny-gpt2');
const SENTENCE =
  'The whale swam past the ship, and Ahab shouted <b>"there she blows!"</b>\n\tCall me Ishmael.';
let dir: string;
let browser: Browser | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'saeflow-explorer-'));
  await selectBackend('wasm');
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** An SAE folder laid out as a training run writes it, with an eval-sae result beside it holding dashboards. */
async function writeSaeRun(
  run: string,
  sae: ReplacementSae,
  dashboardFeatures: readonly number[],
): Promise<{ saeDir: string; dashboards: FeatureDashboard[] }> {
  const saeDir = join(run, 'saes', 'rand');
  await mkdir(dirname(saeDir), { recursive: true });
  await writeSaeFolder(saeDir, sae.config, {
    architecture: sae.config.architecture,
    tensors: { ...sae.tensors },
  });
  const dashboards: FeatureDashboard[] = dashboardFeatures.map((feature) => ({
    sae: 'rand',
    feature,
    density: (feature + 1) / 1000,
    max_activation: 2 + feature,
    top_contexts: [
      { tokens: [' the', ` whale${feature}`, '<img src=x>'], activations: [0, 2 + feature, 1], max_index: 1 },
    ],
    histogram: { edges: [0, 1, 2], counts: [3, 1] },
    promoted: [{ token: ` harpoon${feature}`, value: 0.5 + feature / 100 }],
    suppressed: [{ token: ' land', value: -0.25 }],
  }));
  // eval-sae's layout: <run>/<sae>/eval.json naming the SAE's folder, <run>/report-data.json.
  await mkdir(join(run, 'rand'), { recursive: true });
  await writeFile(
    join(run, 'rand', 'eval.json'),
    JSON.stringify({ path: saeDir, metrics: { sparsity: { l0: 3 } } }),
  );
  await writeFile(
    join(run, 'report-data.json'),
    JSON.stringify({
      saes: [{ name: 'rand', path: saeDir }],
      // Another SAE's dashboard in the same report must not be shown for this one.
      dashboards: [...dashboards, ...dashboards.slice(0, 1).map((d) => ({ ...d, sae: 'other', feature: 1 }))],
    }),
  );
  return { saeDir, dashboards };
}

describe('the explorer for tiny-gpt2 in Chromium', () => {
  const HOOK = 'blocks.2.hook_resid_pre';
  const sae = randomSae({ architecture: 'standard', hook: HOOK, dIn: 64, dSae: 256, seed: 18 });
  let exported: ExplorerResult;
  let opened: OpenedPage;
  let dashboards: FeatureDashboard[];

  beforeAll(async () => {
    const run = join(dir, 'gpt2-run');
    // Dashboards for the even features only, so the page shows both kinds of click.
    const written = await writeSaeRun(
      run,
      sae,
      Array.from({ length: 128 }, (_, i) => 2 * i),
    );
    dashboards = written.dashboards;
    exported = await writeExplorer({
      sae: written.saeDir,
      out: join(dir, 'gpt2-explorer'),
      model: TINY_GPT2,
      weights: 'float32',
      topK: 8,
      maxModelBytes: 2 ** 31,
      log: () => undefined,
    });
    opened = await openExplorer(browser!, exported.dir);
  });

  afterAll(async () => {
    await opened?.page.close();
    await opened?.server.close();
  });

  it('shows the top features saeflow computes for the same tokens', async () => {
    const { rows } = await runText(opened.page, SENTENCE);
    const ref = await referenceFeatures(TINY_GPT2, sae, HOOK, SENTENCE);
    const expected = expectedTop(ref.features, 256, 8);
    // A random SAE fires on most tokens: the comparison is not of empty lists.
    expect(expected.filter((r) => r.length === 8).length).toBeGreaterThan(ref.ids.length / 2);
    expectSameFeatures(rows, ref.ids, expected);
    expectOnlyOwnRequests(opened);
  });

  it('opens a feature dashboard on click, and says when a feature has none', async () => {
    const even = opened.page.locator('#tokens button.feat.has-dash').first();
    const feature = Number(await even.getAttribute('data-feature'));
    expect(feature % 2).toBe(0);
    await even.click();
    const text = await opened.page.locator('#dashboard').textContent();
    expect(text).toContain(`Feature ${feature}`);
    expect(text).toContain(`harpoon${feature}`);
    expect(text).toContain('<img src=x>');
    expect(await opened.page.locator('#dashboard img').count()).toBe(0);
    const odd = opened.page.locator('#tokens button.feat:not(.has-dash)').first();
    await odd.click();
    expect(await opened.page.locator('#dashboard').textContent()).toContain(
      `the evaluation collected ${dashboards.length}`,
    );
    await opened.page.fill('#promotes', `harpoon${feature}`);
    expect(await opened.page.locator('#search-results button.feat').allTextContents()).toEqual([
      String(feature),
    ]);
    expectOnlyOwnRequests(opened);
  });

  it('runs WebAssembly threads when served cross-origin isolated, and says so', async () => {
    const expected = await expectedThreads(opened.page);
    expect(
      await opened.page.evaluate(
        () => (globalThis as unknown as { crossOriginIsolated: boolean }).crossOriginIsolated,
      ),
    ).toBe(true);
    expect(await opened.page.getAttribute('#status', 'data-threads')).toBe(String(expected));
    expect(await opened.page.locator('#about').textContent()).toContain(
      `WebAssembly, ${expected} thread${expected === 1 ? '' : 's'};`,
    );
    // onnxruntime starts its threads from the page's own script (import.meta.url): a second request for it.
    const scripts = () => opened.server.requests.filter((r) => r.path === '/explorer.js').length;
    expect(scripts()).toBe(expected > 1 ? 2 : 1);

    // Two threads whatever the default here (CI's 2 cores give 1 by default): the threaded build runs.
    const cores = await opened.page.evaluate(
      () =>
        (globalThis as unknown as { navigator: { hardwareConcurrency: number } }).navigator
          .hardwareConcurrency,
    );
    const asked = Math.min(2, cores);
    const before = scripts();
    const two = await openPage(browser!, opened.server, 'explorer.html?threads=2', { explorer: true });
    try {
      expect(await two.page.getAttribute('#status', 'data-threads')).toBe(String(asked));
      expect(scripts() - before).toBe(asked > 1 ? 2 : 1);
      const { rows } = await runText(two.page, SENTENCE);
      const ref = await referenceFeatures(TINY_GPT2, sae, HOOK, SENTENCE);
      expectSameFeatures(rows, ref.ids, expectedTop(ref.features, 256, 8));
      expect(two.problems).toEqual([]);
    } finally {
      await two.page.close();
    }
    const one = await openPage(browser!, opened.server, 'explorer.html?threads=1', { explorer: true });
    try {
      expect(await one.page.getAttribute('#status', 'data-threads')).toBe('1');
      expect(await one.page.locator('#about').textContent()).toContain('on WebAssembly, 1 thread;');
      expect(one.problems).toEqual([]);
    } finally {
      await one.page.close();
    }
    expectOnlyOwnRequests(opened);
  });

  it('runs one thread, the same features, on a server without cross-origin isolation', async () => {
    const plain = await openExplorer(browser!, exported.dir, { isolate: false });
    try {
      expect(await plain.page.getAttribute('#status', 'data-threads')).toBe('1');
      expect(await plain.page.locator('#about').textContent()).toContain(
        'WebAssembly, 1 thread (the server sends no cross-origin isolation)',
      );
      const { rows } = await runText(plain.page, SENTENCE);
      const ref = await referenceFeatures(TINY_GPT2, sae, HOOK, SENTENCE);
      expectSameFeatures(rows, ref.ids, expectedTop(ref.features, 256, 8));
      expectOnlyOwnRequests(plain);
    } finally {
      await plain.page.close();
      await plain.server.close();
    }
  });

  it('measures its page weight and in-page speed, and leaves a screenshot', async () => {
    // The SAE's context (128 tokens) filled with prose.
    const long = 'It is not down on any map; true places never are. '.repeat(20);
    const speed = async (page: OpenedPage['page']) => {
      let best = Infinity;
      for (let i = 0; i < 3; i++) {
        const r = await runText(page, long);
        expect(r.tokens).toBe(128);
        best = Math.min(best, r.ms);
      }
      expect(best).toBeGreaterThan(0);
      return `${Math.round((128 * 1000) / best)} tokens/s (${best.toFixed(1)} ms)`;
    };
    const measure = async (page: Promise<OpenedPage>) => {
      const p = await page;
      const threads = await p.page.getAttribute('#status', 'data-threads');
      try {
        return `${await speed(p.page)} on ${threads} thread${threads === '1' ? '' : 's'}`;
      } finally {
        await p.page.close();
      }
    };
    const threaded = await measure(
      openPage(browser!, opened.server, 'explorer.html?threads=2', { explorer: true }),
    );
    const plainServer = openExplorer(browser!, exported.dir, { isolate: false });
    const single = await measure(plainServer);
    await (await plainServer).server.close();
    const mib = (exported.pageBytes / 2 ** 20).toFixed(2);
    console.log(
      `explorer tiny-gpt2: page weight ${mib} MiB (${Object.entries(exported.files)
        .map(([n, b]) => `${n} ${(b / 2 ** 20).toFixed(2)}`)
        .join(', ')}); 128 tokens, best of 3: ${threaded}, ${single} (not isolated)`,
    );
    await runText(opened.page, SENTENCE);
    await opened.page.locator('#tokens button.feat.has-dash').first().click();
    await mkdir(ARTIFACTS, { recursive: true });
    await opened.page.screenshot({ path: join(ARTIFACTS, 'explorer.png'), fullPage: true });
    expectOnlyOwnRequests(opened);
  });
});

/** Other families, each with its tokenizer.json run in the page, and a different SAE kind and hook. */
const FAMILIES = [
  { family: 'gemma2', architecture: 'topk', hook: 'blocks.1.hook_resid_post', bos: true },
  // Qwen2 feeds no BOS by TransformerLens's default.
  { family: 'qwen2', architecture: 'jumprelu', hook: 'blocks.0.hook_mlp_out', bos: false },
  // A rank-4 hook ([batch, seq, heads, d_head], flattened per token as SAELens does).
  { family: 'gpt_neox', architecture: 'standard', hook: 'blocks.1.attn.hook_z', bos: true },
] as const;

for (const { family, architecture, hook, bos } of FAMILIES) {
  describe(`the explorer for the ${family} fixture (tokenizer.json) in Chromium`, () => {
    const modelDir = join(ROOT, `test/fixtures/families/${family}/model`);
    let opened: OpenedPage;
    let sae: ReplacementSae;

    beforeAll(async () => {
      const config = await readModelConfig(modelDir);
      const dIn = hook.endsWith('hook_z') ? config.nHeads * config.dHead : config.dModel;
      sae = randomSae({ architecture, hook, dIn, dSae: 128, k: 12, seed: 2 });
      const written = await writeSaeRun(join(dir, `${family}-run`), sae, []);
      const exported = await writeExplorer({
        sae: written.saeDir,
        out: join(dir, `${family}-explorer`),
        model: modelDir,
        weights: 'float32',
        topK: 8,
        maxModelBytes: 2 ** 31,
        log: () => undefined,
      });
      expect(exported.manifest.tokenizer.kind).toBe('tokenizer.json');
      expect(exported.manifest.bos_id === null).toBe(!bos);
      opened = await openExplorer(browser!, exported.dir);
    });

    afterAll(async () => {
      await opened?.page.close();
      await opened?.server.close();
    });

    it(`tokenizes in the page and shows the features saeflow computes (${architecture} at ${hook})`, async () => {
      const { rows } = await runText(opened.page, SENTENCE);
      const ref = await referenceFeatures(modelDir, sae, hook, SENTENCE);
      const expected = expectedTop(ref.features, 128, 8);
      expect(expected.filter((r) => r.length > 0).length).toBeGreaterThan(ref.ids.length / 2);
      expectSameFeatures(rows, ref.ids, expected);
      expectOnlyOwnRequests(opened);
    });
  });
}

describe("the explorer with onnxruntime-web's WebGPU build in Chromium without a GPU", () => {
  const HOOK = 'blocks.1.hook_resid_post';
  const sae = randomSae({ architecture: 'topk', hook: HOOK, dIn: 64, dSae: 128, k: 10, seed: 4 });
  let opened: OpenedPage;

  beforeAll(async () => {
    const written = await writeSaeRun(join(dir, 'webgpu-run'), sae, []);
    const exported = await writeExplorer({
      sae: written.saeDir,
      out: join(dir, 'webgpu-explorer'),
      model: TINY_GPT2,
      weights: 'float32',
      topK: 8,
      webgpu: true,
      maxModelBytes: 2 ** 31,
      log: () => undefined,
    });
    expect(Object.keys(exported.files)).toContain('ort-wasm-simd-threaded.asyncify.wasm');
    opened = await openExplorer(browser!, exported.dir);
  });

  afterAll(async () => {
    await opened?.page.close();
    await opened?.server.close();
  });

  it('falls back to WebAssembly and shows the features saeflow computes', async () => {
    // The browser runs with --disable-gpu: no adapter, so the WebAssembly provider of the same build runs.
    expect(await opened.page.getAttribute('#status', 'data-provider')).toBe('wasm');
    // Chromium's own warning when asked for a WebGPU adapter it cannot give (--disable-gpu); nothing else may show.
    const warning = 'warning: Failed to create WebGPU Context Provider';
    expect(opened.problems).toEqual([warning]);
    opened.problems.splice(0);
    const { rows } = await runText(opened.page, SENTENCE);
    const ref = await referenceFeatures(TINY_GPT2, sae, HOOK, SENTENCE);
    expectSameFeatures(rows, ref.ids, expectedTop(ref.features, 128, 8));
    expectOnlyOwnRequests(opened);
  });

  it("runs on WebGPU where the browser has an adapter (SwiftShader's, on the CPU)", async () => {
    const gpuBrowser = await launchChromium({ softwareWebgpu: true });
    try {
      const onGpu = await openExplorer(gpuBrowser, opened.server.dir);
      expect(await onGpu.page.getAttribute('#status', 'data-provider')).toBe('webgpu');
      const { rows } = await runText(onGpu.page, SENTENCE);
      const ref = await referenceFeatures(TINY_GPT2, sae, HOOK, SENTENCE);
      expectSameFeatures(rows, ref.ids, expectedTop(ref.features, 128, 8));
      // Chromium says so whenever WebGPU is on in Linux; the page itself must say nothing.
      expect(
        onGpu.problems.filter((p) => !p.startsWith('warning: WebGPU is experimental on this platform')),
      ).toEqual([]);
      onGpu.problems.splice(0);
      expectOnlyOwnRequests(onGpu);
      await onGpu.page.close();
      await onGpu.server.close();
    } finally {
      await gpuBrowser.close();
    }
  });
});
