/**
 * Finding an SAE's files from a `--sae` reference, the way models are found:
 *   - a local folder or file, used as is;
 *   - `RELEASE/SAE_ID` for a release in the registry (`gpt2-small-res-jb/blocks.8.hook_resid_pre`);
 *   - `ORG/REPO/FOLDER` (or `ORG/REPO` for an SAE at the repository root) on the Hugging Face hub.
 * Hub SAEs come from the Hugging Face cache when it holds the folder's files at the revision, else are
 * downloaded into it (unless offline or downloads are disabled).
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import {
  cachedSnapshot,
  checkRepoFilePath,
  checkRevision,
  isFile,
  isRepoId,
  repoCacheDir,
  repoPath,
} from '../hub/cache.js';
import { listRepoTree } from '../hub/datasets.js';
import { downloadToCache, hubClient, HubUnreachableError } from '../hub/download.js';
import type { HubAccessOptions, HubClient } from '../hub/download.js';
import { isHubOffline } from '../hub/env.js';
import { UserError } from '../pipeline/errors.js';
import { detectSaeFormat, layoutFor, layoutOf } from './detect.js';
import type { DetectedSae, FolderLayout } from './detect.js';
import { findRelease, releaseEntry, SAE_RELEASES } from './releases.js';
import type { SaeRelease, SaeReleaseEntry } from './releases.js';
import type { ReleaseRef } from './types.js';

export type ResolveSaeOptions = HubAccessOptions;

export interface ResolvedSae {
  detected: DetectedSae;
  source: 'local' | 'cache' | 'download';
  /** For hub SAEs: the repository, the folder in it and the commit. */
  hub?: ReleaseRef;
  release?: SaeRelease;
  entry?: SaeReleaseEntry;
}

interface HubTarget {
  repoId: string;
  /** '' for the repository root. */
  folder: string;
  release?: SaeRelease;
  entry?: SaeReleaseEntry;
  saeId: string;
}

function looksLikePath(ref: string): boolean {
  return /^[.~/]/.test(ref) || ref.includes('\\') || /^[A-Za-z]:/.test(ref);
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const next = Math.min(row[j]! + 1, row[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = row[j]!;
      row[j] = next;
    }
  }
  return row[b.length]!;
}

/** Release names close to `name` (edit distance, or one containing the other), nearest first. */
export function nearestReleases(name: string, count = 5): string[] {
  const lower = name.toLowerCase();
  return SAE_RELEASES.map((r) => {
    const d = editDistance(lower, r.name.toLowerCase());
    const contains = lower.length >= 4 && (r.name.includes(lower) || lower.includes(r.name));
    return { name: r.name, d: contains ? Math.min(d, 1) : d };
  })
    .filter((r) => r.d <= Math.max(3, Math.floor(name.length / 3)))
    .sort((a, b) => a.d - b.d || a.name.localeCompare(b.name))
    .slice(0, count)
    .map((r) => r.name);
}

function unknownRelease(ref: string, name: string, near: string[]): UserError {
  const hint = near.length > 0 ? `; nearest: ${near.join(', ')}` : '';
  return new UserError(
    `--sae ${ref}: unknown release '${name}'${hint} (${SAE_RELEASES.length} releases are known: SAELens's list and saeflow's additions), and not a folder, a file or a Hugging Face ORG/REPO/FOLDER`,
  );
}

export interface ReleaseLocation {
  release: SaeRelease;
  entry: SaeReleaseEntry;
  saeId: string;
  repoId: string;
  /** Folder (or file) inside the repository. */
  path: string;
}

/** Where `RELEASE/SAE_ID` lives on the hub, or undefined when RELEASE is no known release. */
export function releaseLocation(ref: string): ReleaseLocation | undefined {
  const parts = ref.split('/');
  const release = findRelease(parts[0]!);
  if (!release) return undefined;
  const saeId = parts.slice(1).join('/');
  if (saeId === '') {
    throw new UserError(
      `--sae ${ref}: name an SAE of release ${release.name}, e.g. ${release.name}/${release.idExample}`,
    );
  }
  const entry = releaseEntry(release, saeId);
  if (!entry) {
    const ids = release.saes?.map((s) => s.id) ?? [];
    const shown =
      ids.length > 12 ? `${ids.slice(0, 12).join(', ')}, ... (${ids.length} in all)` : ids.join(', ');
    const known = ids.length > 0 ? ` (it has: ${shown})` : '';
    throw new UserError(
      `--sae ${ref}: release ${release.name} has no SAE '${saeId}'${known}; e.g. ${release.name}/${release.idExample}`,
    );
  }
  return { release, entry, saeId, repoId: release.repoId, path: entry.path };
}

function hubTarget(ref: string): HubTarget {
  const parts = ref.split('/');
  const located = releaseLocation(ref);
  if (located) {
    const { release } = located;
    if (release.format === null) {
      throw new UserError(
        `--sae ${ref}: release ${release.name} is stored in the format of SAELens's '${release.conversion}' conversion, which saeflow does not read; its files are ${release.repoId}/${located.path} on the Hugging Face hub`,
      );
    }
    return {
      repoId: release.repoId,
      folder: located.path,
      release,
      entry: located.entry,
      saeId: located.saeId,
    };
  }
  const near = nearestReleases(parts[0]!);
  // A name that is nearly a release's is a misspelt release, not a hub organisation.
  if (parts.length >= 2 && isRepoId(`${parts[0]}/${parts[1]}`) && near.length === 0) {
    const folder = parts.slice(2).join('/');
    if (folder !== '') checkRepoFilePath(folder);
    return { repoId: `${parts[0]}/${parts[1]}`, folder, saeId: folder };
  }
  throw unknownRelease(ref, parts[0]!, near);
}

const join = (folder: string, file: string) => (folder === '' ? file : `${folder}/${file}`);

/** The layout of a cached folder, counting only files whose blobs are present. */
async function cachedLayout(dir: string): Promise<FolderLayout | undefined> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return undefined;
  }
  const present = new Set<string>();
  for (const n of names) if (await isFile(path.join(dir, n))) present.add(n);
  return layoutOf(present);
}

async function fromCache(client: HubClient, target: HubTarget, revision: string) {
  const repoDir = repoCacheDir(client.cacheDir, target.repoId, 'model');
  const snapshot = await cachedSnapshot(repoDir, revision);
  if (!snapshot) return { repoDir };
  const dir = target.folder === '' ? snapshot.dir : repoPath(snapshot.dir, target.folder);
  const layout = await cachedLayout(dir);
  if (!layout || (target.release && layout.format !== target.release.format)) return { repoDir };
  return { repoDir, found: { dir, commit: snapshot.commit, layout } };
}

function isNotFound(e: unknown): boolean {
  return e instanceof UserError && !(e instanceof HubUnreachableError) && /HTTP 404/.test(e.message);
}

async function download(client: HubClient, target: HubTarget, revision: string) {
  let layout: FolderLayout;
  let rev = revision;
  if (target.release?.format) {
    layout = layoutFor(target.release.format);
  } else {
    const tree = await listRepoTree(client, target.repoId, 'model', revision);
    if (!tree)
      throw new UserError(
        `model repository ${target.repoId} has no revision '${revision}' on ${client.endpoint}`,
      );
    const prefix = target.folder === '' ? '' : `${target.folder}/`;
    const names = new Set(
      tree
        .filter(
          (e) => e.type === 'file' && e.path.startsWith(prefix) && !e.path.slice(prefix.length).includes('/'),
        )
        .map((e) => e.path.slice(prefix.length)),
    );
    const found = layoutOf(names);
    if (!found) {
      throw new UserError(
        `${target.repoId}/${target.folder}: no SAE there on the hub (expected cfg.json + sae_weights.safetensors, cfg.json + sae.safetensors, or params.npz; found: ${[...names].sort().join(', ') || 'nothing'})`,
      );
    }
    layout = { ...found, optional: found.optional.filter((f) => names.has(f)) };
  }
  let snapshotDir = '';
  for (const file of layout.required) {
    const got = await downloadToCache(client, {
      repoId: target.repoId,
      type: 'model',
      revision: rev,
      file: join(target.folder, file),
    });
    // The rest from the same commit even if the branch moves meanwhile.
    rev = got.commit;
    snapshotDir = got.snapshotDir;
  }
  for (const file of layout.optional) {
    try {
      await downloadToCache(client, {
        repoId: target.repoId,
        type: 'model',
        revision: rev,
        file: join(target.folder, file),
      });
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
  }
  const dir = target.folder === '' ? snapshotDir : repoPath(snapshotDir, target.folder);
  return { dir, commit: rev, layout };
}

function detectedIn(dir: string, layout: FolderLayout): DetectedSae {
  return layout.format === 'gemma-scope'
    ? { format: 'gemma-scope', path: path.join(dir, layout.required[0]!) }
    : { format: layout.format, path: dir };
}

/** Resolves a `--sae` reference to local files (see the module comment). */
export async function resolveSae(ref: string, options: ResolveSaeOptions = {}): Promise<ResolvedSae> {
  const { revision = 'main', allowDownload = true, env = process.env } = options;
  if (ref.trim() === '')
    throw new UserError('--sae: no SAE given (a folder, a file, RELEASE/SAE_ID or ORG/REPO/FOLDER)');
  const exists = await stat(ref).then(
    () => true,
    () => false,
  );
  if (exists) return { detected: await detectSaeFormat(ref), source: 'local' };
  if (looksLikePath(ref)) throw new UserError(`SAE not found: ${path.resolve(ref)} does not exist`);
  const target = hubTarget(ref.replace(/\/+$/, ''));
  checkRevision(revision);
  const client = hubClient(env, { onProgress: options.onProgress, ...options.client });
  const hub = (commit: string): ReleaseRef => ({
    release: target.release?.name ?? target.repoId,
    saeId: target.saeId,
    repoId: target.repoId,
    path: target.folder,
    commit,
  });

  const cached = await fromCache(client, target, revision);
  if (cached.found) {
    const { dir, commit, layout } = cached.found;
    return {
      detected: detectedIn(dir, layout),
      source: 'cache',
      hub: hub(commit),
      release: target.release,
      entry: target.entry,
    };
  }
  const where = `${target.repoId}${target.folder ? `/${target.folder}` : ''}`;
  const notCached = `SAE ${ref} (${where} at revision ${revision}) is not in the Hugging Face cache (looked in ${cached.repoDir})`;
  const howTo = `pass --sae /path/to/folder, or allow network access so it can be downloaded from ${client.endpoint}/${target.repoId}`;
  if (isHubOffline(env))
    throw new UserError(`${notCached}, and HF_HUB_OFFLINE is set. To fix: ${howTo} (unset HF_HUB_OFFLINE).`);
  if (!allowDownload) throw new UserError(`${notCached}, and downloads are disabled. To fix: ${howTo}.`);
  try {
    const { dir, commit, layout } = await download(client, target, revision);
    return {
      detected: detectedIn(dir, layout),
      source: 'download',
      hub: hub(commit),
      release: target.release,
      entry: target.entry,
    };
  } catch (e) {
    if (e instanceof HubUnreachableError)
      throw new UserError(`${notCached}. ${e.message}. To fix: ${howTo}.`, { cause: e });
    throw e;
  }
}
