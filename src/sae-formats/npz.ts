/**
 * numpy `.npz` archives (`np.savez`, `np.savez_compressed`): a zip of `.npy` members, one per array, named
 * `<array>.npy`. Only float arrays are read; nothing is ever unpickled.
 */
import type { Tensor } from '../io/safetensors.js';
import { UserError } from '../pipeline/errors.js';
import { parseNpy } from './npy.js';
import { openZip } from './zip.js';

/** Array names in the archive (member names without `.npy`), without reading any data. */
export async function listNpz(path: string): Promise<string[]> {
  const zip = await openZip(path);
  try {
    return zip.entries.filter((e) => e.name.endsWith('.npy')).map((e) => e.name.slice(0, -4));
  } finally {
    await zip.close();
  }
}

/**
 * Reads the arrays of an `.npz` (all, or those in `names`); a missing name is a UserError listing what the
 * archive has. F16 arrays come back as raw bits in a Uint16Array (widen with `tensorToFloat32`).
 */
export async function readNpz(
  path: string,
  options: { names?: string[] } = {},
): Promise<Map<string, Tensor>> {
  const zip = await openZip(path);
  try {
    const byName = new Map<string, (typeof zip.entries)[number]>();
    for (const entry of zip.entries) {
      if (!entry.name.endsWith('.npy')) continue;
      const name = entry.name.slice(0, -4);
      if (byName.has(name)) throw new UserError(`${path}: array '${name}' appears twice in the archive`);
      byName.set(name, entry);
    }
    const wanted = options.names ?? [...byName.keys()];
    const missing = wanted.filter((n) => !byName.has(n));
    if (missing.length > 0) {
      throw new UserError(
        `${path}: array${missing.length > 1 ? 's' : ''} ${missing.map((n) => `'${n}'`).join(', ')} not found (archive has: ${[...byName.keys()].join(', ') || 'no arrays'})`,
      );
    }
    const out = new Map<string, Tensor>();
    for (const name of wanted) {
      const entry = byName.get(name)!;
      out.set(name, parseNpy(await zip.read(entry), `${path}: array '${name}'`));
    }
    return out;
  } finally {
    await zip.close();
  }
}
