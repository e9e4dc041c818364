/**
 * Finding a model's files: a local directory as is, else the Hugging Face cache, else a download into it.
 */
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { UserError } from '../pipeline/errors.js';
import {
  cachedSnapshot,
  checkRepoFilePath,
  checkRevision,
  isRepoId,
  missingFiles,
  repoCacheDir,
} from './cache.js';
import { downloadToCache, hubClient, HubUnreachableError, type HubAccessOptions } from './download.js';
import { isHubOffline } from './env.js';

/**
 * Short names of the GPT-2 family and the repositories that hold them now. The hub moved the un-namespaced
 * originals under organisations (and redirects the old names), but caches filled before the move hold them
 * as `models--gpt2` etc., so the old names stay valid cache locations.
 */
export const MODEL_ALIASES: Readonly<Record<string, string>> = {
  gpt2: 'openai-community/gpt2',
  'gpt2-medium': 'openai-community/gpt2-medium',
  'gpt2-large': 'openai-community/gpt2-large',
  'gpt2-xl': 'openai-community/gpt2-xl',
  distilgpt2: 'distilbert/distilgpt2',
};

/** The repository to download from, then every name the cache may know it by (canonical first). */
export function modelRepoCandidates(name: string): { repoId: string; cacheIds: string[] } {
  const repoId = MODEL_ALIASES[name] ?? name;
  const legacy = Object.entries(MODEL_ALIASES)
    .filter(([, canonical]) => canonical === repoId)
    .map(([alias]) => alias);
  return { repoId, cacheIds: [repoId, ...legacy.filter((a) => a !== repoId)] };
}

export interface ResolveModelOptions extends HubAccessOptions {
  /** Files the caller needs, relative to the repository root ('config.json', 'model.safetensors'). */
  files: string[];
}

export interface ResolvedModel {
  dir: string;
  source: 'local' | 'cache' | 'download';
  /** Repository id and commit, for the cache and download cases. */
  repoId?: string;
  commit?: string;
}

function looksLikePath(name: string): boolean {
  return /^[.~/]/.test(name) || name.includes('\\') || name.split('/').length > 2 || /^[A-Za-z]:/.test(name);
}

async function localDirectory(path: string, files: readonly string[]): Promise<ResolvedModel | undefined> {
  let isDir: boolean;
  try {
    isDir = (await stat(path)).isDirectory();
  } catch {
    return undefined;
  }
  const dir = resolve(path);
  if (!isDir)
    throw new UserError(`model path ${dir} is a file; pass the directory that holds ${files.join(', ')}`);
  const missing = await missingFiles(dir, files);
  if (missing.length > 0) {
    throw new UserError(`model directory ${dir} lacks ${missing.join(', ')} (needs ${files.join(', ')})`);
  }
  return { dir, source: 'local' };
}

/** Resolves a model directory holding `options.files`: local path, cached snapshot, or fresh download. */
export async function resolveModel(nameOrPath: string, options: ResolveModelOptions): Promise<ResolvedModel> {
  const { files, revision = 'main', allowDownload = true, env = process.env } = options;
  if (files.length === 0) throw new UserError('resolveModel: no files requested');
  files.forEach(checkRepoFilePath);

  const local = await localDirectory(nameOrPath, files);
  if (local) return local;
  if (looksLikePath(nameOrPath) || !isRepoId(nameOrPath)) {
    throw new UserError(
      `model directory not found: ${resolve(nameOrPath)} (and '${nameOrPath}' is not a Hugging Face model id such as gpt2 or openai-community/gpt2)`,
    );
  }
  checkRevision(revision);

  const client = hubClient(env, { onProgress: options.onProgress, ...options.client });
  const { repoId, cacheIds } = modelRepoCandidates(nameOrPath);
  const looked: string[] = [];
  for (const id of cacheIds) {
    const repoDir = repoCacheDir(client.cacheDir, id, 'model');
    looked.push(repoDir);
    const snapshot = await cachedSnapshot(repoDir, revision);
    if (snapshot && (await missingFiles(snapshot.dir, files)).length === 0) {
      return { dir: snapshot.dir, source: 'cache', repoId: id, commit: snapshot.commit };
    }
  }

  const notCached = `model '${nameOrPath}' (${files.join(', ')} at revision ${revision}) is not in the Hugging Face cache (looked in ${looked.join(' and ')})`;
  const howTo = `pass --model /path/to/dir with ${files.join(', ')}, or allow network access so it can be downloaded from ${client.endpoint}/${repoId}`;
  if (isHubOffline(env))
    throw new UserError(`${notCached}, and HF_HUB_OFFLINE is set. To fix: ${howTo} (unset HF_HUB_OFFLINE).`);
  if (!allowDownload) throw new UserError(`${notCached}, and downloads are disabled. To fix: ${howTo}.`);

  let rev = revision;
  let result: ResolvedModel | undefined;
  try {
    for (const file of files) {
      const got = await downloadToCache(client, { repoId, type: 'model', revision: rev, file });
      // Pin the remaining files to the commit the first one came from, even if the branch moves meanwhile
      // (the first download recorded refs/<revision>).
      rev = got.commit;
      result = { dir: got.snapshotDir, source: 'download', repoId, commit: got.commit };
    }
  } catch (e) {
    if (e instanceof HubUnreachableError)
      throw new UserError(`${notCached}. ${e.message}. To fix: ${howTo}.`, { cause: e });
    throw e;
  }
  return result!;
}

/** The directory holding the model's files (see `resolveModel`). */
export async function resolveModelDir(nameOrPath: string, options: ResolveModelOptions): Promise<string> {
  return (await resolveModel(nameOrPath, options)).dir;
}
