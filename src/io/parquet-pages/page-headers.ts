/**
 * The parts of the Parquet layout that page checksums touch: the footer (FileMetaData), the column chunks it
 * lists, and the page headers inside a chunk. Field ids are parquet.thrift's
 * (https://github.com/apache/parquet-format/blob/master/src/main/thrift/parquet.thrift).
 */
import {
  CompactReader,
  type TStruct,
  ThriftError,
  getI32,
  getI64,
  getStruct,
  getStructList,
  getField,
  CType,
} from './thrift-compact.js';

export const MAGIC = 'PAR1';
/** Files with an encrypted footer end with this instead; their metadata cannot be read without keys. */
export const ENCRYPTED_MAGIC = 'PARE';

export const FileMetaData = { schema: 2, numRows: 3, rowGroups: 4 } as const;
export const RowGroup = {
  columns: 1,
  totalByteSize: 2,
  numRows: 3,
  fileOffset: 5,
  totalCompressedSize: 6,
} as const;
export const ColumnChunk = {
  fileOffset: 2,
  metaData: 3,
  offsetIndexOffset: 4,
  offsetIndexLength: 5,
  columnIndexOffset: 6,
  columnIndexLength: 7,
  cryptoMetaData: 8,
} as const;
export const ColumnMetaData = {
  pathInSchema: 3,
  totalUncompressedSize: 6,
  totalCompressedSize: 7,
  dataPageOffset: 9,
  indexPageOffset: 10,
  dictionaryPageOffset: 11,
  bloomFilterOffset: 14,
} as const;
export const PageHeader = { type: 1, uncompressedSize: 2, compressedSize: 3, crc: 4 } as const;
export const OffsetIndex = { pageLocations: 1 } as const;
export const PageLocation = { offset: 1, compressedPageSize: 2 } as const;

/** Where the footer sits, from the last 8 bytes of a file of `fileSize` bytes. */
export function footerRange(tail: Uint8Array, fileSize: number): { start: number; length: number } {
  const magic = new TextDecoder().decode(tail.subarray(4, 8));
  if (magic === ENCRYPTED_MAGIC) throw new ThriftError('the footer is encrypted');
  if (magic !== MAGIC) throw new ThriftError(`the file does not end with ${MAGIC}`);
  const length = new DataView(tail.buffer, tail.byteOffset, 8).getUint32(0, true);
  if (length + 12 > fileSize) throw new ThriftError(`footer length ${length} exceeds the file`);
  return { start: fileSize - 8 - length, length };
}

export function parseFooter(footer: Uint8Array): TStruct {
  const reader = new CompactReader(footer);
  const meta = reader.readStruct();
  if (reader.pos !== footer.length) throw new ThriftError('the footer has trailing bytes');
  return meta;
}

function safeNumber(v: bigint, what: string): number {
  if (v < 0n || v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ThriftError(`${what} is ${v}`);
  return Number(v);
}

/** One column chunk as the footer describes it: the byte range its pages occupy. */
export interface ChunkInfo {
  readonly rowGroup: number;
  readonly column: number;
  /** path_in_schema joined with '.', e.g. `blocks.0.hook_resid_pre.list.element`. */
  readonly path: string;
  /** The top-level column the chunk belongs to (the first path element). */
  readonly topLevel: string;
  readonly rowGroupRows: number;
  readonly start: number;
  readonly length: number;
  /** The ColumnChunk and its ColumnMetaData, for a rewriter to update in place. */
  readonly chunk: TStruct;
  readonly meta: TStruct;
}

export function columnChunks(fileMeta: TStruct): ChunkInfo[] {
  const out: ChunkInfo[] = [];
  getStructList(fileMeta, FileMetaData.rowGroups).forEach((rg, rowGroup) => {
    const rowGroupRows = safeNumber(getI64(rg, RowGroup.numRows) ?? 0n, 'a row group row count');
    getStructList(rg, RowGroup.columns).forEach((chunk, column) => {
      if (getField(chunk, ColumnChunk.cryptoMetaData) !== undefined)
        throw new ThriftError('column chunks are encrypted');
      const meta = getStruct(chunk, ColumnChunk.metaData);
      if (!meta) throw new ThriftError(`row group ${rowGroup} column ${column} has no metadata`);
      const pathValue = getField(meta, ColumnMetaData.pathInSchema);
      const names =
        pathValue?.type === CType.List
          ? pathValue.value.map((v) => (v.type === CType.Binary ? new TextDecoder().decode(v.value) : '?'))
          : [];
      const data = safeNumber(getI64(meta, ColumnMetaData.dataPageOffset) ?? -1n, 'data_page_offset');
      const dictValue = getI64(meta, ColumnMetaData.dictionaryPageOffset);
      // Some writers store 0 for "no dictionary page"; a real one always lies after the magic.
      const dict =
        dictValue !== undefined && dictValue > 0n ? safeNumber(dictValue, 'dictionary_page_offset') : data;
      const length = safeNumber(
        getI64(meta, ColumnMetaData.totalCompressedSize) ?? -1n,
        'total_compressed_size',
      );
      out.push({
        rowGroup,
        column,
        path: names.join('.'),
        topLevel: names[0] ?? '',
        rowGroupRows,
        start: Math.min(dict, data),
        length,
        chunk,
        meta,
      });
    });
  });
  return out;
}

export interface PageAt {
  /** Offset of the page header, relative to the buffer it was read from. */
  readonly offset: number;
  readonly headerLength: number;
  readonly header: TStruct;
  readonly dataLength: number;
  /** The header's crc field as an unsigned 32-bit value, when present. */
  readonly crc: number | undefined;
}

/** Parses the page header at `offset` (which must end before `end`), without looking at its data. */
export function readPageHeader(bytes: Uint8Array, offset: number, end: number): PageAt {
  const reader = new CompactReader(bytes, offset, end);
  const header = reader.readStruct();
  const dataLength = getI32(header, PageHeader.compressedSize);
  if (dataLength === undefined || dataLength < 0)
    throw new ThriftError(`page header at ${offset} has no valid compressed_page_size`);
  const crc = getI32(header, PageHeader.crc);
  return {
    offset,
    headerLength: reader.pos - offset,
    header,
    dataLength,
    crc: crc === undefined ? undefined : crc >>> 0,
  };
}

/** Parses the page header at `offset`; its data must lie within `end` too. */
export function readPage(bytes: Uint8Array, offset: number, end: number): PageAt {
  const page = readPageHeader(bytes, offset, end);
  if (offset + page.headerLength + page.dataLength > end)
    throw new ThriftError(`page at ${offset} runs past the end of its column chunk`);
  return page;
}
