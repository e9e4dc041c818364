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
import { escapeHtml } from '../report/escape.js';
import { ORT_WASM_FILE, PAGE_FILE, SCRIPT_FILE } from './manifest.js';
import type { ExplorerManifest } from './manifest.js';

const PAGE_DIR = fileURLToPath(new URL('./page/', import.meta.url));

async function bundle(): Promise<Uint8Array> {
  const result = await build({
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
  const script = await bundle();
  await writeFile(path.join(dir, SCRIPT_FILE), script);
  const css = await readFile(path.join(PAGE_DIR, 'explorer.css'), 'utf8');
  const template = await readFile(path.join(PAGE_DIR, 'explorer.html'), 'utf8');
  const title = `${manifest.sae.name} · ${manifest.sae.hook_name} · ${manifest.model.name}`;
  const html = template
    .replace('{{title}}', () => escapeHtml(title))
    .replace('{{css}}', () => css)
    .replace('{{script}}', () => SCRIPT_FILE);
  await writeFile(path.join(dir, PAGE_FILE), html);
  const wasm = createRequire(import.meta.url).resolve(`onnxruntime-web/${ORT_WASM_FILE}`);
  await copyFile(wasm, path.join(dir, ORT_WASM_FILE));
  return {
    [PAGE_FILE]: Buffer.byteLength(html),
    [SCRIPT_FILE]: script.length,
    [ORT_WASM_FILE]: (await stat(wasm)).size,
  };
}
