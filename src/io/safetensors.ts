/**
 * Reading and writing safetensors files (Hugging Face's tensor container; SAELens weights, GPT-2 weights).
 *
 * Reads validate the whole header before allocating anything, then fetch only the requested tensors with
 * positioned reads straight into freshly allocated typed arrays (so every array is aligned, whatever the
 * offsets in the file). Writes lay tensors out exactly as the Rust library does and go through a temp file.
 */
import { closeSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { endianness } from 'node:os';
import { UserError } from '../pipeline/errors.js';
import { tempPathFor } from '../util/atomic-write.js';
import { bfloat16ToFloat32, float16ToFloat32 } from './float16.js';
import {
  DTYPES,
  elementCount,
  encodeHeader,
  isSafetensorsDtype,
  layoutTensors,
  parseHeaderJson,
  parseHeaderLength,
  setOwn,
} from './safetensors-format.js';
import type { LayoutEntry, SafetensorsHeader, Tensor, TensorData, TensorInfo } from './safetensors-format.js';

export type {
  SafetensorsDtype,
  SafetensorsHeader,
  Tensor,
  TensorData,
  TensorInfo,
} from './safetensors-format.js';
export { MAX_HEADER_BYTES } from './safetensors-format.js';

export interface SafetensorsContents {
  metadata: Record<string, string>;
  tensors: Map<string, Tensor>;
}

/** Positioned reads and writes are capped at 2 GiB per call by Node; stay well below. */
const IO_CHUNK = 1 << 30;

function assertLittleEndianHost(): void {
  // Typed arrays use the host byte order and safetensors is little-endian; viewing bytes would be wrong.
  if (endianness() !== 'LE') throw new Error('safetensors I/O requires a little-endian host');
}

async function openForReading(path: string): Promise<FileHandle> {
  try {
    return await open(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UserError(`safetensors file not found: ${path}`);
    if (code === 'EACCES') throw new UserError(`safetensors file not readable (permission denied): ${path}`);
    throw e;
  }
}

async function readExactly(
  fh: FileHandle,
  target: Uint8Array,
  position: number,
  source: string,
): Promise<void> {
  let done = 0;
  while (done < target.length) {
    const length = Math.min(IO_CHUNK, target.length - done);
    const { bytesRead } = await fh.read(target, done, length, position + done);
    if (bytesRead === 0) {
      throw new UserError(
        `${source}: file ended at byte ${position + done} while reading (was it truncated?)`,
      );
    }
    done += bytesRead;
  }
}

async function readHeaderFrom(fh: FileHandle, path: string): Promise<SafetensorsHeader> {
  const stats = await fh.stat();
  if (stats.isDirectory()) throw new UserError(`expected a safetensors file but found a directory: ${path}`);
  const fileSize = stats.size;
  const prefix = new Uint8Array(8);
  if (fileSize >= 8) await readExactly(fh, prefix, 0, path);
  const headerLength = parseHeaderLength(prefix, fileSize, path);
  const headerBytes = new Uint8Array(headerLength);
  await readExactly(fh, headerBytes, 8, path);
  return parseHeaderJson(headerBytes, 8 + headerLength, fileSize, path);
}

/** Reads and validates only the header: names, dtypes, shapes and offsets of every tensor, plus metadata. */
export async function readSafetensorsHeader(path: string): Promise<SafetensorsHeader> {
  const fh = await openForReading(path);
  try {
    return await readHeaderFrom(fh, path);
  } finally {
    await fh.close();
  }
}

function selectNames(
  header: SafetensorsHeader,
  names: readonly string[] | undefined,
  source: string,
): string[] {
  if (names === undefined) return Object.keys(header.tensors);
  const missing = names.filter((n) => !Object.hasOwn(header.tensors, n));
  if (missing.length > 0) {
    const present = Object.keys(header.tensors);
    const shown = present.length > 20 ? `${present.slice(0, 20).join(', ')}, ...` : present.join(', ');
    throw new UserError(
      `${source}: tensor${missing.length > 1 ? 's' : ''} ${missing.map((n) => `'${n}'`).join(', ')} not found (file has: ${shown || 'no tensors'})`,
    );
  }
  return [...new Set(names)];
}

function allocate(info: TensorInfo): TensorData {
  return new DTYPES[info.dtype].array(elementCount(info.shape));
}

function bytesOf(data: TensorData): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * Reads tensors (all, or those named in `options.names`, in that order) from a safetensors file.
 * F16 and BF16 come back as raw bits in a Uint16Array; use `tensorToFloat32` to widen them.
 */
export async function readSafetensors(
  path: string,
  options: { names?: string[] } = {},
): Promise<SafetensorsContents> {
  assertLittleEndianHost();
  const fh = await openForReading(path);
  try {
    const header = await readHeaderFrom(fh, path);
    const tensors = new Map<string, Tensor>();
    for (const name of selectNames(header, options.names, path)) {
      const info = header.tensors[name]!;
      const data = allocate(info);
      await readExactly(
        fh,
        bytesOf(data),
        header.dataStart + info.dataOffsets[0],
        `${path}: tensor '${name}'`,
      );
      tensors.set(name, { dtype: info.dtype, shape: info.shape, data });
    }
    return { metadata: header.metadata, tensors };
  } finally {
    await fh.close();
  }
}

/** Parses a whole safetensors file held in memory; `source` names it in error messages. */
export function parseSafetensors(bytes: Uint8Array, source = '<safetensors bytes>'): SafetensorsContents {
  assertLittleEndianHost();
  const headerLength = parseHeaderLength(bytes.subarray(0, 8), bytes.length, source);
  const header = parseHeaderJson(bytes.subarray(8, 8 + headerLength), 8 + headerLength, bytes.length, source);
  const tensors = new Map<string, Tensor>();
  for (const [name, info] of Object.entries(header.tensors)) {
    const data = allocate(info);
    // Copy rather than view: the source offsets need not be aligned for the element size.
    bytesOf(data).set(
      bytes.subarray(header.dataStart + info.dataOffsets[0], header.dataStart + info.dataOffsets[1]),
    );
    tensors.set(name, { dtype: info.dtype, shape: info.shape, data });
  }
  return { metadata: header.metadata, tensors };
}

function checkData(t: Tensor, where: string): void {
  if (!isSafetensorsDtype(t.dtype)) {
    throw new UserError(
      `${where}: unsupported dtype '${String(t.dtype)}' (supported: ${Object.keys(DTYPES).join(', ')})`,
    );
  }
  const expected = DTYPES[t.dtype].array;
  if (!(t.data instanceof expected)) {
    throw new UserError(
      `${where}: dtype ${t.dtype} needs its data in a ${expected.name}, got ${t.data.constructor.name}`,
    );
  }
  if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new UserError(
      `${where}: shape must be a list of non-negative integers, got ${JSON.stringify(t.shape)}`,
    );
  }
  const count = elementCount(t.shape);
  if (t.data.length !== count) {
    throw new UserError(
      `${where}: shape [${t.shape.join(', ')}] has ${count} elements but the data has ${t.data.length}`,
    );
  }
}

/**
 * Widens any tensor to float32. An F32 tensor's own array is returned (no copy), so callers that mutate the
 * result mutate the tensor. I64 values beyond 2^24 lose precision, as they would in any float32 conversion.
 */
export function tensorToFloat32(t: Tensor, name = 'tensor'): Float32Array {
  checkData(t, `'${name}'`);
  const { data } = t;
  switch (t.dtype) {
    case 'F32':
      return data as Float32Array;
    case 'F16':
      return float16ToFloat32(data as Uint16Array);
    case 'BF16':
      return bfloat16ToFloat32(data as Uint16Array);
    case 'I64': {
      const source = data as BigInt64Array;
      const out = new Float32Array(source.length);
      for (let i = 0; i < source.length; i++) out[i] = Number(source[i]!);
      return out;
    }
    case 'BOOL': {
      const source = data as Uint8Array;
      const out = new Float32Array(source.length);
      for (let i = 0; i < source.length; i++) out[i] = source[i] ? 1 : 0;
      return out;
    }
    default:
      return new Float32Array(data as Float64Array | Int32Array | Int16Array | Int8Array | Uint8Array);
  }
}

function prepareWrite(
  tensors: Record<string, Tensor>,
  metadata: Record<string, string> | undefined,
): { header: Uint8Array; layout: LayoutEntry[]; dataSize: number } {
  assertLittleEndianHost();
  for (const [name, t] of Object.entries(tensors)) {
    if (name === '__metadata__')
      throw new UserError(`tensor name '__metadata__' is reserved by the safetensors format`);
    checkData(t, `tensor '${name}'`);
  }
  let meta: Record<string, string> | undefined;
  if (metadata !== undefined) {
    meta = {};
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== 'string') {
        throw new UserError(`safetensors metadata '${key}' must be a string, got ${typeof value}`);
      }
      setOwn(meta, key, value);
    }
  }
  const layout = layoutTensors(tensors);
  return { header: encodeHeader(layout, meta), layout, dataSize: layout.at(-1)?.end ?? 0 };
}

/** Encodes tensors as safetensors bytes, byte-identical to the Rust library's output for the same input. */
export function serializeSafetensors(
  tensors: Record<string, Tensor>,
  metadata?: Record<string, string>,
): Uint8Array {
  const { header, layout, dataSize } = prepareWrite(tensors, metadata);
  const out = new Uint8Array(header.length + dataSize);
  out.set(header, 0);
  for (const { tensor, begin } of layout) out.set(bytesOf(tensor.data), header.length + begin);
  return out;
}

async function writeAll(fh: FileHandle, bytes: Uint8Array): Promise<void> {
  for (let done = 0; done < bytes.length;) {
    const length = Math.min(IO_CHUNK, bytes.length - done);
    const { bytesWritten } = await fh.write(bytes, done, length);
    done += bytesWritten;
  }
}

/**
 * Writes a safetensors file tensor by tensor (no whole-file buffer) to a temp name, then renames it, so
 * readers never see a partial file.
 */
export async function writeSafetensors(
  path: string,
  tensors: Record<string, Tensor>,
  metadata?: Record<string, string>,
): Promise<void> {
  const { header, layout } = prepareWrite(tensors, metadata);
  const tmp = tempPathFor(path);
  try {
    const fh = await open(tmp, 'w');
    try {
      await writeAll(fh, header);
      for (const { tensor } of layout) await writeAll(fh, bytesOf(tensor.data));
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
}

/**
 * `writeSafetensors` without yielding to the event loop: the file holds the arrays exactly as they were
 * when it was called, even when other code would change them the moment it ran (a live buffer).
 */
export function writeSafetensorsSync(
  path: string,
  tensors: Record<string, Tensor>,
  metadata?: Record<string, string>,
): void {
  const { header, layout } = prepareWrite(tensors, metadata);
  const tmp = tempPathFor(path);
  try {
    const fd = openSync(tmp, 'w');
    try {
      for (const bytes of [header, ...layout.map((e) => bytesOf(e.tensor.data))]) {
        for (let done = 0; done < bytes.length;) {
          done += writeSync(fd, bytes, done, Math.min(IO_CHUNK, bytes.length - done));
        }
      }
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // the temp file may never have been created
    }
    throw e;
  }
}
