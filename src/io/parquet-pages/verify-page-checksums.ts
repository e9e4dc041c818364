/**
 * Checks the page checksums of a Parquet file (PageHeader.crc, see add-page-checksums.ts for the definition)
 * before a decoder sees its pages: a flipped byte inside a snappy or plain page otherwise decodes silently to
 * wrong values.
 *
 * A file none of whose pages carries a crc (most writers: parquet-wasm alone, pyarrow by default, old caches)
 * passes unchecked, as it read before. Once any page of the file carries one, the writer is known to checksum,
 * so a page header that does not parse, or a page without a crc, is damage and fails too.
 */
import { open } from 'node:fs/promises';
import { UserError } from '../../pipeline/errors.js';
import { crc32 } from './crc32.js';
import {
  type ChunkInfo,
  type PageAt,
  columnChunks,
  footerRange,
  parseFooter,
  readPageHeader,
} from './page-headers.js';
import { ThriftError } from './thrift-compact.js';

export interface PageChecksumOptions {
  /** Top-level column names whose chunks to check (default: all); other columns' bytes are not read. */
  readonly columns?: readonly string[];
  /** Skip row groups that end at or before this row (what a reader that seeks will not decode). */
  readonly fromRow?: number;
}

export interface PageChecksumReport {
  /** Pages walked, and those whose crc was present and matched. */
  readonly pages: number;
  readonly checked: number;
}

/** Reads `length` bytes at `position`; shorter only at the end of the file. */
export type ReadRange = (position: number, length: number) => Promise<Uint8Array>;

/** Checks the file at `path`; a mismatch is a UserError naming the file, row group, column and page offset. */
export async function verifyPageChecksums(
  path: string,
  options: PageChecksumOptions = {},
): Promise<PageChecksumReport> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new UserError(`${path}: file not found`);
    throw new UserError(`${path}: cannot open (${(err as Error).message})`, { cause: err });
  }
  try {
    const size = (await handle.stat()).size;
    const read: ReadRange = async (position, length) => {
      const buf = new Uint8Array(Math.max(0, Math.min(length, size - position)));
      let done = 0;
      while (done < buf.length) {
        const { bytesRead } = await handle.read(buf, done, buf.length - done, position + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return buf.subarray(0, done);
    };
    return await verifyPageChecksumsIn(path, size, read, options);
  } finally {
    await handle.close();
  }
}

/** The same check over any byte source (an in-memory file in the tests). */
export async function verifyPageChecksumsIn(
  name: string,
  size: number,
  read: ReadRange,
  options: PageChecksumOptions = {},
): Promise<PageChecksumReport> {
  let chunks: ChunkInfo[];
  try {
    if (size < 12) throw new ThriftError(`${size} bytes is too short`);
    const footer = footerRange(await read(size - 8, 8), size);
    chunks = columnChunks(parseFooter(await read(footer.start, footer.length)));
  } catch (err) {
    if (!(err instanceof ThriftError)) throw err;
    // The decoder reports an unreadable footer in its own words; an encrypted one we cannot check.
    return { pages: 0, checked: 0 };
  }
  const wanted = options.columns ? new Set(options.columns) : undefined;
  const fromRow = options.fromRow ?? 0;
  const rowGroupStart = new Map<number, number>();
  let rows = 0;
  for (const c of chunks) {
    if (rowGroupStart.has(c.rowGroup)) continue;
    rowGroupStart.set(c.rowGroup, rows);
    rows += c.rowGroupRows;
  }
  let pages = 0;
  let checked = 0;
  /** Structural damage seen before knowing whether the file carries checksums at all. */
  let deferred: UserError | undefined;
  for (const c of chunks) {
    if ((rowGroupStart.get(c.rowGroup) as number) + c.rowGroupRows <= fromRow) continue;
    if (wanted && !wanted.has(c.topLevel)) continue;
    const where = `row group ${c.rowGroup}, column ${c.column} (${c.path})`;
    const end = c.start + c.length;
    if (c.start < 4 || end > size) {
      deferred ??= new UserError(`${name}: ${where} lies outside the file (corrupt footer)`);
      continue;
    }
    // Page by page, header first: a file without checksums costs a few small reads per page, not its data.
    for (let at = c.start; at < end;) {
      let page;
      try {
        page = await readHeaderAt(read, at, end);
      } catch (err) {
        if (!(err instanceof ThriftError)) throw err;
        deferred ??= new UserError(
          `${name}: ${where}, page at byte ${at}: unreadable page header (${err.message})`,
        );
        break;
      }
      pages++;
      const dataStart = at + page.headerLength;
      if (page.crc === undefined) {
        deferred ??= new UserError(
          `${name}: ${where}, page at byte ${at} has no checksum while the file's other pages do (corrupt page header)`,
        );
      } else {
        const data =
          page.data.length >= page.dataLength
            ? page.data.subarray(0, page.dataLength)
            : await read(dataStart, page.dataLength);
        const actual = crc32(data);
        if (actual !== page.crc) {
          throw new UserError(
            `${name}: page checksum mismatch in ${where}, page at byte ${at}: CRC-32 of its ` +
              `${page.dataLength} data bytes is ${hex(actual)}, its header says ${hex(page.crc)} (corrupt file)`,
          );
        }
        checked++;
      }
      at = dataStart + page.dataLength;
    }
  }
  if (checked > 0 && deferred) throw deferred;
  return { pages, checked };
}

/** Bytes read at once for a page header; our headers are about 30 bytes, ones with statistics larger. */
const HEADER_PROBE = 1024;

/** The page header at `at` (reading more while it is cut short), and whatever of its data came with it. */
async function readHeaderAt(
  read: ReadRange,
  at: number,
  end: number,
): Promise<PageAt & { data: Uint8Array }> {
  for (let probe = HEADER_PROBE; ; probe *= 4) {
    const bytes = await read(at, Math.min(probe, end - at));
    let page: PageAt;
    try {
      page = readPageHeader(bytes, 0, bytes.length);
    } catch (err) {
      if (err instanceof ThriftError && bytes.length < end - at && bytes.length === probe) continue;
      throw err;
    }
    if (at + page.headerLength + page.dataLength > end)
      throw new ThriftError(`page at ${at} runs past the end of its column chunk`);
    return { ...page, offset: at, data: bytes.subarray(page.headerLength) };
  }
}

const hex = (n: number) => `0x${n.toString(16).padStart(8, '0')}`;
