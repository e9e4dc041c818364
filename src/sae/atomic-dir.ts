/**
 * Writes a whole directory under a temporary sibling name and renames it into place, so that a reader
 * (or a resumed run) sees either the previous complete directory or the new complete one. When the target
 * exists it is first renamed aside and removed only after the new one is in place.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

export async function writeDirAtomic(dir: string, fill: (tmpDir: string) => Promise<void>): Promise<void> {
  const target = path.resolve(dir);
  await mkdir(path.dirname(target), { recursive: true });
  const tag = `${process.pid}.${randomBytes(4).toString('hex')}`;
  const tmp = `${target}.tmp-${tag}`;
  await mkdir(tmp);
  try {
    await fill(tmp);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
  const old = `${target}.old-${tag}`;
  const replacing = await exists(target);
  if (replacing) await rename(target, old);
  try {
    await rename(tmp, target);
  } catch (e) {
    if (replacing) await rename(old, target).catch(() => undefined);
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
  if (replacing) await rm(old, { recursive: true, force: true });
}
