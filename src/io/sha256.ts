import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { UserError } from '../pipeline/errors.js';

/** Hex sha256 of a file, streamed so files larger than memory can be hashed. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  try {
    for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 }))
      hash.update(chunk as Buffer);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT')
      throw new UserError(`cannot hash ${path}: file not found`);
    throw e;
  }
  return hash.digest('hex');
}
