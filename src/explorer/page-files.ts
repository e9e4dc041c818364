/**
 * The page itself: explorer.html, its script bundled by esbuild into one ES module (the page code in
 * page/, saeflow's own tokenizer modules, gpt-tokenizer, @huggingface/tokenizers and onnxruntime-web), and
 * onnxruntime-web's WebAssembly beside it. Bundled at export time so the page needs nothing but its folder.
 */
import { copyFile, readFile, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import type { Plugin } from 'esbuild';
import { escapeHtml } from '../report/escape.js';
import { PAGE_FILE, SCRIPT_FILE } from './manifest.js';
import type { ExplorerManifest } from './manifest.js';

const PAGE_DIR = fileURLToPath(new URL('./page/', import.meta.url));

/**
 * The page imports onnxruntime-web's WebAssembly-only bundle; with WebGPU the same code gets the WebGPU
 * bundle instead (same API, a larger .wasm), so the page has one source either way.
 */
const webgpuRuntime: Plugin = {
  name: 'onnxruntime-webgpu',
  setup(b) {
    b.onResolve({ filter: /^onnxruntime-web\/wasm$/ }, (args) =>
      b.resolve('onnxruntime-web/webgpu', { kind: args.kind, resolveDir: args.resolveDir }),
    );
  },
};

async function bundle(webgpu: boolean): Promise<Uint8Array> {
  const result = await build({
    plugins: webgpu ? [webgpuRuntime] : [],
    entryPoints: [path.join(PAGE_DIR, 'main.ts')],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    write: false,
    logLevel: 'silent',
    tsconfig: path.join(PAGE_DIR, 'tsconfig.json'),
  });
  const out = result.outputFiles[0];
  if (!out) throw new Error('esbuild produced no explorer script');
  return out.contents;
}

/** Writes the page files; returns their sizes by name. */
export async function writePageFiles(
  dir: string,
  manifest: ExplorerManifest,
): Promise<Record<string, number>> {
  const script = await bundle(manifest.runtime.webgpu);
  await writeFile(path.join(dir, SCRIPT_FILE), script);
  const css = await readFile(path.join(PAGE_DIR, 'explorer.css'), 'utf8');
  const template = await readFile(path.join(PAGE_DIR, 'explorer.html'), 'utf8');
  const title = `${manifest.sae.name} · ${manifest.sae.hook_name} · ${manifest.model.name}`;
  const html = template
    .replace('{{title}}', () => escapeHtml(title))
    .replace('{{css}}', () => css)
    .replace('{{script}}', () => SCRIPT_FILE);
  await writeFile(path.join(dir, PAGE_FILE), html);
  const wasmFile = manifest.runtime.wasm;
  const wasm = createRequire(import.meta.url).resolve(`onnxruntime-web/${wasmFile}`);
  await copyFile(wasm, path.join(dir, wasmFile));
  return {
    [PAGE_FILE]: Buffer.byteLength(html),
    [SCRIPT_FILE]: script.length,
    [wasmFile]: (await stat(wasm)).size,
  };
}
