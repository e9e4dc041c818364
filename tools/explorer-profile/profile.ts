// Where an explorer's in-page forward spends its time: onnxruntime-web's own profiler on the folder's
// model.onnx in headless Chromium (the tests' browser), one WebAssembly thread. Prints session creation and
// run times, whether constant folding changed the graph, the kernel time by operator, and every Cast that
// runs with its input type (a float16 weight widened on every call would show here as a float16 Cast).
//
//   npx tsx tools/explorer-profile/profile.ts <explorer folder> [--runs 3]
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';
import { ORT_WASM_FILE } from '../../src/explorer/manifest.js';
import { serveFolder } from '../../src/explorer/static-server.js';
import { launchChromium } from '../../test/explorer-page.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { runs: { type: 'string', default: '3' } },
});
const folder = positionals[0];
if (!folder) throw new Error('usage: npx tsx tools/explorer-profile/profile.ts <explorer folder> [--runs 3]');

interface ProfileEvent {
  cat: string;
  name: string;
  dur: number;
  args?: { op_name?: string; input_type_shape?: Array<Record<string, number[]>> };
}

// The profiling page lives in its own temporary folder, with a copy of the model (the server follows no
// symlink out of its folder).
const work = await mkdtemp(path.join(tmpdir(), 'saeflow-profile-'));
const bundled = await build({
  entryPoints: [path.join(import.meta.dirname, 'page.ts')],
  bundle: true,
  format: 'esm',
  platform: 'browser',
  write: false,
  logLevel: 'silent',
});
await writeFile(path.join(work, 'profile.js'), bundled.outputFiles[0]!.contents);
await writeFile(
  path.join(work, 'profile.html'),
  '<!doctype html><script type="module" src="profile.js"></script>',
);
await copyFile(
  createRequire(import.meta.url).resolve(`onnxruntime-web/${ORT_WASM_FILE}`),
  path.join(work, ORT_WASM_FILE),
);
await copyFile(path.resolve(folder, 'model.onnx'), path.join(work, 'model.onnx'));

const server = await serveFolder(work);
const browser = await launchChromium();
const lines: string[] = [];
try {
  const page = await browser.newPage();
  page.on('console', (m) => lines.push(m.text()));
  await page.goto(`${server.url}profile.html?model=model.onnx&wasm=${ORT_WASM_FILE}&runs=${values.runs}`);
  await page.waitForFunction(
    () => (globalThis as unknown as { document: { title: string } }).document.title === 'done',
    null,
    {
      timeout: 600_000,
    },
  );
} finally {
  await browser.close();
  await server.close();
  await rm(work, { recursive: true, force: true });
}

for (const l of lines.filter((l) => l.startsWith('saeflow-profile ')))
  console.log(l.slice('saeflow-profile '.length));
for (const l of lines.filter((l) => /GraphTransformer ConstantFolding modified/.test(l)))
  console.log(l.replace(/^.*\] /, ''));
const events: ProfileEvent[] = lines
  .filter((l) => l.startsWith('{"cat"'))
  .map((l) => JSON.parse(l.replace(/,\s*$/, '')) as ProfileEvent);
const nodes = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time'));
const byOp = new Map<string, number>();
for (const n of nodes) byOp.set(n.args?.op_name ?? '?', (byOp.get(n.args?.op_name ?? '?') ?? 0) + n.dur);
const total = [...byOp.values()].reduce((a, b) => a + b, 0);
console.log(`kernel time over ${values.runs} runs: ${(total / 1000).toFixed(1)} ms`);
for (const [op, us] of [...byOp].sort((a, b) => b[1] - a[1]).slice(0, 8)) {
  console.log(
    `  ${op.padEnd(20)} ${(us / 1000).toFixed(1).padStart(8)} ms  ${((100 * us) / total).toFixed(1)}%`,
  );
}
const casts = new Map<string, string>();
for (const n of nodes.filter((n) => n.args?.op_name === 'Cast')) {
  casts.set(n.name.replace(/_kernel_time$/, ''), JSON.stringify(n.args?.input_type_shape ?? []));
}
console.log(`Cast nodes that run: ${casts.size}`);
for (const [name, input] of casts) console.log(`  ${name}: input ${input}`);
