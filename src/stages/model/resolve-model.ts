import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ProgressCallback } from '../../hub/download.js';
import { resolveModelFolder } from '../../hub/model-folder.js';

/** The model that ships with saeflow (see models/tiny-gpt2/README.md): used when no network is needed. */
export const EMBEDDED_MODEL_NAME = 'tiny-gpt2';
export const EMBEDDED_MODEL_DIR = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  '..',
  'models',
  EMBEDDED_MODEL_NAME,
);

export interface ResolvedModelSource {
  dir: string;
  /** How it was found, for the run log. */
  description: string;
  /** A short name for manifests and SAE configs (`gpt2`, `tiny-gpt2`, or the directory's name). */
  name: string;
}

/**
 * A `model` option: `auto`, the embedded model's name, a local Hugging Face directory, or a hub name/alias
 * (`gpt2`, `openai-community/gpt2`, `google/gemma-2-2b`), looked up in the Hugging Face cache and downloaded
 * (config.json, single or sharded safetensors, tokenizer files) when allowed.
 */
export async function resolveModelSource(
  spec: string,
  cwd = process.cwd(),
  log: (message: string) => void = (m) => process.stderr.write(`${m}\n`),
): Promise<ResolvedModelSource> {
  if (spec === 'auto') {
    // GPT-2 small when the Hugging Face cache already has it; otherwise the embedded model, offline.
    try {
      const found = await resolveModelFolder('gpt2', { allowDownload: false });
      return { dir: found.dir, description: `gpt2 from the Hugging Face cache (${found.dir})`, name: 'gpt2' };
    } catch {
      return {
        dir: EMBEDDED_MODEL_DIR,
        description: `embedded model ${EMBEDDED_MODEL_NAME} (GPT-2 weights are not in the Hugging Face cache; pass --model gpt2 to download them)`,
        name: EMBEDDED_MODEL_NAME,
      };
    }
  }
  if (spec === EMBEDDED_MODEL_NAME) {
    return {
      dir: EMBEDDED_MODEL_DIR,
      description: `embedded model ${EMBEDDED_MODEL_DIR}`,
      name: EMBEDDED_MODEL_NAME,
    };
  }
  const local = path.resolve(cwd, spec);
  if (existsSync(local) && statSync(local).isDirectory()) {
    return { dir: local, description: `local directory ${local}`, name: path.basename(local) };
  }
  const found = await resolveModelFolder(spec, { onProgress: downloadLogger(log) });
  return {
    dir: found.dir,
    description: `${found.repoId ?? spec} from the Hugging Face ${found.source === 'download' ? 'hub' : 'cache'} (${found.dir})`,
    name: spec,
  };
}

/** Logs a download's progress every 10% (and each file's start), with the rate and an ETA. */
function downloadLogger(log: (message: string) => void): ProgressCallback {
  const shown = new Map<string, { step: number; started: number }>();
  return ({ repoId, file, downloadedBytes, totalBytes }) => {
    const key = `${repoId}/${file}`;
    let entry = shown.get(key);
    if (!entry) {
      entry = { step: -1, started: performance.now() };
      shown.set(key, entry);
    }
    const step = totalBytes ? Math.floor((downloadedBytes / totalBytes) * 10) : 0;
    if (step <= entry.step) return;
    entry.step = step;
    const seconds = (performance.now() - entry.started) / 1000;
    const rate = seconds > 0 ? downloadedBytes / seconds : 0;
    const eta = totalBytes && rate > 0 ? ` · ETA ${Math.round((totalBytes - downloadedBytes) / rate)}s` : '';
    const of = totalBytes ? ` of ${(totalBytes / 1e6).toFixed(1)} MB (${step * 10}%)` : '';
    log(
      `downloading ${key}: ${(downloadedBytes / 1e6).toFixed(1)} MB${of} · ${(rate / 1e6).toFixed(1)} MB/s${eta}`,
    );
  };
}
