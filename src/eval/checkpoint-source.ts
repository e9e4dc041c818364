/**
 * Finding a model whose weights may be sharded (`model.safetensors.index.json` + `model-0000N-of-0000M`
 * files, as google/gemma-2-2b is): a local directory, the Hugging Face cache, or a download into it when
 * allowed. (`resolveModelSource` in src/stages/model asks for a single `model.safetensors`.)
 */
import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { missingFiles } from '../hub/cache.js';
import type { ProgressCallback } from '../hub/download.js';
import { resolveModel } from '../hub/models.js';
import type { ResolveModelOptions } from '../hub/models.js';
import { UserError } from '../pipeline/errors.js';
import type { ResolvedModelSource } from '../stages/model/index.js';

export const SINGLE_FILE = 'model.safetensors';
export const SHARD_INDEX = 'model.safetensors.index.json';

/** The shard files an index names (its `weight_map` values), sorted and unique. */
export async function shardFiles(indexFile: string): Promise<string[]> {
  let index: unknown;
  try {
    index = JSON.parse(await readFile(indexFile, 'utf8'));
  } catch (e) {
    throw new UserError(`${indexFile}: not a readable JSON shard index (${(e as Error).message})`);
  }
  const map = (index as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null) {
    throw new UserError(`${indexFile}: no weight_map object`);
  }
  const files = [...new Set(Object.values(map as Record<string, unknown>))];
  if (
    files.length === 0 ||
    files.some((f) => typeof f !== 'string' || f.includes('/') || !f.endsWith('.safetensors'))
  ) {
    throw new UserError(`${indexFile}: weight_map must name .safetensors files beside the index`);
  }
  return (files as string[]).sort();
}

export interface CheckpointSourceOptions {
  env?: NodeJS.ProcessEnv;
  onProgress?: ProgressCallback;
  /** Allow a download when the cache lacks the model (default true; HF_HUB_OFFLINE forbids it anyway). */
  allowDownload?: boolean;
}

/** A local directory, or a hub name found in the cache (one file or every shard) or downloaded. */
export async function resolveCheckpointSource(
  spec: string,
  options: CheckpointSourceOptions = {},
): Promise<ResolvedModelSource> {
  const local = path.resolve(spec);
  if (existsSync(local)) {
    if (!statSync(local).isDirectory()) {
      throw new UserError(`--model ${spec}: ${local} is a file; pass the model's directory`);
    }
    return { dir: local, description: `local directory ${local}`, name: path.basename(local) };
  }
  const base: Omit<ResolveModelOptions, 'files'> = { env: options.env, onProgress: options.onProgress };
  const found = (dir: string, how: string) => ({
    dir,
    description: `${spec} from the Hugging Face ${how} (${dir})`,
    name: spec,
  });
  // The cache first, in either layout, without touching the network.
  for (const files of [
    ['config.json', SINGLE_FILE],
    ['config.json', SHARD_INDEX],
  ]) {
    let dir: string;
    try {
      dir = (await resolveModel(spec, { ...base, files, allowDownload: false })).dir;
    } catch (e) {
      if (e instanceof UserError) continue;
      throw e;
    }
    if (files[1] === SINGLE_FILE) return found(dir, 'cache');
    if ((await missingFiles(dir, await shardFiles(path.join(dir, SHARD_INDEX)))).length === 0)
      return found(dir, 'cache');
  }
  if (options.allowDownload === false) {
    throw new UserError(
      `model '${spec}' is not in the Hugging Face cache (config.json with ${SINGLE_FILE}, or ${SHARD_INDEX} and its shards), and downloads are disabled`,
    );
  }
  try {
    return found((await resolveModel(spec, { ...base, files: ['config.json', SINGLE_FILE] })).dir, 'hub');
  } catch (e) {
    // A sharded model has no model.safetensors (HTTP 404); anything else (offline, unreachable) is final.
    if (!(e instanceof UserError) || !/HTTP 404/.test(e.message)) {
      if (e instanceof UserError) {
        throw new UserError(
          `${e.message} (a sharded checkpoint, ${SHARD_INDEX} and its shards, would do too)`,
          {
            cause: e,
          },
        );
      }
      throw e;
    }
  }
  const withIndex = await resolveModel(spec, { ...base, files: ['config.json', SHARD_INDEX] });
  const shards = await shardFiles(path.join(withIndex.dir, SHARD_INDEX));
  const all = await resolveModel(spec, { ...base, files: ['config.json', SHARD_INDEX, ...shards] });
  return found(all.dir, 'hub');
}
