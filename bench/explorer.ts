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
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { writeExplorer } from '../src/explorer/export.js';
import { writeSafetensors } from '../src/io/safetensors.js';
import { writeSaeFolder } from '../src/sae/saelens-folder.js';
import { Mulberry32 } from '../src/util/random.js';
import { launchChromium, openExplorer, runText } from '../test/explorer-page.js';
import type { OpenedPage } from '../test/explorer-page.js';
import { randomSae } from '../test/replacement-helpers.js';

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
const LAYERS = 12;
const VOCAB = 50257;

function random(n: number, scale: number, rng: Mulberry32): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rng.next() * 2 - 1) * scale;
  return out;
}

async function writeGpt2Small(modelDir: string): Promise<void> {
  const rng = new Mulberry32(1);
  const t = (shape: number[], scale: number, fill?: number) => ({
    dtype: 'F32' as const,
    shape,
    data:
      fill === undefined
        ? random(
            shape.reduce((a, b) => a * b, 1),
            scale,
            rng,
          )
        : new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(fill),
  });
  const tensors: Record<string, ReturnType<typeof t>> = {
    'transformer.wte.weight': t([VOCAB, D], 0.05),
    'transformer.wpe.weight': t([1024, D], 0.01),
    'transformer.ln_f.weight': t([D], 0, 1),
    'transformer.ln_f.bias': t([D], 0, 0),
  };
  for (let l = 0; l < LAYERS; l++) {
    const p = `transformer.h.${l}.`;
    Object.assign(tensors, {
      [`${p}ln_1.weight`]: t([D], 0, 1),
      [`${p}ln_1.bias`]: t([D], 0, 0),
      [`${p}attn.c_attn.weight`]: t([D, 3 * D], 0.03),
      [`${p}attn.c_attn.bias`]: t([3 * D], 0.01),
      [`${p}attn.c_proj.weight`]: t([D, D], 0.03),
      [`${p}attn.c_proj.bias`]: t([D], 0.01),
      [`${p}ln_2.weight`]: t([D], 0, 1),
      [`${p}ln_2.bias`]: t([D], 0, 0),
      [`${p}mlp.c_fc.weight`]: t([D, 4 * D], 0.03),
      [`${p}mlp.c_fc.bias`]: t([4 * D], 0.01),
      [`${p}mlp.c_proj.weight`]: t([4 * D, D], 0.03),
      [`${p}mlp.c_proj.bias`]: t([D], 0.01),
    });
  }
  await mkdir(modelDir, { recursive: true });
  await writeFile(
    path.join(modelDir, 'config.json'),
    JSON.stringify({
      architectures: ['GPT2LMHeadModel'],
      model_type: 'gpt2',
      activation_function: 'gelu_new',
      n_embd: D,
      n_head: 12,
      n_layer: LAYERS,
      n_positions: 1024,
      vocab_size: VOCAB,
      layer_norm_epsilon: 1e-5,
      tie_word_embeddings: true,
    }),
  );
  await writeSafetensors(path.join(modelDir, 'model.safetensors'), tensors);
}

const modelDir = path.join(dir, 'gpt2-small-random');
const saeDir = path.join(dir, 'sae');
await writeGpt2Small(modelDir);
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
