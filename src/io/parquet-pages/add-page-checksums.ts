/**
 * Adds Parquet page checksums to a file another library encoded (parquet-wasm has no setting for them).
 *
 * parquet.thrift, PageHeader field 4 `optional i32 crc`: the standard CRC-32 (zlib's polynomial) of the page
 * as written to disk after the header, i.e. the `compressed_page_size` bytes that follow it, for every page
 * type. This is what parquet-java and Arrow C++ write and what pyarrow's `page_checksum_verification=True`
 * checks (test/parquet-page-checksums.test.ts holds us to a file pyarrow wrote).
 *
 * The field makes each header a few bytes longer, so everything after the first page moves. Whatever the
 * footer says about positions and sizes is rewritten to match: per column chunk data/dictionary/index page
 * and bloom filter offsets, total compressed and uncompressed sizes (both count page headers), the
 * offset/column index positions and each page's location inside the offset index; per row group its file
 * offset and sizes. Page data and every field we do not interpret keep their bytes.
 */
import { crc32 } from './crc32.js';
import {
  ColumnChunk,
  ColumnMetaData,
  OffsetIndex,
  PageHeader,
  PageLocation,
  RowGroup,
  FileMetaData,
  type ChunkInfo,
  MAGIC,
  columnChunks,
  footerRange,
  parseFooter,
  readPage,
} from './page-headers.js';
import {
  CType,
  CompactReader,
  type TStruct,
  ThriftError,
  encodeStruct,
  getI32,
  getI64,
  getStructList,
  setField,
} from './thrift-compact.js';

/** A byte range of the input replaced by new bytes in the output. */
interface Edit {
  readonly start: number;
  readonly oldLength: number;
  readonly bytes: Uint8Array;
}

/** Offsets in the input mapped to the output, given edits sorted by start. */
class OffsetMap {
  private readonly starts: number[] = [];
  private readonly shiftAfter: number[] = [];

  constructor(edits: readonly Edit[]) {
    let shift = 0;
    for (const e of edits) {
      shift += e.bytes.length - e.oldLength;
      this.starts.push(e.start);
      this.shiftAfter.push(shift);
    }
  }

  /**
   * An edit at `start` moves only what lies after `start`: an offset pointing at an edited header still
   * points at its (new) start.
   */
  map(offset: number): number {
    let lo = 0;
    let hi = this.starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((this.starts[mid] as number) < offset) lo = mid + 1;
      else hi = mid;
    }
    return offset + (lo === 0 ? 0 : (this.shiftAfter[lo - 1] as number));
  }
}

const i64 = (value: bigint) => ({ type: CType.I64 as const, value });
const i32 = (value: number) => ({ type: CType.I32 as const, value });

/** Returns `file` with a crc in every page header; the input is not modified. */
export function addPageChecksums(file: Uint8Array): Uint8Array {
  return rewritePageHeaders(file, (header, data) => {
    // Thrift's i32 is signed; the CRC's bits are what count (parquet-java casts the long the same way).
    setField(header, PageHeader.crc, i32(crc32(data) | 0));
  });
}

/**
 * Returns `file` with every page header passed through `edit` (given the header's fields, to change in place,
 * and the page's data), and the footer and offset indexes moved to match the new header sizes.
 */
export function rewritePageHeaders(
  file: Uint8Array,
  edit: (header: TStruct, data: Uint8Array) => void,
): Uint8Array {
  if (file.length < 12 || new TextDecoder().decode(file.subarray(0, 4)) !== MAGIC)
    throw new ThriftError(`not a Parquet file (no leading ${MAGIC})`);
  const footer = footerRange(file.subarray(file.length - 8), file.length);
  const meta = parseFooter(file.subarray(footer.start, footer.start + footer.length));
  const chunks = columnChunks(meta);

  const edits: Edit[] = [];
  /** Header growth by the input offset of the page, for the offset index's page locations. */
  const growthAt = new Map<number, number>();
  const chunkGrowth: number[] = [];
  let dataEnd = 4;
  for (const c of chunks) {
    const end = c.start + c.length;
    if (c.start < dataEnd || end > footer.start)
      throw new ThriftError(
        `column chunk ${c.path} of row group ${c.rowGroup} overlaps another or the footer`,
      );
    let growth = 0;
    for (let at = c.start; at < end;) {
      const page = readPage(file, at, end);
      const header = page.header.slice();
      const dataStart = at + page.headerLength;
      edit(header, file.subarray(dataStart, dataStart + page.dataLength));
      const bytes = encodeStruct(header);
      edits.push({ start: at, oldLength: page.headerLength, bytes });
      growthAt.set(at, bytes.length - page.headerLength);
      growth += bytes.length - page.headerLength;
      at = dataStart + page.dataLength;
    }
    chunkGrowth.push(growth);
    dataEnd = end;
  }

  // Offset indexes sit between the last chunk and the footer, so the page edits alone place their pages.
  const pageMap = new OffsetMap(edits);
  for (const c of chunks) {
    const offset = getI64(c.chunk, ColumnChunk.offsetIndexOffset);
    const length = getI32(c.chunk, ColumnChunk.offsetIndexLength);
    if (offset === undefined || length === undefined) continue;
    const start = Number(offset);
    if (start < dataEnd || start + length > footer.start)
      throw new ThriftError(`the offset index of ${c.path} is not between the column data and the footer`);
    const reader = new CompactReader(file, start, start + length);
    const index = reader.readStruct();
    for (const loc of getStructList(index, OffsetIndex.pageLocations)) {
      const at = Number(getI64(loc, PageLocation.offset) ?? -1n);
      const size = getI32(loc, PageLocation.compressedPageSize);
      const growth = growthAt.get(at);
      if (growth === undefined || size === undefined)
        throw new ThriftError(`the offset index of ${c.path} lists a page at ${at} that is not there`);
      setField(loc, PageLocation.offset, i64(BigInt(pageMap.map(at))));
      // The page location's size counts the header (parquet.thrift: "including header").
      setField(loc, PageLocation.compressedPageSize, i32(size + growth));
    }
    edits.push({ start, oldLength: length, bytes: encodeStruct(index) });
  }
  edits.sort((a, b) => a.start - b.start);
  for (let i = 1; i < edits.length; i++) {
    const prev = edits[i - 1] as Edit;
    if ((edits[i] as Edit).start < prev.start + prev.oldLength)
      throw new ThriftError('page headers and indexes overlap');
  }
  const map = new OffsetMap(edits);

  rewriteFooter(meta, chunks, chunkGrowth, map, edits);
  const newFooter = encodeStruct(meta);
  return assemble(file, footer.start, edits, newFooter);
}

function rewriteFooter(
  meta: TStruct,
  chunks: readonly ChunkInfo[],
  chunkGrowth: readonly number[],
  map: OffsetMap,
  edits: readonly Edit[],
): void {
  const mapI64 = (s: TStruct, id: number) => {
    const v = getI64(s, id);
    // 0 is how arrow-rs says "not recorded" for ColumnChunk.file_offset; it maps to itself anyway.
    if (v !== undefined) setField(s, id, i64(BigInt(map.map(Number(v)))));
  };
  const addI64 = (s: TStruct, id: number, delta: number) => {
    const v = getI64(s, id);
    if (v !== undefined) setField(s, id, i64(v + BigInt(delta)));
  };
  const newIndexLength = new Map(edits.map((e) => [e.start, e.bytes.length]));

  chunks.forEach((c, i) => {
    const growth = chunkGrowth[i] as number;
    for (const id of [
      ColumnMetaData.dataPageOffset,
      ColumnMetaData.dictionaryPageOffset,
      ColumnMetaData.indexPageOffset,
      ColumnMetaData.bloomFilterOffset,
    ]) {
      const v = getI64(c.meta, id);
      if (v !== undefined && v > 0n) mapI64(c.meta, id);
    }
    addI64(c.meta, ColumnMetaData.totalCompressedSize, growth);
    addI64(c.meta, ColumnMetaData.totalUncompressedSize, growth);
    mapI64(c.chunk, ColumnChunk.fileOffset);
    const indexOffset = getI64(c.chunk, ColumnChunk.offsetIndexOffset);
    if (indexOffset !== undefined) {
      const length = newIndexLength.get(Number(indexOffset));
      if (length !== undefined) setField(c.chunk, ColumnChunk.offsetIndexLength, i32(length));
      mapI64(c.chunk, ColumnChunk.offsetIndexOffset);
    }
    mapI64(c.chunk, ColumnChunk.columnIndexOffset);
  });

  getStructList(meta, FileMetaData.rowGroups).forEach((rg, r) => {
    const own = chunks.map((c, i) => ({ c, g: chunkGrowth[i] as number })).filter((x) => x.c.rowGroup === r);
    const growth = own.reduce((s, x) => s + x.g, 0);
    const oldUncompressed = own.reduce(
      (s, x) => s + (getI64(x.c.meta, ColumnMetaData.totalUncompressedSize) ?? 0n) - BigInt(x.g),
      0n,
    );
    // total_byte_size is "uncompressed column data": writers differ on whether page headers count.
    // arrow-rs and parquet-java sum the chunks' total_uncompressed_size (headers included); only then
    // does it grow with the headers.
    if (getI64(rg, RowGroup.totalByteSize) === oldUncompressed) addI64(rg, RowGroup.totalByteSize, growth);
    addI64(rg, RowGroup.totalCompressedSize, growth);
    mapI64(rg, RowGroup.fileOffset);
  });
}

function assemble(
  file: Uint8Array,
  footerStart: number,
  edits: readonly Edit[],
  footer: Uint8Array,
): Uint8Array {
  const grow = edits.reduce((s, e) => s + e.bytes.length - e.oldLength, 0);
  const out = new Uint8Array(footerStart + grow + footer.length + 8);
  let from = 0;
  let to = 0;
  for (const e of edits) {
    out.set(file.subarray(from, e.start), to);
    to += e.start - from;
    out.set(e.bytes, to);
    to += e.bytes.length;
    from = e.start + e.oldLength;
  }
  out.set(file.subarray(from, footerStart), to);
  to += footerStart - from;
  out.set(footer, to);
  to += footer.length;
  new DataView(out.buffer).setUint32(to, footer.length, true);
  out.set(new TextEncoder().encode(MAGIC), to + 4);
  return out;
}
