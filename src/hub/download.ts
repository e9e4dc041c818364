/**
 * Downloading one file of a hub repository into the shared cache, the way `hf_hub_download` does:
 * a HEAD on `{endpoint}/{repo}/resolve/{revision}/{file}` gives the commit, the blob's etag (sha256 for
 * LFS files) and size; the bytes go to `blobs/<etag>.incomplete` (resumed with an HTTP Range request after
 * an interruption), are checked, renamed to `blobs/<etag>` and linked from `snapshots/<commit>/<file>`.
 */
import { randomBytes } from 'node:crypto';
import {
  copyFile,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  symlink,
  truncate,
  unlink,
} from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { UserError } from '../pipeline/errors.js';
import { sha256File } from '../io/sha256.js';
import { tempPathFor, writeFileAtomic } from '../util/atomic-write.js';
import {
  checkRepoFilePath,
  checkRevision,
  COMMIT_HASH,
  isFile,
  repoCacheDir,
  repoPath,
  type RepoType,
} from './cache.js';
import { hfEndpoint, hfHubCache, hfToken, type Env } from './env.js';

export interface DownloadProgress {
  repoId: string;
  file: string;
  downloadedBytes: number;
  /** Undefined when the hub did not say how large the file is. */
  totalBytes: number | undefined;
}

export type ProgressCallback = (progress: DownloadProgress) => void;

/** How a model, dataset or SAE lookup may reach the Hugging Face cache and hub. */
export interface HubAccessOptions {
  /** Branch, tag or commit of the hub repository; default 'main'. */
  revision?: string;
  /** Download what the cache lacks (default true; HF_HUB_OFFLINE=1 forbids it regardless). */
  allowDownload?: boolean;
  onProgress?: ProgressCallback;
  /** Environment to read HF_* settings from (default process.env). */
  env?: Env;
  /** Overrides for the hub client (endpoint, cache directory, retry policy). */
  client?: Partial<HubClient>;
}

/** Where and how to talk to the hub; `hubClient(env)` fills it from the environment. */
export interface HubClient {
  endpoint: string;
  cacheDir: string;
  token?: string;
  onProgress?: ProgressCallback;
  /** Consecutive failed attempts (no new bytes) tolerated while downloading one file. */
  retries: number;
  /** First pause between attempts; doubles with each consecutive failure. */
  retryDelayMs: number;
  /** Limit for metadata requests (HEAD, API listings), not for file bodies. */
  metadataTimeoutMs: number;
}

export function hubClient(env: Env = process.env, overrides: Partial<HubClient> = {}): HubClient {
  return {
    endpoint: hfEndpoint(env),
    cacheDir: hfHubCache(env),
    token: hfToken(env),
    retries: 5,
    retryDelayMs: 500,
    metadataTimeoutMs: 30_000,
    ...overrides,
  };
}

/** The hub could not be reached at all (DNS, refused connection, timeout): callers may fall back to the cache. */
export class HubUnreachableError extends UserError {
  override name = 'HubUnreachableError';
}

/** A failure worth retrying with a resumed request (dropped connection, 5xx, 429). */
class TransientError extends Error {}

const SHA256 = /^[0-9a-f]{64}$/;
const SAFE_ETAG = /^[A-Za-z0-9_-]{1,128}$/;

export function resolveUrl(
  endpoint: string,
  repoId: string,
  type: RepoType,
  revision: string,
  file: string,
): string {
  const prefix = type === 'dataset' ? 'datasets/' : '';
  const path = file.split('/').map(encodeURIComponent).join('/');
  return `${endpoint}/${prefix}${repoId}/resolve/${encodeURIComponent(revision)}/${path}`;
}

/**
 * Hosts that belong to the hub: the public ones and the configured endpoint's. Redirects among them are
 * followed for metadata, and only they receive the access token (never a CDN's signed URL).
 */
function isHubHost(client: HubClient, url: string): boolean {
  const host = new URL(url).hostname.toLowerCase();
  return (
    host === 'huggingface.co' || host === 'hf.co' || host === new URL(client.endpoint).hostname.toLowerCase()
  );
}

function baseHeaders(client: HubClient, url: string): Record<string, string> {
  const headers: Record<string, string> = { 'user-agent': 'saeflow', 'accept-encoding': 'identity' };
  if (client.token && isHubHost(client, url)) headers.authorization = `Bearer ${client.token}`;
  return headers;
}

function describeCause(e: unknown): string {
  const cause = (e as { cause?: { code?: string; message?: string } }).cause;
  if (cause?.code) return cause.code;
  if ((e as Error).name === 'TimeoutError') return 'timed out';
  return cause?.message ?? (e as Error).message;
}

/** fetch(), with network failures turned into HubUnreachableError naming the endpoint. */
export async function hubFetch(
  client: HubClient,
  url: string,
  init: RequestInit,
  what: string,
): Promise<Response> {
  try {
    return await fetch(url, {
      ...init,
      headers: { ...baseHeaders(client, url), ...(init.headers as object) },
    });
  } catch (e) {
    throw new HubUnreachableError(
      `cannot reach the Hugging Face hub at ${client.endpoint} (${describeCause(e)}) while fetching ${what}`,
      {
        cause: e,
      },
    );
  }
}

/** Turns a failed hub response into a UserError that says what was missing or why access failed. */
export async function hubHttpError(res: Response, what: string, url: string): Promise<UserError> {
  await res.body?.cancel().catch(() => undefined);
  const code = res.headers.get('x-error-code');
  if (res.status === 401 || res.status === 403) {
    return new UserError(
      `${what}: access denied (HTTP ${res.status}${code ? `, ${code}` : ''}); the repository may not exist, or be gated or private: set HF_TOKEN to a token that has access (${url})`,
    );
  }
  if (res.status === 404) {
    const reason =
      code === 'RepoNotFound'
        ? 'repository not found'
        : code === 'RevisionNotFound'
          ? 'revision not found'
          : code === 'EntryNotFound'
            ? 'file not found in the repository'
            : 'not found';
    return new UserError(`${what}: ${reason} (HTTP 404, ${url})`);
  }
  return new UserError(`${what}: the hub answered HTTP ${res.status} ${res.statusText} (${url})`);
}

export interface FileMetadata {
  commit: string;
  etag: string;
  size: number | undefined;
  /** Where to GET the bytes: the CDN for LFS files, the resolve URL otherwise. */
  location: string;
}

function parseSize(value: string | null): number | undefined {
  if (value === null || !/^\d+$/.test(value)) return undefined;
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : undefined;
}

/**
 * HEAD on the resolve URL. Redirects within the hub (a renamed repository) are followed; the redirect to
 * the CDN is not, because the hub's own headers (X-Linked-Etag, X-Linked-Size, X-Repo-Commit) are on it.
 */
export async function fetchFileMetadata(
  client: HubClient,
  repoId: string,
  type: RepoType,
  revision: string,
  file: string,
): Promise<FileMetadata> {
  const what = `${file} of ${type} ${repoId} at revision ${revision}`;
  let url = resolveUrl(client.endpoint, repoId, type, revision, file);
  for (let hops = 0; ; hops++) {
    const res = await hubFetch(
      client,
      url,
      { method: 'HEAD', redirect: 'manual', signal: AbortSignal.timeout(client.metadataTimeoutMs) },
      what,
    );
    const location = res.headers.get('location');
    const redirected = res.status >= 300 && res.status < 400;
    const target = redirected && location ? new URL(location, url).href : undefined;
    if (
      target &&
      hops < 10 &&
      (new URL(target).hostname === new URL(url).hostname || isHubHost(client, target))
    ) {
      url = target;
      continue;
    }
    if (!res.ok && !redirected) throw await hubHttpError(res, what, url);
    const commit = res.headers.get('x-repo-commit') ?? '';
    const rawEtag = res.headers.get('x-linked-etag') ?? res.headers.get('etag') ?? '';
    const etag = rawEtag.replace(/^W\//, '').replace(/^"|"$/g, '');
    if (!COMMIT_HASH.test(commit) || !SAFE_ETAG.test(etag)) {
      throw new UserError(
        `${what}: unexpected answer from ${url}: missing or malformed X-Repo-Commit (${JSON.stringify(commit)}) or ETag (${JSON.stringify(rawEtag)}); is HF_ENDPOINT a Hugging Face hub?`,
      );
    }
    return {
      commit,
      etag,
      size: parseSize(
        res.headers.get('x-linked-size') ?? (redirected ? null : res.headers.get('content-length')),
      ),
      location: target ?? url,
    };
  }
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

function isTransientStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/** One GET attempt, appending to `incomplete` from byte `have` (or restarting if the server ignores Range). */
async function fetchOnce(
  client: HubClient,
  url: string,
  incomplete: string,
  have: number,
  expectedSize: number | undefined,
  report: (downloaded: number) => void,
  what: string,
): Promise<void> {
  const headers: Record<string, string> = have > 0 ? { range: `bytes=${have}-` } : {};
  let res: Response;
  try {
    res = await hubFetch(client, url, { headers, redirect: 'follow' }, what);
  } catch (e) {
    throw new TransientError(describeCause((e as Error).cause ?? e), { cause: e });
  }
  if (res.status === 416 && have > 0) {
    // Our partial file does not fit the file on the server (changed upstream?): start again.
    await res.body?.cancel().catch(() => undefined);
    await truncate(incomplete, 0);
    throw new TransientError('range not satisfiable');
  }
  if (!res.ok) {
    if (isTransientStatus(res.status)) {
      await res.body?.cancel().catch(() => undefined);
      throw new TransientError(`HTTP ${res.status}`);
    }
    throw await hubHttpError(res, what, url);
  }
  let append = false;
  if (res.status === 206) {
    const start = /^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '')?.[1];
    if (Number(start) !== have) {
      await res.body?.cancel().catch(() => undefined);
      await truncate(incomplete, 0);
      throw new TransientError(`server resumed at byte ${start ?? '?'} instead of ${have}`);
    }
    append = true;
  }
  // A 200 to a Range request means the server sends the whole file: overwrite rather than append.
  let downloaded = append ? have : 0;
  const fh = await open(incomplete, append ? 'a' : 'w');
  try {
    if (!res.body) return;
    const reader = res.body.getReader();
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (e) {
        throw new TransientError(describeCause(e), { cause: e });
      }
      if (chunk.done) break;
      await fh.write(chunk.value);
      downloaded += chunk.value.length;
      report(downloaded);
    }
  } finally {
    await fh.close();
  }
  // A body that ends cleanly but short (no Content-Length to hold the server to) is resumed too.
  if (expectedSize !== undefined && downloaded < expectedSize) {
    throw new TransientError(`connection closed after ${downloaded} of ${expectedSize} bytes`);
  }
}

/** Fills `incomplete` with the whole file, resuming after dropped connections. */
async function fetchToIncomplete(
  client: HubClient,
  meta: FileMetadata,
  incomplete: string,
  report: (downloaded: number) => void,
  what: string,
): Promise<void> {
  let failures = 0;
  for (;;) {
    let have = await sizeOf(incomplete);
    if (meta.size !== undefined && have > meta.size) {
      await truncate(incomplete, 0);
      have = 0;
    }
    if (meta.size !== undefined && have === meta.size && have > 0) return;
    try {
      await fetchOnce(client, meta.location, incomplete, have, meta.size, report, what);
      return;
    } catch (e) {
      if (!(e instanceof TransientError)) throw e;
      failures = (await sizeOf(incomplete)) > have ? 0 : failures + 1;
      if (failures > client.retries) {
        throw new UserError(
          `${what}: download failed after ${failures} attempts without progress (${e.message}); the partial file is kept and the next run resumes it`,
        );
      }
      await sleep(client.retryDelayMs * 2 ** Math.min(failures, 6));
    }
  }
}

/** Size and, for LFS files (sha256 etag), content checks; a bad file is deleted so the next run starts clean. */
async function verifyBlob(incomplete: string, meta: FileMetadata, what: string): Promise<void> {
  const size = await sizeOf(incomplete);
  if (meta.size !== undefined && size !== meta.size) {
    await unlink(incomplete).catch(() => undefined);
    throw new UserError(
      `${what}: downloaded ${size} bytes but the hub announced ${meta.size}; deleted the partial file`,
    );
  }
  if (SHA256.test(meta.etag)) {
    const actual = await sha256File(incomplete);
    if (actual !== meta.etag) {
      await unlink(incomplete).catch(() => undefined);
      throw new UserError(
        `${what}: sha256 mismatch (expected ${meta.etag}, got ${actual}); deleted the corrupt download, run again to retry`,
      );
    }
  }
}

function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes over the partial download of a blob (`<etag>.incomplete`, or one left by a process that died) under a
 * name unique to this process, so two runs fetching the same blob never append to one file. Any partial file
 * is a prefix of the same content (the etag names it), so whichever is largest is worth resuming.
 */
async function claimPartial(blob: string): Promise<string> {
  const dir = dirname(blob);
  const base = `${blob.slice(dir.length + 1)}.`;
  const mine = `${blob}.${process.pid}-${randomBytes(4).toString('hex')}.incomplete`;
  const candidates: Array<{ path: string; size: number }> = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!name.startsWith(base) || !name.endsWith('.incomplete')) continue;
    const owner = /^(\d+)-[0-9a-f]+$/.exec(name.slice(base.length, -'.incomplete'.length));
    if (name !== `${base}incomplete` && (!owner || processIsAlive(Number(owner[1])))) continue;
    candidates.push({ path: join(dir, name), size: await sizeOf(join(dir, name)) });
  }
  candidates.sort((a, b) => b.size - a.size);
  for (const { path } of candidates) {
    try {
      await rename(path, mine);
      break;
    } catch {
      // another process claimed it first
    }
  }
  for (const { path } of candidates) await unlink(path).catch(() => undefined);
  return mine;
}

/** Hands an unfinished partial download back under the shared name, for the next run to resume. */
async function releasePartial(work: string, blob: string): Promise<void> {
  if ((await sizeOf(work)) > 0) await rename(work, `${blob}.incomplete`).catch(() => undefined);
  else await unlink(work).catch(() => undefined);
}

/** Makes `pointer` a relative symlink to `blob` (a copy where the filesystem refuses symlinks). */
async function linkPointer(blob: string, pointer: string): Promise<void> {
  await mkdir(dirname(pointer), { recursive: true });
  await rm(pointer, { force: true });
  try {
    await symlink(relative(dirname(pointer), blob), pointer);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' && (await isFile(pointer))) return; // another process linked it meanwhile
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EACCES') throw e;
    const tmp = tempPathFor(pointer);
    await copyFile(blob, tmp);
    await rename(tmp, pointer);
  }
}

/** Records that `revision` (a branch or tag) pointed at `commit`, as huggingface_hub's refs/ files do. */
export async function writeRef(repoDir: string, revision: string, commit: string): Promise<void> {
  if (revision === commit) return;
  const ref = repoPath(join(repoDir, 'refs'), revision);
  const current = await readFile(ref, 'utf8').catch(() => undefined);
  if (current?.trim() === commit) return;
  await mkdir(dirname(ref), { recursive: true });
  await writeFileAtomic(ref, commit);
}

export interface CachedDownload {
  /** The file inside the snapshot directory. */
  path: string;
  snapshotDir: string;
  commit: string;
  /** False when the blob was already in the cache. */
  downloaded: boolean;
}

/** Downloads one repository file into the cache (or finds it there) and returns its snapshot path. */
export async function downloadToCache(
  client: HubClient,
  target: { repoId: string; type: RepoType; revision: string; file: string },
): Promise<CachedDownload> {
  const { repoId, type, revision, file } = target;
  checkRevision(revision);
  checkRepoFilePath(file);
  const what = `${file} of ${type} ${repoId} at revision ${revision}`;
  const meta = await fetchFileMetadata(client, repoId, type, revision, file);
  const repoDir = repoCacheDir(client.cacheDir, repoId, type);
  const snapshotDir = join(repoDir, 'snapshots', meta.commit);
  const pointer = repoPath(snapshotDir, file);
  const blob = join(repoDir, 'blobs', meta.etag);
  let downloaded = false;
  if (!(await isFile(pointer))) {
    if (!(await isFile(blob))) {
      await mkdir(dirname(blob), { recursive: true });
      const report = (n: number) =>
        client.onProgress?.({ repoId, file, downloadedBytes: n, totalBytes: meta.size });
      const work = await claimPartial(blob);
      try {
        await fetchToIncomplete(client, meta, work, report, what);
        await verifyBlob(work, meta, what);
        await rename(work, blob);
      } catch (e) {
        await releasePartial(work, blob);
        throw e;
      }
      downloaded = true;
    }
    await linkPointer(blob, pointer);
  }
  await writeRef(repoDir, revision, meta.commit);
  return { path: pointer, snapshotDir, commit: meta.commit, downloaded };
}
