/**
 * The Hugging Face hub cache layout, shared with Python's `huggingface_hub`:
 *
 *   <cache>/models--ORG--NAME/            (datasets--ORG--NAME for datasets)
 *     blobs/<etag>                         file contents, named by git sha1 or (LFS) sha256
 *     refs/<revision>                      text file holding the commit hash a branch or tag pointed to
 *     snapshots/<commit>/<path>            relative symlinks into blobs/
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { UserError } from '../pipeline/errors.js';

export type RepoType = 'model' | 'dataset';

/** A full commit id; any other revision is a branch or tag that `refs/` maps to one. */
export const COMMIT_HASH = /^[0-9a-f]{40}$/;

const REPO_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*(\/[A-Za-z0-9][A-Za-z0-9_.-]*)?$/;

/** Whether `id` is a valid hub repository id (`name` or `org/name`), the rules huggingface_hub enforces. */
export function isRepoId(id: string): boolean {
  return id.length <= 96 && REPO_ID.test(id) && !id.includes('--') && !id.includes('..') && !id.endsWith('.');
}

export function checkRepoId(id: string, type: RepoType): void {
  if (!isRepoId(id)) {
    throw new UserError(`'${id}' is not a valid Hugging Face ${type} id (expected 'name' or 'org/name')`);
  }
}

/** Branches, tags and commits; refs/convert/parquet is a valid revision, '../x' is not. */
export function checkRevision(revision: string): void {
  const parts = revision.split('/');
  if (!/^[A-Za-z0-9_.\-/]+$/.test(revision) || parts.some((p) => p === '' || p === '.' || p === '..')) {
    throw new UserError(`'${revision}' is not a valid revision (a branch, tag or commit hash)`);
  }
}

/**
 * Checks a repository-relative file path before it becomes a path on disk: a hostile listing must not be
 * able to write outside the snapshot directory.
 */
export function checkRepoFilePath(file: string): void {
  const parts = file.split('/');
  if (
    file === '' ||
    file.includes('\\') ||
    file.includes('\0') ||
    parts.some((p) => p === '' || p === '.' || p === '..')
  ) {
    throw new UserError(`'${file}' is not a valid file path inside a hub repository`);
  }
}

export function repoFolderName(repoId: string, type: RepoType): string {
  return [`${type}s`, ...repoId.split('/')].join('--');
}

export function repoCacheDir(cacheDir: string, repoId: string, type: RepoType): string {
  return join(cacheDir, repoFolderName(repoId, type));
}

/** Joins a repository path (always '/'-separated) onto a directory. */
export function repoPath(dir: string, file: string): string {
  return join(dir, ...file.split(posix.sep));
}

/** The commit a revision points to in this cache, or undefined if the cache has no record of it. */
export async function cachedCommit(repoDir: string, revision: string): Promise<string | undefined> {
  if (COMMIT_HASH.test(revision)) return revision;
  try {
    const commit = (await readFile(repoPath(join(repoDir, 'refs'), revision), 'utf8')).trim();
    return COMMIT_HASH.test(commit) ? commit : undefined;
  } catch {
    return undefined;
  }
}

/** True when `path` exists and resolves (through symlinks) to a regular file; dangling links are missing. */
export async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

export interface CachedSnapshot {
  commit: string;
  dir: string;
}

/** The snapshot directory a revision points to, if the cache has it. */
export async function cachedSnapshot(repoDir: string, revision: string): Promise<CachedSnapshot | undefined> {
  const commit = await cachedCommit(repoDir, revision);
  if (!commit) return undefined;
  const dir = join(repoDir, 'snapshots', commit);
  try {
    if (!(await stat(dir)).isDirectory()) return undefined;
  } catch {
    return undefined;
  }
  return { commit, dir };
}

/** Which of `files` the snapshot lacks (missing or dangling). */
export async function missingFiles(snapshotDir: string, files: readonly string[]): Promise<string[]> {
  const missing: string[] = [];
  for (const file of files) if (!(await isFile(repoPath(snapshotDir, file)))) missing.push(file);
  return missing;
}

/** Repository-relative paths ('/'-separated, sorted) of the files under `dir` that satisfy `keep`. */
export async function listSnapshotFiles(dir: string, keep: (file: string) => boolean): Promise<string[]> {
  const found: string[] = [];
  const walk = async (sub: string): Promise<void> => {
    const entries = await readdir(join(dir, sub), { withFileTypes: true });
    for (const entry of entries) {
      const rel = sub === '' ? entry.name : `${sub}/${entry.name}`;
      if (entry.isDirectory()) await walk(rel);
      else if (keep(rel) && (await isFile(join(dir, ...rel.split('/'))))) found.push(rel);
    }
  };
  try {
    await walk('');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  return found.sort();
}
