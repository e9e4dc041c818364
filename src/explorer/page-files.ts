/**
 * The page itself: explorer.html, its script bundled by esbuild into one ES module (the page code in
 * page/, saeflow's own tokenizer modules, gpt-tokenizer, @huggingface/tokenizers and onnxruntime-web), and
 * onnxruntime-web's WebAssembly beside it or in a folder shared by several explorers. Bundled at export
 * time so the page needs nothing but its files.
 */
import { copyFile, readFile, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import type { Plugin } from 'esbuild';
import { escapeHtml } from '../report/escape.js';
import { ORT_WASM_FILE, ORT_WEBGPU_WASM_FILE, PAGE_FILE, SCRIPT_FILE } from './manifest.js';
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

/**
 * Where a page finds its script and onnxruntime's WebAssembly: `.` (its own folder) or a folder of them
 * shared by several explorers (`..` for eval-sae's `explorer/<sae>/`), as a URL relative to the page.
 */
export type RuntimeLocation = string;

function runtimeUrl(location: RuntimeLocation, file: string): string {
  return location === '.' ? file : `${location}/${file}`;
}

/**
 * Writes the script and the WebAssembly that pages load from `dir` (the same two files for every SAE, so
 * a folder of explorers needs them once); returns their sizes by name.
 */
export async function writeRuntimeFiles(dir: string, webgpu: boolean): Promise<Record<string, number>> {
  const script = await bundle(webgpu);
  await writeFile(path.join(dir, SCRIPT_FILE), script);
  const wasmFile = webgpu ? ORT_WEBGPU_WASM_FILE : ORT_WASM_FILE;
  const wasm = createRequire(import.meta.url).resolve(`onnxruntime-web/${wasmFile}`);
  await copyFile(wasm, path.join(dir, wasmFile));
  return { [SCRIPT_FILE]: script.length, [wasmFile]: (await stat(wasm)).size };
}

/** The runtime file names a page of this kind loads, as URLs relative to the page. */
export function runtimeUrls(webgpu: boolean, location: RuntimeLocation): { script: string; wasm: string } {
  return {
    script: runtimeUrl(location, SCRIPT_FILE),
    wasm: runtimeUrl(location, webgpu ? ORT_WEBGPU_WASM_FILE : ORT_WASM_FILE),
  };
}

/** Writes explorer.html, which loads its script from `location`; returns its size by name. */
export async function writePageHtml(
  dir: string,
  manifest: ExplorerManifest,
  location: RuntimeLocation,
): Promise<Record<string, number>> {
  const css = await readFile(path.join(PAGE_DIR, 'explorer.css'), 'utf8');
  const template = await readFile(path.join(PAGE_DIR, 'explorer.html'), 'utf8');
  const title = `${manifest.sae.name} · ${manifest.sae.hook_name} · ${manifest.model.name}`;
  const html = template
    .replace('{{title}}', () => escapeHtml(title))
    .replace('{{css}}', () => css)
    .replace('{{script}}', () => escapeHtml(runtimeUrls(manifest.runtime.webgpu, location).script));
  await writeFile(path.join(dir, PAGE_FILE), html);
  return { [PAGE_FILE]: Buffer.byteLength(html) };
}
