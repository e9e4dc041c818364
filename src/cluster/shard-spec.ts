import path from 'node:path';
import { UserError } from '../pipeline/errors.js';

/** Task `index` of `count` in a split run (a Slurm array, or tasks started by hand). */
export interface ShardSpec {
  readonly index: number;
  readonly count: number;
}

/** The largest task count accepted: part directory names are padded to five digits. */
export const MAX_SHARDS = 99_999;

/** Parses `i/n` (0 <= i < n); anything else is a one-line UserError naming the option. */
export function parseShard(text: string, option = '--shard'): ShardSpec {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  if (!m) throw new UserError(`${option} ${text}: expected i/n, e.g. 0/4 for the first of four tasks`);
  const index = Number(m[1]);
  const count = Number(m[2]);
  if (count < 1 || count > MAX_SHARDS)
    throw new UserError(`${option} ${text}: the task count must be 1 to ${MAX_SHARDS}`);
  if (index >= count) {
    throw new UserError(
      `${option} ${text}: the task index must be below the task count (0 to ${count - 1} for ${count} tasks)`,
    );
  }
  return { index, count };
}

/** `parts/00003-of-00004`: where task 3 of 4 writes, inside the array's directory; names cannot collide. */
export function partDirName(spec: ShardSpec): string {
  const pad = (n: number) => String(n).padStart(5, '0');
  return path.join('parts', `${pad(spec.index)}-of-${pad(spec.count)}`);
}

export const PART_DIR_PATTERN = /^(\d{5})-of-(\d{5})$/;

/** part.json: what a finished task of a split run says about its share, read by the finishing step. */
export const PART_FILE = 'part.json';
