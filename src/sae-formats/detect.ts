/**
 * Which published layout a folder (or file) is, from the names of the files in it:
 *   cfg.json + sae_weights.safetensors -> SAELens;  cfg.json + sae.safetensors -> sparsify;
 *   params.npz / params.safetensors (or any .npz) -> Gemma Scope.
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../pipeline/errors.js';
import { SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME, SPARSITY_FILENAME } from '../sae/saelens-folder.js';
import { GEMMA_SCOPE_FILES } from './gemma-scope.js';
import { SPARSIFY_CFG_FILENAME, SPARSIFY_WEIGHTS_FILENAME } from './sparsify.js';

export type FolderFormat = 'saelens' | 'gemma-scope' | 'sparsify';

export interface FolderLayout {
  format: FolderFormat;
  /** File names the loader needs (relative to the folder). */
  required: string[];
  /** File names it uses when present. */
  optional: string[];
}

/** The layout of a folder holding `names`, or undefined when none matches. */
export function layoutOf(names: ReadonlySet<string>): FolderLayout | undefined {
  if (names.has(SAE_CFG_FILENAME) && names.has(SAE_WEIGHTS_FILENAME)) {
    return {
      format: 'saelens',
      required: [SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME],
      optional: [SPARSITY_FILENAME],
    };
  }
  if (names.has(SPARSIFY_CFG_FILENAME) && names.has(SPARSIFY_WEIGHTS_FILENAME)) {
    return { format: 'sparsify', required: [SPARSIFY_CFG_FILENAME, SPARSIFY_WEIGHTS_FILENAME], optional: [] };
  }
  for (const file of GEMMA_SCOPE_FILES) {
    if (names.has(file)) return { format: 'gemma-scope', required: [file], optional: [] };
  }
  return undefined;
}

/** The files a format's folder needs and may use (for downloads, where the folder is not listed). */
export function layoutFor(format: FolderFormat): FolderLayout {
  switch (format) {
    case 'saelens':
      return { format, required: [SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME], optional: [SPARSITY_FILENAME] };
    case 'sparsify':
      return { format, required: [SPARSIFY_CFG_FILENAME, SPARSIFY_WEIGHTS_FILENAME], optional: [] };
    case 'gemma-scope':
      return { format, required: ['params.npz'], optional: [] };
  }
}

export interface DetectedSae {
  format: FolderFormat;
  /** The folder (SAELens, sparsify) or the weights file (Gemma Scope). */
  path: string;
}

async function entriesOf(dir: string): Promise<{ files: Set<string>; dirs: string[] }> {
  const files = new Set<string>();
  const dirs: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.isDirectory()) dirs.push(e.name);
    else if (e.isFile() || e.isSymbolicLink()) files.add(e.name);
  }
  return { files, dirs: dirs.sort() };
}

/** Detects the layout of a local SAE folder or file; a UserError explains what was found instead. */
export async function detectSaeFormat(target: string): Promise<DetectedSae> {
  let isDir: boolean;
  try {
    isDir = (await stat(target)).isDirectory();
  } catch {
    throw new UserError(`SAE not found: ${path.resolve(target)} does not exist`);
  }
  if (!isDir) {
    const base = path.basename(target);
    if (base.endsWith('.npz')) return { format: 'gemma-scope', path: target };
    // A weights file given instead of its folder: decide by the folder.
    const inFolder = layoutOf((await entriesOf(path.dirname(target))).files);
    if (inFolder && (inFolder.required.includes(base) || inFolder.optional.includes(base))) {
      return inFolder.format === 'gemma-scope'
        ? { format: 'gemma-scope', path: target }
        : { format: inFolder.format, path: path.dirname(target) };
    }
    if (base.endsWith('.safetensors')) return { format: 'gemma-scope', path: target };
    throw new UserError(`${target}: not an SAE file (expected a folder, a .npz or a .safetensors file)`);
  }
  const { files, dirs } = await entriesOf(target);
  const layout = layoutOf(files);
  if (layout) {
    return layout.format === 'gemma-scope'
      ? { format: 'gemma-scope', path: path.join(target, layout.required[0]!) }
      : { format: layout.format, path: target };
  }
  // A folder of SAEs (a sparsify run, a SAELens release checkout): name the choices.
  const inner: string[] = [];
  for (const d of dirs) {
    if (layoutOf((await entriesOf(path.join(target, d))).files)) inner.push(d);
  }
  if (inner.length > 0) {
    const shown = inner.length > 12 ? `${inner.slice(0, 12).join(', ')}, ...` : inner.join(', ');
    throw new UserError(
      `${target} holds ${inner.length} SAE folders (${shown}); pass one of them, e.g. ${path.join(target, inner[0]!)}`,
    );
  }
  if (files.has(SAE_CFG_FILENAME)) {
    throw new UserError(
      `${target}: has ${SAE_CFG_FILENAME} but neither ${SAE_WEIGHTS_FILENAME} (SAELens) nor ${SPARSIFY_WEIGHTS_FILENAME} (sparsify)`,
    );
  }
  throw new UserError(
    `${target}: not a recognised SAE folder (expected cfg.json + ${SAE_WEIGHTS_FILENAME} for SAELens, cfg.json + ${SPARSIFY_WEIGHTS_FILENAME} for sparsify, or params.npz for Gemma Scope; found: ${[...files].sort().join(', ') || 'no files'})`,
  );
}
