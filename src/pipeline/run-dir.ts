import { existsSync, mkdirSync, readdirSync, rmdirSync, statSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { UserError } from './errors.js';

/** Files the runner itself writes into a run directory; anything else there is a pipeline's output. */
export const BOOKKEEPING_FILES = [
  'config.json',
  'run.json',
  'run.log',
  'metrics.jsonl',
  'state.json',
  'result.json',
] as const;

/** What `createRunDir` made, so that a run that failed on bad input can take it back. */
export interface CreatedRunDir {
  readonly dir: string;
  /** Directories this call created, deepest last (the run directory itself when it was new). */
  readonly createdDirs: readonly string[];
}

function reason(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  switch (e.code) {
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EROFS':
      return 'read-only file system';
    case 'ENOSPC':
      return 'no space left on the device';
    case 'EDQUOT':
      return 'disk quota exceeded';
    case 'ENAMETOOLONG':
      return 'the name is too long';
    case 'ENOENT':
      // What /proc answers: the parent exists but takes no new entries.
      return 'this file system does not allow creating it';
    default:
      return e.code ? `${e.code}: ${e.message}` : String(err);
  }
}

/** A UserError for a run directory that cannot be created or written, naming the option and the path. */
export function runDirError(spec: string, dir: string, err: unknown): UserError {
  const shown = spec === dir ? dir : `${spec} (${dir})`;
  return new UserError(`--out ${shown}: cannot write the run directory (${reason(err)})`, { cause: err });
}

/**
 * Creates the run directory one level at a time. Node's `mkdirSync(dir, { recursive: true })` is not
 * used: under /proc it loops forever (mkdir answers ENOENT there, which it takes as a missing parent),
 * and on a path through a file it throws errors whose codes depend on the platform.
 */
export function createRunDir(dir: string, spec: string): CreatedRunDir {
  const missing: string[] = [];
  let existing = dir;
  for (;;) {
    let isDir: boolean | null = null;
    try {
      isDir = statSync(existing).isDirectory();
    } catch (err) {
      // ENOTDIR: an ancestor is a file; walking up finds and names it.
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw runDirError(spec, dir, err);
    }
    if (isDir === false) {
      throw new UserError(
        `--out ${spec}: ${existing === dir ? 'is' : `${existing} is`} a file, not a directory`,
      );
    }
    if (isDir) break;
    missing.unshift(existing);
    const parent = path.dirname(existing);
    if (parent === existing) break;
    existing = parent;
  }
  const createdDirs: string[] = [];
  try {
    for (const d of missing) {
      mkdirSync(d);
      createdDirs.push(d);
    }
  } catch (err) {
    removeCreated({ dir, createdDirs });
    throw runDirError(spec, dir, err);
  }
  return { dir, createdDirs };
}

function removeCreated(created: CreatedRunDir): void {
  for (const d of [...created.createdDirs].reverse()) {
    try {
      rmdirSync(d);
    } catch {
      return; // not empty (something else wrote there) or gone: leave the rest as it is
    }
  }
}

/**
 * Takes back a run that failed on bad input: when the directory holds nothing but the runner's own
 * files, those files go, and so do the directories this run created, so the same `--out` works on
 * a retry. A directory with any output in it is left alone. Returns whether it cleaned up.
 */
export function removeFailedRun(created: CreatedRunDir): boolean {
  const { dir } = created;
  if (!existsSync(dir)) return false;
  const entries = readdirSync(dir);
  const bookkeeping = new Set<string>(BOOKKEEPING_FILES);
  if (entries.some((name) => !bookkeeping.has(name))) return false;
  for (const name of entries) unlinkSync(path.join(dir, name));
  removeCreated(created);
  return true;
}
