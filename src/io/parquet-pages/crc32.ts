import * as zlib from 'node:zlib';

/**
 * CRC-32 as Parquet's page checksums define it: the zlib/gzip polynomial (0x04C11DB7, reflected
 * 0xEDB88320), initial value and final xor 0xFFFFFFFF. Returns the unsigned value.
 *
 * zlib.crc32 (Node 20.15 / 22.2) runs zlib's vectorised code at several GB/s; package.json allows Node 20.6,
 * where it is missing, so a table-driven fallback computes the same function.
 */
export const crc32: (data: Uint8Array) => number =
  typeof (zlib as { crc32?: unknown }).crc32 === 'function' ? (data) => zlib.crc32(data) >>> 0 : crc32Table;

let table: Uint32Array | undefined;

function makeTable(): Uint32Array {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
}

/** The portable implementation; exported so the tests can hold it to zlib's. */
export function crc32Table(data: Uint8Array): number {
  table ??= makeTable();
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = (table[(c ^ (data[i] as number)) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
