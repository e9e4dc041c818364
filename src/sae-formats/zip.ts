/**
 * A minimal reader of zip archives (what `.npz` files are): the central directory is parsed from the end
 * of the file, every entry's offsets and sizes are checked against the file size before anything is read,
 * and members are read one at a time with positioned reads. Stored and deflate members only; CRC-32 is
 * verified. Zip64 records are understood, since numpy writes members with forced zip64 local headers.
 */
import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import * as zlib from 'node:zlib';
import { UserError } from '../pipeline/errors.js';

const EOCD_SIGNATURE = 0x06054b50;
const ZIP64_EOCD_LOCATOR_SIGNATURE = 0x07064b50;
const ZIP64_EOCD_SIGNATURE = 0x06064b50;
const CENTRAL_SIGNATURE = 0x02014b50;
const LOCAL_SIGNATURE = 0x04034b50;
const EOCD_SIZE = 22;
const MAX_COMMENT = 0xffff;
const LOCAL_HEADER_SIZE = 30;
const CENTRAL_HEADER_SIZE = 46;
const ZIP64_EXTRA_ID = 0x0001;
/** Node's Buffers (and so one inflate result) are capped near 4 GiB; one member must fit in memory. */
export const MAX_MEMBER_BYTES = 2 ** 32 - 1;

export interface ZipEntry {
  name: string;
  /** 0 = stored, 8 = deflate. */
  method: number;
  compressedSize: number;
  size: number;
  crc32: number;
  localHeaderOffset: number;
}

export interface ZipArchive {
  path: string;
  fileSize: number;
  entries: ZipEntry[];
  /** The uncompressed bytes of one member, checked against its size and CRC-32. */
  read(entry: ZipEntry): Promise<Uint8Array>;
  close(): Promise<void>;
}

let crcTable: Uint32Array | undefined;

export function crc32Js(bytes: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) crc = crcTable[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** zlib.crc32 (Node >= 20.15) is native and much faster; older Nodes use the table. */
export function crc32(bytes: Uint8Array): number {
  const native = (zlib as { crc32?: (data: Uint8Array) => number }).crc32;
  return native ? native(bytes) >>> 0 : crc32Js(bytes);
}

async function readAt(fh: FileHandle, position: number, length: number, file: string): Promise<Uint8Array> {
  const buf = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done);
    if (bytesRead === 0) throw new UserError(`${file}: file ended at byte ${position + done} (truncated?)`);
    done += bytesRead;
  }
  return buf;
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function u64(dv: DataView, offset: number, file: string, what: string): number {
  const v = dv.getBigUint64(offset, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new UserError(`${file}: ${what} ${v} is out of range`);
  return Number(v);
}

interface DirectoryLocation {
  offset: number;
  size: number;
  count: number;
}

async function locateDirectory(fh: FileHandle, fileSize: number, file: string): Promise<DirectoryLocation> {
  if (fileSize < EOCD_SIZE) {
    throw new UserError(
      `${file}: ${fileSize} bytes is too short for a zip archive (truncated or not a .npz?)`,
    );
  }
  const tailLength = Math.min(fileSize, EOCD_SIZE + MAX_COMMENT);
  const tailStart = fileSize - tailLength;
  const tail = await readAt(fh, tailStart, tailLength, file);
  const dv = view(tail);
  let at = -1;
  for (let i = tailLength - EOCD_SIZE; i >= 0; i--) {
    if (
      dv.getUint32(i, true) === EOCD_SIGNATURE &&
      i + EOCD_SIZE + dv.getUint16(i + 20, true) === tailLength
    ) {
      at = i;
      break;
    }
  }
  if (at < 0) {
    throw new UserError(
      `${file}: no zip end-of-central-directory record found (the file is truncated, or not a .npz/zip archive)`,
    );
  }
  if (dv.getUint16(at + 4, true) !== 0 || dv.getUint16(at + 6, true) !== 0) {
    throw new UserError(`${file}: multi-disk zip archives are not supported`);
  }
  let count = dv.getUint16(at + 10, true);
  let size = dv.getUint32(at + 12, true);
  let offset = dv.getUint32(at + 16, true);
  if (count === 0xffff || size === 0xffffffff || offset === 0xffffffff) {
    // Zip64: a locator sits right before the classic record and points at the zip64 record.
    const locatorAt = tailStart + at - 20;
    if (locatorAt < 0) throw new UserError(`${file}: zip64 archive without a zip64 locator`);
    const locator = view(await readAt(fh, locatorAt, 20, file));
    if (locator.getUint32(0, true) !== ZIP64_EOCD_LOCATOR_SIGNATURE) {
      throw new UserError(`${file}: zip64 archive without a zip64 locator`);
    }
    const recordAt = u64(locator, 8, file, 'zip64 record offset');
    if (recordAt + 56 > fileSize) throw new UserError(`${file}: zip64 record lies outside the file`);
    const record = view(await readAt(fh, recordAt, 56, file));
    if (record.getUint32(0, true) !== ZIP64_EOCD_SIGNATURE) {
      throw new UserError(`${file}: bad zip64 end-of-central-directory record`);
    }
    count = u64(record, 32, file, 'entry count');
    size = u64(record, 40, file, 'central directory size');
    offset = u64(record, 48, file, 'central directory offset');
  }
  if (offset + size > fileSize) {
    throw new UserError(
      `${file}: the central directory (bytes ${offset}..${offset + size}) lies beyond the end of the file (${fileSize} bytes; truncated?)`,
    );
  }
  if (count * CENTRAL_HEADER_SIZE > size) {
    throw new UserError(`${file}: ${count} entries cannot fit in a ${size}-byte central directory`);
  }
  return { offset, size, count };
}

/** Applies a zip64 extra field: each 0xFFFFFFFF field of the header is replaced, in order, by a u64. */
function applyZip64(
  extra: DataView,
  fields: { size: number; compressedSize: number; localHeaderOffset: number },
  file: string,
  name: string,
): void {
  for (let p = 0; p + 4 <= extra.byteLength;) {
    const id = extra.getUint16(p, true);
    const len = extra.getUint16(p + 2, true);
    if (p + 4 + len > extra.byteLength) break;
    if (id === ZIP64_EXTRA_ID) {
      let q = p + 4;
      const take = (): number => {
        if (q + 8 > p + 4 + len)
          throw new UserError(`${file}: member '${name}' has a short zip64 extra field`);
        const v = u64(extra, q, file, `member '${name}' size`);
        q += 8;
        return v;
      };
      if (fields.size === 0xffffffff) fields.size = take();
      if (fields.compressedSize === 0xffffffff) fields.compressedSize = take();
      if (fields.localHeaderOffset === 0xffffffff) fields.localHeaderOffset = take();
      return;
    }
    p += 4 + len;
  }
}

function parseDirectory(bytes: Uint8Array, count: number, file: string, fileSize: number): ZipEntry[] {
  const dv = view(bytes);
  const entries: ZipEntry[] = [];
  const decoder = new TextDecoder('utf-8', { fatal: false });
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + CENTRAL_HEADER_SIZE > bytes.length || dv.getUint32(p, true) !== CENTRAL_SIGNATURE) {
      throw new UserError(`${file}: central directory entry ${i} is malformed (corrupt archive?)`);
    }
    const flags = dv.getUint16(p + 8, true);
    const method = dv.getUint16(p + 10, true);
    const crc = dv.getUint32(p + 16, true);
    const nameLength = dv.getUint16(p + 28, true);
    const extraLength = dv.getUint16(p + 30, true);
    const commentLength = dv.getUint16(p + 32, true);
    const end = p + CENTRAL_HEADER_SIZE + nameLength + extraLength + commentLength;
    if (end > bytes.length)
      throw new UserError(`${file}: central directory entry ${i} overruns the directory`);
    const name = decoder.decode(
      bytes.subarray(p + CENTRAL_HEADER_SIZE, p + CENTRAL_HEADER_SIZE + nameLength),
    );
    const fields = {
      compressedSize: dv.getUint32(p + 20, true),
      size: dv.getUint32(p + 24, true),
      localHeaderOffset: dv.getUint32(p + 42, true),
    };
    const extraStart = p + CENTRAL_HEADER_SIZE + nameLength;
    applyZip64(new DataView(bytes.buffer, bytes.byteOffset + extraStart, extraLength), fields, file, name);
    if (flags & 0x1) throw new UserError(`${file}: member '${name}' is encrypted, which is not supported`);
    if (method !== 0 && method !== 8) {
      throw new UserError(
        `${file}: member '${name}' uses zip compression method ${method}; only stored (0) and deflate (8) are supported`,
      );
    }
    if (fields.localHeaderOffset + LOCAL_HEADER_SIZE + fields.compressedSize > fileSize) {
      throw new UserError(
        `${file}: member '${name}' (${fields.compressedSize} bytes at offset ${fields.localHeaderOffset}) lies beyond the end of the file (${fileSize} bytes; truncated?)`,
      );
    }
    if (method === 0 && fields.compressedSize !== fields.size) {
      throw new UserError(
        `${file}: stored member '${name}' has compressed size ${fields.compressedSize} but size ${fields.size}`,
      );
    }
    if (fields.size > MAX_MEMBER_BYTES) {
      throw new UserError(
        `${file}: member '${name}' declares ${fields.size} bytes, more than this reader accepts`,
      );
    }
    entries.push({ name, method, crc32: crc, ...fields });
    p = end;
  }
  return entries;
}

/** Opens a zip archive and reads its directory; call `close()` when done. */
export async function openZip(path: string): Promise<ZipArchive> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UserError(`file not found: ${path}`);
    if (code === 'EISDIR') throw new UserError(`expected a .npz file but found a directory: ${path}`);
    throw e;
  }
  try {
    const stats = await fh.stat();
    if (stats.isDirectory()) throw new UserError(`expected a .npz file but found a directory: ${path}`);
    const fileSize = stats.size;
    const loc = await locateDirectory(fh, fileSize, path);
    const entries = parseDirectory(await readAt(fh, loc.offset, loc.size, path), loc.count, path, fileSize);
    const read = async (entry: ZipEntry): Promise<Uint8Array> => {
      const what = `${path}: member '${entry.name}'`;
      const local = view(await readAt(fh, entry.localHeaderOffset, LOCAL_HEADER_SIZE, path));
      if (local.getUint32(0, true) !== LOCAL_SIGNATURE) throw new UserError(`${what}: bad local header`);
      const dataStart =
        entry.localHeaderOffset + LOCAL_HEADER_SIZE + local.getUint16(26, true) + local.getUint16(28, true);
      if (dataStart + entry.compressedSize > fileSize) {
        throw new UserError(`${what}: data runs past the end of the file (truncated?)`);
      }
      const raw = await readAt(fh, dataStart, entry.compressedSize, path);
      let data: Uint8Array;
      if (entry.method === 0) {
        data = raw;
      } else {
        try {
          data = zlib.inflateRawSync(raw, { maxOutputLength: Math.max(1, entry.size) });
        } catch (e) {
          throw new UserError(`${what}: deflate data is corrupt (${(e as Error).message})`);
        }
        if (data.length !== entry.size) {
          throw new UserError(`${what}: inflated to ${data.length} bytes, expected ${entry.size}`);
        }
      }
      if (crc32(data) !== entry.crc32) throw new UserError(`${what}: CRC-32 mismatch (corrupt archive)`);
      return data;
    };
    return { path, fileSize, entries, read, close: () => fh.close() };
  } catch (e) {
    await fh.close();
    throw e;
  }
}
