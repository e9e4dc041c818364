// The explorer's page weight and in-page speed for GPT-2 small with a 24,576-feature SAE at
// blocks.8.hook_resid_pre (issue 18's sizes): writes a Hugging Face folder of GPT-2 small's shape with random
// weights (float32, 498 MB) and a random standard SAE, exports the explorer with float32 and with float16
// weights, and runs a 128-token text in headless Chromium (onnxruntime-web, WebAssembly): each page served
// with cross-origin isolation (the page's default threads: half the cores, up to 4), then once more per
// --queries entry on that server (threads=2: explorer.html?threads=2), and without isolation (one thread);
// best of --rounds, the rounds alternating between all the pages so that a change in the machine's load
// reaches them alike. Random weights make the sizes and speeds real and the float16 difference meaningless
// (it is measured on trained weights by explore-sae itself).
//
//   npx tsx bench/explorer.ts [--dir /tmp/explorer-gpt2-small] [--d_sae 24576] [--rounds 3]
//     [--weights float32,float16] [--queries threads=2]
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { writeExplorer } from '../src/explorer/export.js';
import { writeSaeFolder } from '../src/sae/saelens-folder.js';
import { launchChromium, openExplorer, runText } from '../test/explorer-page.js';
import type { OpenedPage } from '../test/explorer-page.js';
import { randomSae } from '../test/replacement-helpers.js';
import { writeGpt2SmallFolder } from './lib/gpt2-small-folder.js';

const { values } = parseArgs({
  options: {
    dir: { type: 'string', default: '/tmp/explorer-gpt2-small' },
    d_sae: { type: 'string', default: '24576' },
    hook: { type: 'string', default: 'blocks.8.hook_resid_pre' },
    rounds: { type: 'string', default: '3' },
    weights: { type: 'string', default: 'float32,float16' },
    // More pages on the isolated server, by their query: e.g. threads=2 (explorer.html?threads=2).
    queries: { type: 'string', default: '' },
  },
});
const dir = values.dir;
const D = 768;

const modelDir = path.join(dir, 'gpt2-small-random');
const saeDir = path.join(dir, 'sae');
await writeGpt2SmallFolder(modelDir);
const sae = randomSae({
  architecture: 'standard',
  hook: values.hook,
  dIn: D,
  dSae: Number(values.d_sae),
  seed: 3,
});
await writeSaeFolder(saeDir, sae.config, {
  architecture: sae.config.architecture,
  tensors: { ...sae.tensors },
});
const browser = await launchChromium();
const text = 'It is not down on any map; true places never are. '.repeat(20);
const mib = (n: number) => (n / 2 ** 20).toFixed(1);
/** Each page kind: weights, and whether its server sends cross-origin isolation (threads) or not (1 thread). */
const pages: Array<{ label: string; opened: OpenedPage; best: number; tokens: number }> = [];
try {
  for (const weights of values.weights.split(',') as Array<'float32' | 'float16'>) {
    const out = path.join(dir, `explorer-${weights}`);
    const started = performance.now();
    const exported = await writeExplorer({
      sae: saeDir,
      out,
      model: modelDir,
      weights,
      topK: 8,
      maxModelBytes: 2 ** 31,
      log: (m) => console.log(`  ${m}`),
    });
    console.log(
      `${weights}: page weight ${mib(exported.pageBytes)} MiB (model.onnx ${mib(exported.files['model.onnx'] ?? 0)} MiB), ` +
        `export ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
    const variants = [
      { isolate: true, query: '' },
      ...values.queries.split(',').flatMap((query) => (query ? [{ isolate: true, query }] : [])),
      { isolate: false, query: '' },
    ];
    for (const { isolate, query } of variants) {
      const opening = performance.now();
      const opened = await openExplorer(browser, out, { isolate, query });
      const threads = await opened.page.getAttribute('#status', 'data-threads');
      const label =
        `${weights}, ${threads} thread${threads === '1' ? '' : 's'}` +
        (isolate ? ', isolated' : ', not isolated') +
        (query ? ` (?${query})` : '');
      console.log(
        `${label}: loaded and first text run in ${((performance.now() - opening) / 1000).toFixed(1)} s`,
      );
      pages.push({ label, opened, best: Infinity, tokens: 0 });
    }
  }
  // Rounds alternate between the pages, so a change in the machine's load reaches all of them alike.
  for (let i = 0; i < Number(values.rounds); i++) {
    for (const p of pages) {
      const r = await runText(p.opened.page, text);
      p.best = Math.min(p.best, r.ms);
      p.tokens = r.tokens;
    }
  }
  for (const p of pages) {
    console.log(
      `${p.label}: ${p.tokens} tokens in ${p.best.toFixed(0)} ms = ${Math.round((p.tokens * 1000) / p.best)} tokens/s` +
        (p.opened.problems.length > 0 ? `; page problems: ${p.opened.problems.join(' | ')}` : ''),
    );
  }
} finally {
  for (const p of pages) {
    await p.opened.page.close();
    await p.opened.server.close();
  }
  await browser.close();
  await rm(dir, { recursive: true, force: true });
}
