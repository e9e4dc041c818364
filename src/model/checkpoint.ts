/**
 * Reads a model's weights from a Hugging Face folder for any family: `model.safetensors`, or the shards
 * listed in `model.safetensors.index.json`. The family says which tensors it needs and their shapes; every
 * name, shape and dtype is checked from the headers before any tensor data is read, and the tensors come
 * back as float32 (F16/BF16/F64 widened).
 */
import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import { readSafetensors, readSafetensorsHeader, tensorToFloat32 } from '../io/safetensors.js';
import type { SafetensorsHeader } from '../io/safetensors.js';
import { UserError } from '../pipeline/errors.js';

async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}

/** Which file holds each tensor key: one `model.safetensors`, or the shards of an index. */
async function locateTensorFiles(dir: string): Promise<{ files: Set<string>; source: string }> {
  const single = path.join(dir, 'model.safetensors');
  if (await exists(single)) return { files: new Set([single]), source: single };
  const indexFile = path.join(dir, 'model.safetensors.index.json');
  if (!(await exists(indexFile))) {
    throw new UserError(
      `no model.safetensors (or model.safetensors.index.json) in ${dir}; ` +
        'PyTorch pickles (pytorch_model.bin) are never loaded',
    );
  }
  let weightMap: unknown;
  try {
    weightMap = (JSON.parse(await readFile(indexFile, 'utf8')) as { weight_map?: unknown }).weight_map;
  } catch (e) {
    throw new UserError(`${indexFile}: invalid JSON: ${(e as Error).message}`, { cause: e });
  }
  if (typeof weightMap !== 'object' || weightMap === null) {
    throw new UserError(`${indexFile}: missing the "weight_map" object`);
  }
  const files = new Set<string>();
  for (const [key, file] of Object.entries(weightMap)) {
    if (typeof file !== 'string' || file.includes('/') || file.includes('\\') || file.startsWith('.')) {
      throw new UserError(`${indexFile}: weight_map["${key}"] must be a file name in the same directory`);
    }
    files.add(path.join(dir, file));
  }
  return { files, source: indexFile };
}

const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16', 'F64']);

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** The tensors of a checkpoint by key, read on demand after their headers were checked. */
export class Checkpoint {
  private constructor(
    readonly source: string,
    private readonly headers: Map<string, SafetensorsHeader>,
    private readonly where: Map<string, string>,
  ) {}

  static async open(dir: string): Promise<Checkpoint> {
    const { files, source } = await locateTensorFiles(dir);
    const headers = new Map<string, SafetensorsHeader>();
    for (const file of files) headers.set(file, await readSafetensorsHeader(file));
    const where = new Map<string, string>();
    for (const [file, header] of headers) for (const key of Object.keys(header.tensors)) where.set(key, file);
    return new Checkpoint(source, headers, where);
  }

  /** Bytes every tensor of the checkpoint takes as float32 (what loading it in memory costs). */
  get float32Bytes(): number {
    let elements = 0;
    for (const header of this.headers.values()) {
      for (const info of Object.values(header.tensors)) elements += info.shape.reduce((a, b) => a * b, 1);
    }
    return elements * 4;
  }

  has(key: string): boolean {
    return this.where.has(key);
  }

  /** The file holding `key` (for messages). */
  fileOf(key: string): string | undefined {
    return this.where.get(key);
  }

  /**
   * Reads the tensors of `expected` (key -> shape) as float32, after checking that each exists with that
   * shape and a float dtype. `why` names where the shapes come from, for messages.
   */
  async read(
    expected: ReadonlyMap<string, readonly number[]>,
    why = 'config.json',
  ): Promise<Map<string, Float32Array>> {
    const toRead = new Map<string, string[]>();
    for (const [key, shape] of expected) {
      const file = this.where.get(key);
      if (file === undefined) {
        throw new UserError(`${this.source}: missing tensor '${key}' (expected shape [${shape.join(', ')}])`);
      }
      const info = this.headers.get(file)!.tensors[key]!;
      if (!sameShape(info.shape, shape)) {
        throw new UserError(
          `${file}: tensor '${key}' has shape [${info.shape.join(', ')}], expected [${shape.join(', ')}] from ${why}`,
        );
      }
      if (!FLOAT_DTYPES.has(info.dtype)) {
        throw new UserError(
          `${file}: tensor '${key}' has dtype ${info.dtype}; weights must be F32, F16, BF16 or F64`,
        );
      }
      if (!toRead.has(file)) toRead.set(file, []);
      toRead.get(file)!.push(key);
    }
    const values = new Map<string, Float32Array>();
    for (const [file, keys] of toRead) {
      const { tensors } = await readSafetensors(file, { names: keys });
      for (const [key, t] of tensors) {
        try {
          values.set(key, tensorToFloat32(t, key));
        } catch (e) {
          throw new UserError(`${file}: tensor '${key}': ${(e as Error).message}`, { cause: e });
        }
      }
    }
    return values;
  }
}
