/**
 * Resolving a Hugging Face dataset id to local Parquet files: the cached snapshot, or a download of the
 * Parquet files the hub's tree API lists. Datasets stored in another format fall back to the hub's automatic
 * Parquet conversion, which lives on the `refs/convert/parquet` revision of the same repository.
 */
import { join } from 'node:path';
import { UserError } from '../pipeline/errors.js';
import {
  cachedSnapshot,
  checkRepoId,
  checkRevision,
  listSnapshotFiles,
  repoCacheDir,
  repoPath,
} from './cache.js';
import {
  downloadToCache,
  hubClient,
  hubFetch,
  hubHttpError,
  HubUnreachableError,
  type HubAccessOptions,
  type HubClient,
} from './download.js';
import { isHubOffline } from './env.js';

export const PARQUET_CONVERSION_REVISION = 'refs/convert/parquet';

export interface ResolveDatasetOptions extends HubAccessOptions {
  /** Branch, tag or commit. Default: 'main', falling back to the hub's Parquet conversion. */
  revision?: string;
  /** Use only the first N Parquet files (sorted by path): a sample of a large dataset. */
  maxFiles?: number;
}

export interface ResolvedDataset {
  repoId: string;
  /** The revision the files came from ('main', 'refs/convert/parquet', or the one asked for). */
  revision: string;
  commit: string;
  /** The snapshot directory. */
  dir: string;
  /** Absolute paths of the Parquet files, sorted by repository path. */
  files: string[];
  source: 'cache' | 'download';
}

export interface RepoTreeEntry {
  type: 'file' | 'directory';
  path: string;
  size?: number;
  oid?: string;
  lfs?: { oid: string; size: number };
}

const isParquet = (path: string) => path.toLowerCase().endsWith('.parquet');

function nextPage(link: string | null, current: string): string | undefined {
  // Link: <https://huggingface.co/api/...&cursor=...>; rel="next"
  const match = link && /<([^>]+)>\s*;\s*rel="?next"?/.exec(link);
  return match ? new URL(match[1]!, current).href : undefined;
}

function checkTreeEntry(entry: unknown, url: string): RepoTreeEntry {
  const e = entry as RepoTreeEntry;
  if (
    typeof e !== 'object' ||
    e === null ||
    typeof e.path !== 'string' ||
    (e.type !== 'file' && e.type !== 'directory')
  ) {
    throw new UserError(
      `unexpected entry in the hub's file listing ${url}: ${JSON.stringify(entry)?.slice(0, 200)}`,
    );
  }
  return e;
}

/**
 * Every file and folder of a repository at a revision (GET /api/{type}s/{id}/tree/{revision}?recursive=true,
 * following `Link: rel="next"` pages), or undefined if the revision does not exist.
 */
export async function listRepoTree(
  client: HubClient,
  repoId: string,
  type: 'model' | 'dataset',
  revision: string,
): Promise<RepoTreeEntry[] | undefined> {
  const what = `the file list of ${type} ${repoId} at revision ${revision}`;
  let url: string | undefined =
    `${client.endpoint}/api/${type}s/${repoId}/tree/${encodeURIComponent(revision)}?recursive=true&expand=false`;
  const entries: RepoTreeEntry[] = [];
  for (let page = 0; url !== undefined; page++) {
    if (page >= 10_000) throw new UserError(`${what}: more than 10,000 pages; giving up`);
    const res = await hubFetch(client, url, { signal: AbortSignal.timeout(client.metadataTimeoutMs) }, what);
    if (res.status === 404 && res.headers.get('x-error-code') === 'RevisionNotFound') {
      await res.body?.cancel().catch(() => undefined);
      return undefined;
    }
    if (!res.ok) throw await hubHttpError(res, what, url);
    let body: unknown;
    try {
      body = await res.json();
    } catch {
      throw new UserError(`${what}: the hub's answer is not JSON (${url})`);
    }
    if (!Array.isArray(body)) throw new UserError(`${what}: expected a JSON list from ${url}`);
    for (const entry of body) entries.push(checkTreeEntry(entry, url));
    url = nextPage(res.headers.get('link'), url);
  }
  return entries;
}

async function fromCache(
  repoDir: string,
  repoId: string,
  revisions: readonly string[],
  maxFiles: number | undefined,
): Promise<ResolvedDataset | undefined> {
  for (const revision of revisions) {
    const snapshot = await cachedSnapshot(repoDir, revision);
    if (!snapshot) continue;
    const files = (await listSnapshotFiles(snapshot.dir, isParquet)).slice(0, maxFiles);
    if (files.length > 0) {
      return {
        repoId,
        revision,
        commit: snapshot.commit,
        dir: snapshot.dir,
        files: files.map((f) => repoPath(snapshot.dir, f)),
        source: 'cache',
      };
    }
  }
  return undefined;
}

async function download(
  client: HubClient,
  repoId: string,
  revisions: readonly string[],
  maxFiles: number | undefined,
): Promise<ResolvedDataset> {
  for (const revision of revisions) {
    const tree = await listRepoTree(client, repoId, 'dataset', revision);
    if (tree === undefined) {
      if (revision === PARQUET_CONVERSION_REVISION && revisions.length > 1) continue;
      throw new UserError(`dataset ${repoId} has no revision '${revision}' on ${client.endpoint}`);
    }
    const wanted = tree
      .filter((e) => e.type === 'file' && isParquet(e.path))
      .map((e) => e.path)
      .sort()
      .slice(0, maxFiles);
    if (wanted.length === 0) continue;
    let rev = revision;
    let snapshotDir = '';
    for (const file of wanted) {
      const got = await downloadToCache(client, { repoId, type: 'dataset', revision: rev, file });
      rev = got.commit; // the rest from the same commit, even if the branch moves meanwhile
      snapshotDir = got.snapshotDir;
    }
    return {
      repoId,
      revision,
      commit: rev,
      dir: snapshotDir,
      files: wanted.map((f) => repoPath(snapshotDir, f)),
      source: 'download',
    };
  }
  throw new UserError(
    `dataset ${repoId} has no Parquet files at revision ${revisions.join(' or ')} on ${client.endpoint}`,
  );
}

/**
 * Local Parquet files of a hub dataset. Online, the hub's listing decides which files belong to the
 * revision (so an interrupted earlier download is completed); offline, the cached snapshot is used as is.
 */
export async function resolveDatasetFiles(
  id: string,
  options: ResolveDatasetOptions = {},
): Promise<ResolvedDataset> {
  const { revision, allowDownload = true, maxFiles, env = process.env } = options;
  checkRepoId(id, 'dataset');
  if (revision !== undefined) checkRevision(revision);
  if (maxFiles !== undefined && (!Number.isInteger(maxFiles) || maxFiles < 1)) {
    throw new UserError(`maxFiles must be a positive integer, got ${maxFiles}`);
  }
  const revisions = revision !== undefined ? [revision] : ['main', PARQUET_CONVERSION_REVISION];
  const client = hubClient(env, { onProgress: options.onProgress, ...options.client });
  const repoDir = repoCacheDir(client.cacheDir, id, 'dataset');

  const notCached = `dataset '${id}' has no Parquet files in the Hugging Face cache (looked in ${join(repoDir, 'snapshots')} for revision ${revisions.join(' and ')})`;
  const howTo = `pass a local Parquet/JSONL/text file or directory as the dataset, or allow network access so it can be downloaded from ${client.endpoint}/datasets/${id}`;
  if (isHubOffline(env) || !allowDownload) {
    const cached = await fromCache(repoDir, id, revisions, maxFiles);
    if (cached) return cached;
    const why = isHubOffline(env) ? 'HF_HUB_OFFLINE is set' : 'downloads are disabled';
    throw new UserError(`${notCached}, and ${why}. To fix: ${howTo}.`);
  }
  try {
    return await download(client, id, revisions, maxFiles);
  } catch (e) {
    if (!(e instanceof HubUnreachableError)) throw e;
    // No network: what an earlier run cached is better than nothing.
    const cached = await fromCache(repoDir, id, revisions, maxFiles);
    if (cached) return cached;
    throw new UserError(`${notCached}. ${e.message}. To fix: ${howTo}.`, { cause: e });
  }
}
