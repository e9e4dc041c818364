/**
 * Which file under a served folder a URL path names, if any. A run folder holds more than its pages (SAE
 * weights, caches, logs), so the server gives out only plain files reached through visible names inside
 * the folder: no `..` or `.` segment, no hidden name (`.git`, `.env`), and no symlink that leads outside.
 */
import { realpath, stat } from 'node:fs/promises';
import path from 'node:path';

/** What a folder URL (`/`, `/explorer/topk-k8/`) opens, the first of these that the folder holds. */
export const INDEX_FILES = ['index.html', 'report.html', 'explorer.html'] as const;

/**
 * The URL path's segments when every one is a visible name, else null. `decoded` is the path after
 * percent-decoding, so an encoded `%2e%2e` or `%2f..` is judged as what it spells.
 */
export function pathSegments(decoded: string): string[] | null {
  if (!decoded.startsWith('/') || decoded.includes('\\') || decoded.includes('\0')) return null;
  const segments = decoded.slice(1).split('/');
  // A trailing slash leaves one empty segment: the folder itself.
  const names = segments.at(-1) === '' ? segments.slice(0, -1) : segments;
  if (names.some((s) => s === '' || s.startsWith('.'))) return null;
  return segments;
}

async function within(rootReal: string, candidate: string): Promise<string | null> {
  let real: string;
  try {
    real = await realpath(candidate);
  } catch {
    return null;
  }
  return real === rootReal || real.startsWith(rootReal + path.sep) ? real : null;
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}

/** The real path of the file to send for `decoded` under `root`, or null (answer 404). */
export async function servedFile(root: string, decoded: string): Promise<string | null> {
  const segments = pathSegments(decoded);
  if (segments === null) return null;
  const rootReal = await realpath(root);
  const folderUrl = segments.at(-1) === '';
  const target = await within(rootReal, path.join(rootReal, ...segments.filter((s) => s !== '')));
  if (target === null) return null;
  if (!folderUrl) return (await isFile(target)) ? target : null;
  for (const name of INDEX_FILES) {
    const index = await within(rootReal, path.join(target, name));
    if (index !== null && (await isFile(index))) return index;
  }
  return null;
}
