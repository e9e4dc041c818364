// Parquet page checksums: the CRC-32 we add to parquet-wasm's output, the footer we rewrite around it, and the
// verifier, held to files pyarrow wrote with write_page_checksum=True (tools/parquet-crc/).
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as zlib from 'node:zlib';
import { tableToIPC, Table } from 'apache-arrow';
import { afterAll, describe, expect, it } from 'vitest';
import { concatActivationBatches, hookMatrix } from '../src/arrow/index.js';
import {
  addPageChecksums,
  rewritePageHeaders,
  verifyPageChecksums,
  verifyPageChecksumsIn,
} from '../src/io/parquet-pages/index.js';
import { crc32Table } from '../src/io/parquet-pages/crc32.js';
import {
  ColumnChunk,
  ColumnMetaData,
  FileMetaData,
  OffsetIndex,
  PageHeader,
  PageLocation,
  RowGroup,
  columnChunks,
  footerRange,
  parseFooter,
  readPage,
} from '../src/io/parquet-pages/page-headers.js';
import {
  CType,
  CompactReader,
  ThriftError,
  encodeStruct,
  setField,
  getI32,
  getI64,
  getStructList,
} from '../src/io/parquet-pages/thrift-compact.js';
import { isUserError } from '../src/pipeline/errors.js';
import {
  type ParquetCompression,
  cacheReader,
  encodeParquet,
  openParquet,
} from '../src/stages/cache/index.js';
import { HOOKS, collect, formulaMatrix, makeTempDir, syntheticBatch } from './cache-test-helpers.js';

const FIXTURES = 'test/fixtures/parquet-crc';
const PYARROW = ['pyarrow-crc-v1-snappy.parquet', 'pyarrow-crc-v2-zstd.parquet'];
const HOOK = 'blocks.0.hook_resid_pre';
const temp = makeTempDir('parquet-crc');
afterAll(() => temp.cleanup());
let files = 0;

const u8 = (b: Buffer) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
const inMemory = (name: string, bytes: Uint8Array) =>
  verifyPageChecksumsIn(name, bytes.length, async (p, n) => bytes.subarray(p, Math.min(bytes.length, p + n)));

function writeTemp(bytes: Uint8Array): string {
  const path = join(temp.dir, `f${files++}.parquet`);
  writeFileSync(path, bytes);
  return path;
}

interface PageInfo {
  readonly rowGroup: number;
  readonly column: number;
  readonly path: string;
  readonly offset: number;
  readonly headerLength: number;
  readonly dataLength: number;
  readonly crc: number | undefined;
}

/** Every page of the file, found by walking each column chunk the footer lists. */
function pagesOf(bytes: Uint8Array): PageInfo[] {
  const footer = footerRange(bytes.subarray(bytes.length - 8), bytes.length);
  const out: PageInfo[] = [];
  for (const c of columnChunks(parseFooter(bytes.subarray(footer.start, footer.start + footer.length)))) {
    let at = c.start;
    while (at < c.start + c.length) {
      const p = readPage(bytes, at, c.start + c.length);
      out.push({ rowGroup: c.rowGroup, column: c.column, path: c.path, ...p });
      at += p.headerLength + p.dataLength;
    }
    // The pages fill the chunk exactly: total_compressed_size counts every header and every data byte.
    expect(at).toBe(c.start + c.length);
  }
  return out;
}

/** Everything the footer says about positions and sizes agrees with the pages actually in the file. */
function checkLayout(bytes: Uint8Array): void {
  const footer = footerRange(bytes.subarray(bytes.length - 8), bytes.length);
  const meta = parseFooter(bytes.subarray(footer.start, footer.start + footer.length));
  const chunks = columnChunks(meta);
  const pages = pagesOf(bytes);
  for (const c of chunks) {
    const own = pages.filter((p) => p.rowGroup === c.rowGroup && p.column === c.column);
    expect(Number(getI64(c.meta, ColumnMetaData.dataPageOffset))).toBe(
      own.find((p) => p.offset >= c.start && readPageType(bytes, p) !== 2)?.offset,
    );
    const indexOffset = getI64(c.chunk, ColumnChunk.offsetIndexOffset);
    if (indexOffset === undefined) continue;
    const length = getI32(c.chunk, ColumnChunk.offsetIndexLength) as number;
    const index = new CompactReader(bytes, Number(indexOffset), Number(indexOffset) + length).readStruct();
    const locations = getStructList(index, OffsetIndex.pageLocations);
    const dataPages = own.filter((p) => readPageType(bytes, p) !== 2);
    expect(locations.map((l) => Number(getI64(l, PageLocation.offset)))).toEqual(
      dataPages.map((p) => p.offset),
    );
    expect(locations.map((l) => getI32(l, PageLocation.compressedPageSize))).toEqual(
      dataPages.map((p) => p.headerLength + p.dataLength),
    );
  }
  getStructList(meta, FileMetaData.rowGroups).forEach((rg, r) => {
    const own = chunks.filter((c) => c.rowGroup === r);
    const compressed = own.reduce((s, c) => s + c.length, 0);
    const total = getI64(rg, RowGroup.totalCompressedSize);
    if (total !== undefined) expect(Number(total)).toBe(compressed);
    const fileOffset = getI64(rg, RowGroup.fileOffset);
    if (fileOffset !== undefined) expect(Number(fileOffset)).toBe(Math.min(...own.map((c) => c.start)));
  });
}

/** PageType of a page (0 data v1, 2 dictionary, 3 data v2). */
function readPageType(bytes: Uint8Array, p: PageInfo): number {
  return getI32(new CompactReader(bytes, p.offset).readStruct(), 1) as number;
}

async function expectMismatch(bytes: Uint8Array, page: PageInfo): Promise<void> {
  const err = await inMemory('x.parquet', bytes).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isUserError(err), `flip in page at ${page.offset} not caught`).toBe(true);
  expect((err as Error).message).toContain(
    `x.parquet: page checksum mismatch in row group ${page.rowGroup}, column ${page.column} (${page.path}), page at byte ${page.offset}:`,
  );
}

describe('CRC-32', () => {
  it('is the zlib/IEEE CRC-32 (check value of "123456789"), table and zlib alike', () => {
    const check = new TextEncoder().encode('123456789');
    expect(crc32Table(check)).toBe(0xcbf43926);
    for (const n of [0, 1, 7, 4096, 100_003]) {
      const data = new Uint8Array(randomBytes(n));
      expect(crc32Table(data)).toBe(zlib.crc32(data) >>> 0);
    }
  });
});

describe('Thrift compact protocol', () => {
  it('re-encodes a footer and page headers written by arrow-rs and by Arrow C++ to the same bytes', () => {
    const shard = encodeParquet(syntheticBatch(0, 300), { compression: 'snappy', rowGroupRows: 128 });
    for (const bytes of [shard, u8(readFileSync(join(FIXTURES, PYARROW[0] as string)))]) {
      const footer = footerRange(bytes.subarray(bytes.length - 8), bytes.length);
      const raw = bytes.subarray(footer.start, footer.start + footer.length);
      expect(encodeStruct(parseFooter(raw))).toEqual(raw);
      for (const p of pagesOf(bytes)) {
        const header = bytes.subarray(p.offset, p.offset + p.headerLength);
        expect(encodeStruct(new CompactReader(header).readStruct())).toEqual(header);
      }
    }
  });
});

describe('our shards carry page checksums', () => {
  const cases: { compression: ParquetCompression; dtype: 'float32' | 'float16'; rows: number }[] = [
    { compression: 'snappy', dtype: 'float32', rows: 700 },
    { compression: 'none', dtype: 'float32', rows: 300 },
    { compression: 'zstd', dtype: 'float16', rows: 300 },
    { compression: 'snappy', dtype: 'float32', rows: 0 },
  ];
  for (const { compression, dtype, rows } of cases) {
    it(`${compression}, ${dtype}, ${rows} rows: every page has a matching crc, the footer agrees, values round-trip`, async () => {
      const batch = syntheticBatch(0, rows, undefined, dtype);
      const bytes = encodeParquet(batch, { compression, rowGroupRows: 128 });
      const pages = pagesOf(bytes);
      if (rows > 0) expect(new Set(pages.map((p) => p.rowGroup)).size).toBe(Math.ceil(rows / 128));
      for (const p of pages) {
        expect(p.crc).toBe(
          crc32Table(bytes.subarray(p.offset + p.headerLength, p.offset + p.headerLength + p.dataLength)),
        );
      }
      checkLayout(bytes);
      // Adding checksums again changes nothing: the crc field is replaced, not duplicated.
      expect(addPageChecksums(bytes)).toEqual(bytes);

      const path = writeTemp(bytes);
      expect(await verifyPageChecksums(path)).toEqual({ pages: pages.length, checked: pages.length });
      // Read back through the cache reader as plain Parquet (page checksums verified on the way).
      const back = await collect(cacheReader({ path, batchRows: 1000 }));
      expect(back.reduce((n, b) => n + b.numRows, 0)).toBe(rows);
      if (rows > 0) {
        const all = concatActivationBatches(back);
        for (const h of HOOKS) expect(hookMatrix(all, h.name)).toEqual(hookMatrix(batch, h.name));
        expect(all.getChild('token')?.toArray()).toEqual(batch.getChild('token')?.toArray());
      }
    });
  }

  it('a flipped bit in any page data byte is caught, naming file, row group, column and page', async () => {
    const bytes = encodeParquet(syntheticBatch(0, 300), { compression: 'snappy', rowGroupRows: 128 });
    const pages = pagesOf(bytes);
    expect(pages.length).toBeGreaterThan(6);
    for (const p of pages) {
      const first = p.offset + p.headerLength;
      const spots = [first, first + (p.dataLength >> 1), first + p.dataLength - 1];
      for (const at of spots) {
        for (const bit of [0, 7]) {
          const damaged = bytes.slice();
          damaged[at] = (damaged[at] as number) ^ (1 << bit);
          await expectMismatch(damaged, p);
        }
      }
    }
    expect(await inMemory('x.parquet', bytes)).toEqual({ pages: pages.length, checked: pages.length });
  });

  it('a damaged crc field is caught too', async () => {
    const bytes = encodeParquet(syntheticBatch(0, 300), { compression: 'none', rowGroupRows: 128 });
    for (const p of pagesOf(bytes)) {
      const header = new CompactReader(bytes, p.offset, p.offset + p.headerLength).readStruct();
      setField(header, PageHeader.crc, { type: CType.I32, value: ((p.crc as number) ^ 0x100) | 0 });
      const encoded = encodeStruct(header);
      expect(encoded.length).toBe(p.headerLength);
      const damaged = bytes.slice();
      damaged.set(encoded, p.offset);
      await expectMismatch(damaged, p);
    }
  });

  it('page headers larger than a read probe, with fields we do not know, are kept and checked', async () => {
    // A future or foreign writer's field (id 99) of 5000 bytes in every header: the rewrite must carry it
    // through and move the footer around it, and the verifier must read the whole header before the data.
    const shard = encodeParquet(syntheticBatch(0, 300), { compression: 'snappy', rowGroupRows: 128 });
    const padded = rewritePageHeaders(shard, (header) =>
      setField(header, 99, { type: CType.Binary, value: new Uint8Array(5000).fill(0x2a) }),
    );
    const pages = pagesOf(padded);
    expect(pages.every((p) => p.headerLength > 5000)).toBe(true);
    for (const p of pages) {
      const header = new CompactReader(padded, p.offset, p.offset + p.headerLength).readStruct();
      expect(header.map((f) => f.id)).toEqual([1, 2, 3, 4, 5, 99]);
    }
    checkLayout(padded);
    expect(await inMemory('x.parquet', padded)).toEqual({ pages: pages.length, checked: pages.length });
    const last = pages.at(-1) as PageInfo;
    const damaged = padded.slice();
    const at = last.offset + last.headerLength + 1;
    damaged[at] = (damaged[at] as number) ^ 0x40;
    await expectMismatch(damaged, last);
    // parquet-wasm skips the unknown field and decodes the same values.
    const [a, b] = await Promise.all([readWhole(writeTemp(shard)), readWhole(writeTemp(padded))]);
    expect(Buffer.from(b).equals(Buffer.from(a))).toBe(true);
  });

  it('reads only the requested columns and the row groups from the start row on', async () => {
    const bytes = encodeParquet(syntheticBatch(0, 300), { compression: 'none', rowGroupRows: 128 });
    const pages = pagesOf(bytes);
    const damaged = bytes.slice();
    // Damage a page of the first hook in row group 0 (rows 0..127).
    const hit = pages.find((p) => p.rowGroup === 0 && p.path.startsWith('blocks.0.')) as PageInfo;
    damaged[hit.offset + hit.headerLength + 5] =
      (damaged[hit.offset + hit.headerLength + 5] as number) ^ 0x10;
    const read = async (p: number, n: number) => damaged.subarray(p, Math.min(damaged.length, p + n));
    const check = (o: { columns?: string[]; fromRow?: number }) =>
      verifyPageChecksumsIn('x', damaged.length, read, o);
    await expect(check({})).rejects.toThrow(/row group 0/);
    await expect(check({ fromRow: 127 })).rejects.toThrow(/row group 0/);
    const later = pages.filter((p) => p.rowGroup > 0).length;
    expect(await check({ fromRow: 128 })).toEqual({ pages: later, checked: later });
    const other = pages.filter((p) => p.path.startsWith('blocks.1.')).length;
    expect(await check({ columns: ['blocks.1.hook_mlp_out'] })).toEqual({ pages: other, checked: other });
  });
});

describe('files pyarrow wrote with write_page_checksum=True', () => {
  for (const name of PYARROW) {
    it(`${name}: every page (dictionary and data) passes; the corrupt twin fails naming the page`, async () => {
      const path = join(FIXTURES, name);
      const bytes = u8(readFileSync(path));
      const pages = pagesOf(bytes);
      expect(pages.some((p) => readPageType(bytes, p) === 2)).toBe(true);
      expect(pages.every((p) => p.crc !== undefined)).toBe(true);
      expect(await verifyPageChecksums(path)).toEqual({ pages: pages.length, checked: pages.length });

      const corrupt = path.replace('.parquet', '-corrupt.parquet');
      const twin = u8(readFileSync(corrupt));
      const at = bytes.findIndex((b, i) => b !== twin[i]);
      const page = pages.find(
        (p) => p.offset + p.headerLength <= at && at < p.offset + p.headerLength + p.dataLength,
      );
      expect(page?.path).toBe(`${HOOK}.list.element`);
      expect(page?.rowGroup).toBe(1);
      await expect(verifyPageChecksums(corrupt)).rejects.toThrow(
        `${corrupt}: page checksum mismatch in row group 1, column ${page?.column} (${HOOK}.list.element), page at byte ${page?.offset}`,
      );
    });

    it(`${name}: the cache reader reads it exactly and refuses the corrupt twin`, async () => {
      const path = join(FIXTURES, name);
      const batch = concatActivationBatches(await collect(cacheReader({ path, batchRows: 100 })));
      expect(Array.from(hookMatrix(batch, HOOK))).toEqual(Array.from(formulaMatrix(0, 300, 8)));
      await expect(
        collect(cacheReader({ path: path.replace('.parquet', '-corrupt.parquet') })),
      ).rejects.toThrow(/page checksum mismatch in row group 1/);
    });
  }

  it('checksums added to pyarrow files written without them satisfy the same layout checks', async () => {
    const plain = readdirSync('test/fixtures/cache').filter((f) => f.endsWith('.parquet'));
    expect(plain.length).toBeGreaterThan(3);
    for (const f of plain) {
      const before = u8(readFileSync(join('test/fixtures/cache', f)));
      expect(await inMemory(f, before)).toMatchObject({ checked: 0 });
      const after = addPageChecksums(before);
      checkLayout(after);
      const pages = pagesOf(after);
      expect(await inMemory(f, after)).toEqual({ pages: pages.length, checked: pages.length });
      const [a, b] = await Promise.all([readWhole(writeTemp(before)), readWhole(writeTemp(after))]);
      expect(Buffer.from(b).equals(Buffer.from(a))).toBe(true);
    }
  });
});

async function readWhole(path: string): Promise<Uint8Array> {
  const source = await openParquet(path);
  try {
    const batches = [];
    for await (const b of source.batches({ batchSize: 1000 })) batches.push(b);
    return tableToIPC(new Table(source.schema, batches), 'stream');
  } finally {
    source.close();
  }
}

describe('damaged Thrift', () => {
  it('deep nesting, overlong varints and lengths past the end are ThriftErrors, not crashes', () => {
    // 100,000 nested lists of lists: recursion would overflow the stack without the depth bound.
    const deep = new Uint8Array(200_001).fill(0x19);
    deep[0] = 0x19; // field 1, list
    for (const bytes of [
      deep,
      new Uint8Array([0x15, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), // i32 varint that never ends
      new Uint8Array([0x18, 0x80, 0x80, 0x04]), // binary of 65536 bytes in a 4-byte buffer
      new Uint8Array([0x1d]), // unknown type 13
    ]) {
      expect(() => new CompactReader(bytes).readStruct()).toThrow(ThriftError);
    }
  });
});
