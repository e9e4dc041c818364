/**
 * A model's Hugging Face folder, whichever family: config.json, the weights (one `model.safetensors`, or
 * `model.safetensors.index.json` and every shard it lists) and the tokenizer files the repository has.
 * Found as a local directory, in the Hugging Face cache, or downloaded into it (listing the repository
 * first, so that only what exists is fetched and sharded checkpoints need no guessing).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../pipeline/errors.js';
import { cachedSnapshot, checkRevision, isFile, repoCacheDir } from './cache.js';
import { listRepoTree } from './datasets.js';
import { downloadToCache, hubClient, HubUnreachableError } from './download.js';
import type { HubAccessOptions } from './download.js';
import { isHubOffline } from './env.js';
import { modelRepoCandidates, resolveModel } from './models.js';
import type { ResolvedModel } from './models.js';

export const SINGLE_WEIGHTS = 'model.safetensors';
export const WEIGHTS_INDEX = 'model.safetensors.index.json';
/** Fetched when the repository has them: the tokenizer and what says which ids are special. */
export const TOKENIZER_FILES = [
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'generation_config.json',
] as const;

/** The shard file names of an index, checked to be plain names in the same folder. */
export function shardsOfIndex(text: string, file: string): string[] {
  let weightMap: unknown;
  try {
    weightMap = (JSON.parse(text) as { weight_map?: unknown }).weight_map;
  } catch (e) {
    throw new UserError(`${file}: invalid JSON: ${(e as Error).message}`, { cause: e });
  }
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
    throw new UserError(`${file}: missing the "weight_map" object`);
  }
  const shards = new Set<string>();
  for (const [key, shard] of Object.entries(weightMap)) {
    if (typeof shard !== 'string' || shard.includes('/') || shard.includes('\\') || shard.startsWith('.')) {
      throw new UserError(`${file}: weight_map["${key}"] must be a file name in the same directory`);
    }
    shards.add(shard);
  }
  return [...shards].sort();
}

/** The weight files a folder needs, or undefined when it has neither a single file nor an index. */
async function weightFilesIn(dir: string): Promise<string[] | undefined> {
  if (await isFile(path.join(dir, SINGLE_WEIGHTS))) return [SINGLE_WEIGHTS];
  const index = path.join(dir, WEIGHTS_INDEX);
  if (!(await isFile(index))) return undefined;
  return [WEIGHTS_INDEX, ...shardsOfIndex(await readFile(index, 'utf8'), index)];
}

/** Whether `dir` holds config.json and complete weights. */
async function isComplete(dir: string): Promise<boolean> {
  if (!(await isFile(path.join(dir, 'config.json')))) return false;
  const weights = await weightFilesIn(dir);
  if (weights === undefined) return false;
  for (const f of weights) if (!(await isFile(path.join(dir, f)))) return false;
  return true;
}

/**
 * Resolves a model folder: a local directory (as is; loading checks its files), a cached snapshot holding
 * config.json and complete weights, or a download of config.json, the weights and the tokenizer files.
 */
export async function resolveModelFolder(
  nameOrPath: string,
  options: HubAccessOptions = {},
): Promise<ResolvedModel> {
  const { revision = 'main', allowDownload = true, env = process.env } = options;
  // A local directory, a bad name and the error messages: resolveModel's rules, for config.json.
  try {
    const found = await resolveModel(nameOrPath, {
      ...options,
      files: ['config.json'],
      allowDownload: false,
    });
    if (found.source === 'local' || (await isComplete(found.dir))) return found;
  } catch (e) {
    if (!(e instanceof UserError) || !/not in the Hugging Face cache/.test(e.message)) throw e;
  }
  checkRevision(revision);
  const client = hubClient(env, { onProgress: options.onProgress, ...options.client });
  const { repoId, cacheIds } = modelRepoCandidates(nameOrPath);
  for (const id of cacheIds) {
    const snapshot = await cachedSnapshot(repoCacheDir(client.cacheDir, id, 'model'), revision);
    if (snapshot && (await isComplete(snapshot.dir))) {
      return { dir: snapshot.dir, source: 'cache', repoId: id, commit: snapshot.commit };
    }
  }
  const notCached = `model '${nameOrPath}' (config.json and its safetensors weights at revision ${revision}) is not in the Hugging Face cache`;
  const howTo = `pass --model /path/to/dir with config.json and model.safetensors (or ${WEIGHTS_INDEX} and its shards), or allow network access so it can be downloaded from ${client.endpoint}/${repoId}`;
  if (isHubOffline(env))
    throw new UserError(`${notCached}, and HF_HUB_OFFLINE is set. To fix: ${howTo} (unset HF_HUB_OFFLINE).`);
  if (!allowDownload) throw new UserError(`${notCached}, and downloads are disabled. To fix: ${howTo}.`);

  try {
    const tree = await listRepoTree(client, repoId, 'model', revision);
    if (tree === undefined) throw new UserError(`model ${repoId}: revision ${revision} not found`);
    const present = new Set(tree.filter((e) => e.type === 'file').map((e) => e.path));
    if (!present.has('config.json'))
      throw new UserError(`model ${repoId} at revision ${revision} has no config.json`);
    const get = async (file: string, rev: string) =>
      downloadToCache(client, { repoId, type: 'model', revision: rev, file });
    const config = await get('config.json', revision);
    // Everything else from the commit config.json came from, even if the branch moves meanwhile.
    const rev = config.commit;
    let weights: string[];
    if (present.has(SINGLE_WEIGHTS)) weights = [SINGLE_WEIGHTS];
    else if (present.has(WEIGHTS_INDEX)) {
      const index = await get(WEIGHTS_INDEX, rev);
      weights = shardsOfIndex(await readFile(index.path, 'utf8'), `${repoId}/${WEIGHTS_INDEX}`);
      const missing = weights.filter((f) => !present.has(f));
      if (missing.length > 0) {
        throw new UserError(
          `model ${repoId}: ${WEIGHTS_INDEX} lists shards the repository lacks: ${missing.join(', ')}`,
        );
      }
    } else {
      throw new UserError(
        `model ${repoId} at revision ${revision} has no ${SINGLE_WEIGHTS} or ${WEIGHTS_INDEX}; PyTorch pickles are never loaded`,
      );
    }
    for (const f of [...weights, ...TOKENIZER_FILES.filter((f) => present.has(f))]) await get(f, rev);
    return { dir: config.snapshotDir, source: 'download', repoId, commit: rev };
  } catch (e) {
    if (e instanceof HubUnreachableError)
      throw new UserError(`${notCached}. ${e.message}. To fix: ${howTo}.`, { cause: e });
    throw e;
  }
}
