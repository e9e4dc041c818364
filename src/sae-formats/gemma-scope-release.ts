/**
 * The SAEs of a Gemma Scope release as candidates for a per-layer choice: every `layer_N/width_W/average_l0_K`
 * folder of the release (SAELens's list in saelens-releases.json, plus any folder the Hugging Face cache holds
 * of the repository), or of a local folder laid out like it; and SAELens's canonical choice for each layer and
 * width (the `<release>-canonical` release maps `layer_N/width_W/canonical` to one of those folders).
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { cachedSnapshot, repoCacheDir } from '../hub/cache.js';
import { hfHubCache } from '../hub/env.js';
import type { Env } from '../hub/env.js';
import { UserError } from '../pipeline/errors.js';
import { naturalCompare } from '../util/natural-compare.js';
import { GEMMA_SCOPE_FILES } from './gemma-scope.js';
import { findRelease, SAE_RELEASES } from './releases.js';
import type { SaeRelease } from './releases.js';

/** One SAE of a Gemma Scope layout: `layer_12/width_16k/average_l0_82`. */
export interface GemmaScopeId {
  id: string;
  layer: number;
  /** The folder's width label (`16k`, `1m`). */
  width: string;
  /** K of `average_l0_K`: the L0 Google measured for it (what SAELens's canonical choice went by). */
  averageL0: number;
}

const ID = /^layer_(\d+)\/width_([0-9a-z]+)\/average_l0_(\d+)$/;

export function parseGemmaScopeId(id: string): GemmaScopeId | undefined {
  const m = ID.exec(id);
  if (!m) return undefined;
  return { id, layer: Number(m[1]), width: m[2]!, averageL0: Number(m[3]) };
}

/** `layer_12/width_16k`: the group a canonical SAE is chosen in (one layer and width). */
export function gemmaScopeGroup(id: Pick<GemmaScopeId, 'layer' | 'width'>): string {
  return `layer_${id.layer}/width_${id.width}`;
}

function sortIds(ids: Iterable<GemmaScopeId>): GemmaScopeId[] {
  const unique = new Map<string, GemmaScopeId>();
  for (const id of ids) unique.set(id.id, id);
  return [...unique.values()].sort(
    (a, b) =>
      a.layer - b.layer ||
      naturalCompare(a.width, b.width) ||
      a.averageL0 - b.averageL0 ||
      (a.id < b.id ? -1 : 1),
  );
}

const hasWeights = (dir: string): boolean => GEMMA_SCOPE_FILES.some((f) => existsSync(path.join(dir, f)));

const subdirs = (dir: string, pattern: RegExp): string[] => {
  try {
    return readdirSync(dir).filter((n) => pattern.test(n) && statSync(path.join(dir, n)).isDirectory());
  } catch {
    return [];
  }
};

/**
 * The `layer_N/width_W/average_l0_K` folders under `root` that hold `params.npz` or `params.safetensors`
 * (a local copy of a Gemma Scope repository, or a snapshot of it in the Hugging Face cache).
 */
export function listGemmaScopeFolder(root: string): GemmaScopeId[] {
  const found: GemmaScopeId[] = [];
  for (const layer of subdirs(root, /^layer_\d+$/)) {
    for (const width of subdirs(path.join(root, layer), /^width_[0-9a-z]+$/)) {
      for (const l0 of subdirs(path.join(root, layer, width), /^average_l0_\d+$/)) {
        const id = parseGemmaScopeId(`${layer}/${width}/${l0}`);
        if (id && hasWeights(path.join(root, layer, width, l0))) found.push(id);
      }
    }
  }
  return sortIds(found);
}

/** A Gemma Scope release of the registry (SAELens's name), or a UserError naming the Gemma Scope ones. */
export function gemmaScopeRelease(name: string): SaeRelease {
  const release = findRelease(name);
  if (!release || release.format !== 'gemma-scope' || name.endsWith('-canonical')) {
    const known = gemmaScopeReleaseNames();
    throw new UserError(
      `--release ${name}: not a Gemma Scope release with average_l0 folders (known: ${known.join(', ')})`,
    );
  }
  return release;
}

/** Names of the registry's Gemma Scope releases (without the `-canonical` aliases). */
export function gemmaScopeReleaseNames(): string[] {
  return SAE_RELEASES.filter(
    (r) => r.format === 'gemma-scope' && r.name.startsWith('gemma-scope-') && !r.name.endsWith('-canonical'),
  ).map((r) => r.name);
}

export interface ReleaseCandidates {
  /** Every candidate: listed by SAELens, or present in the cache. */
  ids: GemmaScopeId[];
  /** The cached snapshot's folder, when the cache holds the repository. */
  snapshotDir: string | null;
  /** Ids whose weights the cache already holds. */
  cached: Set<string>;
}

/** The release's SAEs: SAELens's list plus the folders of the repository's cached snapshot (if any). */
export async function releaseCandidates(
  release: SaeRelease,
  env: Env = process.env,
  revision = 'main',
): Promise<ReleaseCandidates> {
  const listed = (release.saes ?? []).flatMap((s) => parseGemmaScopeId(s.id) ?? []);
  const repoDir = repoCacheDir(hfHubCache(env), release.repoId, 'model');
  const snapshot = await cachedSnapshot(repoDir, revision);
  const inCache = snapshot ? listGemmaScopeFolder(snapshot.dir) : [];
  return {
    ids: sortIds([...listed, ...inCache]),
    snapshotDir: snapshot?.dir ?? null,
    cached: new Set(inCache.map((i) => i.id)),
  };
}

/** Keeps the ids at the requested layers (all when empty) and widths (all when empty). */
export function selectIds(
  ids: readonly GemmaScopeId[],
  layers: readonly number[],
  widths: readonly string[],
): GemmaScopeId[] {
  const normal = (w: string) => w.replace(/^width_/, '').toLowerCase();
  const wantWidths = new Set(widths.map(normal));
  const wantLayers = new Set(layers);
  return ids.filter(
    (i) =>
      (wantLayers.size === 0 || wantLayers.has(i.layer)) &&
      (wantWidths.size === 0 || wantWidths.has(i.width)),
  );
}

/**
 * SAELens's canonical SAE per layer and width: `layer_12/width_16k` -> `layer_12/width_16k/average_l0_82`,
 * from the `<release>-canonical` release (empty when there is none).
 */
export function saelensCanonical(releaseName: string): Map<string, string> {
  const canonical = findRelease(`${releaseName}-canonical`);
  const out = new Map<string, string>();
  for (const s of canonical?.saes ?? []) {
    const m = /^(layer_\d+\/width_[0-9a-z]+)\/canonical$/.exec(s.id);
    if (m && parseGemmaScopeId(s.path)) out.set(m[1]!, s.path);
  }
  return out;
}
