import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tensorToFloat32 } from '../src/io/safetensors.js';
import { UserError } from '../src/pipeline/errors.js';
import { crc32, listNpz, parseNpy, readNpz } from '../src/sae-formats/index.js';
import { crc32Js } from '../src/sae-formats/zip.js';
import { fixture } from './sae-formats-helpers.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'saeflow-npz-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A .npy file: version 1 header padded to 64 bytes, as numpy writes it. */
function npy(header: string, data: Uint8Array, version = 1): Uint8Array {
  const prefix = version === 1 ? 10 : 12;
  let text = `${header}`;
  const total = Math.ceil((prefix + text.length + 1) / 64) * 64;
  text = text.padEnd(total - prefix - 1, ' ') + '\n';
  const out = new Uint8Array(total + data.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, version, 0]);
  const dv = new DataView(out.buffer);
  if (version === 1) dv.setUint16(8, text.length, true);
  else dv.setUint32(8, text.length, true);
  out.set(Buffer.from(text, 'latin1'), prefix);
  out.set(data, total);
  return out;
}

const f32bytes = (values: number[]) => new Uint8Array(Float32Array.from(values).buffer);

/**
 * A zip of `members` (stored or deflated), with a correct central directory. `zip64` writes the directory
 * the way large archives have it: sizes and offsets as 0xFFFFFFFF with the real values in a zip64 extra
 * field, and a zip64 end record found through its locator.
 */
function zip(
  members: Array<{ name: string; data: Uint8Array; deflate?: boolean }>,
  zip64 = false,
): Uint8Array {
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const m of members) {
    const body = m.deflate ? new Uint8Array(deflateRawSync(m.data)) : m.data;
    const name = Buffer.from(m.name);
    const crc = crc32(m.data);
    const local = new Uint8Array(30 + name.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(8, m.deflate ? 8 : 0, true);
    lv.setUint32(14, crc, true);
    lv.setUint32(18, body.length, true);
    lv.setUint32(22, m.data.length, true);
    lv.setUint16(26, name.length, true);
    local.set(name, 30);
    const extra = zip64 ? 4 + 24 : 0;
    const entry = new Uint8Array(46 + name.length + extra);
    const cv = new DataView(entry.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(10, m.deflate ? 8 : 0, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, zip64 ? 0xffffffff : body.length, true);
    cv.setUint32(24, zip64 ? 0xffffffff : m.data.length, true);
    cv.setUint16(28, name.length, true);
    cv.setUint16(30, extra, true);
    cv.setUint32(42, zip64 ? 0xffffffff : offset, true);
    entry.set(name, 46);
    if (zip64) {
      const x = 46 + name.length;
      cv.setUint16(x, 0x0001, true);
      cv.setUint16(x + 2, 24, true);
      // Order: uncompressed size, compressed size, local header offset.
      cv.setBigUint64(x + 4, BigInt(m.data.length), true);
      cv.setBigUint64(x + 12, BigInt(body.length), true);
      cv.setBigUint64(x + 20, BigInt(offset), true);
    }
    parts.push(local, body);
    central.push(entry);
    offset += local.length + body.length;
  }
  const cdSize = central.reduce((a, c) => a + c.length, 0);
  const tail: Uint8Array[] = [];
  if (zip64) {
    const record = new Uint8Array(56);
    const rv = new DataView(record.buffer);
    rv.setUint32(0, 0x06064b50, true);
    rv.setBigUint64(4, 44n, true);
    rv.setBigUint64(24, BigInt(members.length), true);
    rv.setBigUint64(32, BigInt(members.length), true);
    rv.setBigUint64(40, BigInt(cdSize), true);
    rv.setBigUint64(48, BigInt(offset), true);
    const locator = new Uint8Array(20);
    const lv = new DataView(locator.buffer);
    lv.setUint32(0, 0x07064b50, true);
    lv.setBigUint64(8, BigInt(offset + cdSize), true);
    lv.setUint32(16, 1, true);
    tail.push(record, locator);
  }
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, zip64 ? 0xffff : members.length, true);
  ev.setUint16(10, zip64 ? 0xffff : members.length, true);
  ev.setUint32(12, zip64 ? 0xffffffff : cdSize, true);
  ev.setUint32(16, zip64 ? 0xffffffff : offset, true);
  return Buffer.concat([...parts, ...central, ...tail, end]);
}

async function file(name: string, bytes: Uint8Array): Promise<string> {
  const p = path.join(tmp, name);
  await writeFile(p, bytes);
  return p;
}

function userError(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(UserError);
    return (e as Error).message;
  }
  throw new Error('expected a UserError');
}

describe('.npy', () => {
  it('reads float16/32/64, both byte orders, and Fortran order of any rank', () => {
    const a = parseNpy(
      npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f32bytes([1, 2, 3, 4, 5, 6])),
      'a',
    );
    expect(a).toMatchObject({ dtype: 'F32', shape: [2, 3] });
    expect(Array.from(a.data as Float32Array)).toEqual([1, 2, 3, 4, 5, 6]);

    // Fortran order stores the first index fastest: [[1, 2, 3], [4, 5, 6]] is 1 4 2 5 3 6.
    const f = parseNpy(
      npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", f32bytes([1, 4, 2, 5, 3, 6])),
      'f',
    );
    expect(Array.from(f.data as Float32Array)).toEqual([1, 2, 3, 4, 5, 6]);
    // Rank 3: element [i, j, k] = 100 i + 10 j + k, laid out with i fastest.
    const values: number[] = [];
    for (let k = 0; k < 4; k++)
      for (let j = 0; j < 3; j++) for (let i = 0; i < 2; i++) values.push(100 * i + 10 * j + k);
    const f3 = parseNpy(
      npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3, 4), }", f32bytes(values)),
      'f3',
    );
    const c: number[] = [];
    for (let i = 0; i < 2; i++)
      for (let j = 0; j < 3; j++) for (let k = 0; k < 4; k++) c.push(100 * i + 10 * j + k);
    expect(Array.from(f3.data as Float32Array)).toEqual(c);

    const d = parseNpy(
      npy(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }",
        new Uint8Array(Float64Array.from([0.1, -2]).buffer),
      ),
      'd',
    );
    expect(d.dtype).toBe('F64');
    expect(Array.from(tensorToFloat32(d))).toEqual([Math.fround(0.1), -2]);

    const half = parseNpy(
      npy(
        "{'descr': '<f2', 'fortran_order': False, 'shape': (3,), }",
        new Uint8Array(Uint16Array.from([0x3c00, 0xc000, 0x3800]).buffer),
      ),
      'h',
    );
    expect(Array.from(tensorToFloat32(half))).toEqual([1, -2, 0.5]);

    const big = new Uint8Array(8);
    new DataView(big.buffer).setFloat32(0, 1.5, false);
    new DataView(big.buffer).setFloat32(4, -3, false);
    const be = parseNpy(npy("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", big, 2), 'be');
    expect(Array.from(be.data as Float32Array)).toEqual([1.5, -3]);

    const scalar = parseNpy(
      npy("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", f32bytes([7])),
      's',
    );
    expect(scalar.shape).toEqual([]);
  });

  it('refuses object arrays, other dtypes, bad headers and sizes that do not match the data', () => {
    expect(
      userError(() =>
        parseNpy(
          npy("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", new Uint8Array(16)),
          'x.npy',
        ),
      ),
    ).toMatch(/x\.npy: dtype '\|O' is an object array, which would need unpickling; refused/);
    expect(
      userError(() =>
        parseNpy(
          npy("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", new Uint8Array(8)),
          'x.npy',
        ),
      ),
    ).toMatch(/dtype '<i4' is not supported/);
    expect(
      userError(() =>
        parseNpy(
          npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", new Uint8Array(4)),
          'x',
        ),
      ),
    ).toMatch(/structured arrays/);
    expect(
      userError(() =>
        parseNpy(
          npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f32bytes([1, 2, 3])),
          'x.npy',
        ),
      ),
    ).toMatch(/x\.npy: shape \[2, 3\] of float32 needs 24 data bytes, the array has 12 \(truncated\?\)/);
    expect(userError(() => parseNpy(npy("{'descr': '<f4', 'shape': (1,), }", f32bytes([1])), 'x'))).toMatch(
      /lacks 'fortran_order'/,
    );
    expect(
      userError(() =>
        parseNpy(
          npy("{'descr': '<f4', 'fortran_order': False, 'shape': (__import__('os'),), }", f32bytes([1])),
          'x',
        ),
      ),
    ).toMatch(/malformed \.npy header/);
    expect(userError(() => parseNpy(Buffer.from('not numpy at all'), 'x'))).toMatch(/bad magic/);
  });
});

describe('.npz', () => {
  it("reads numpy's own archives, stored and deflated", async () => {
    const stored = fixture('gemma-scope-2b-pt-res', 'layer_3', 'width_16k', 'average_l0_5', 'params.npz');
    expect(await listNpz(stored)).toEqual(['W_enc', 'b_enc', 'W_dec', 'b_dec', 'threshold']);
    const compressed = await readNpz(
      fixture('gemma-scope-2b-pt-mlp', 'layer_0', 'width_16k', 'average_l0_7', 'params.npz'),
    );
    expect([...compressed].map(([n, t]) => [n, t.dtype, t.shape])).toEqual([
      ['W_enc', 'F32', [16, 32]],
      ['W_dec', 'F16', [32, 16]],
      ['b_enc', 'F32', [32]],
      ['b_dec', 'F32', [16]],
      ['threshold', 'F64', [32]],
    ]);
  });

  it('reads hand-made archives and checks every member', async () => {
    const a = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", f32bytes([1, 2, 3]));
    const b = npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", f32bytes([1, 3, 2, 4]));
    const p = await file(
      'ok.npz',
      zip([
        { name: 'a.npy', data: a },
        { name: 'b.npy', data: b, deflate: true },
      ]),
    );
    const got = await readNpz(p);
    expect(Array.from(got.get('a')!.data as Float32Array)).toEqual([1, 2, 3]);
    expect(Array.from(got.get('b')!.data as Float32Array)).toEqual([1, 2, 3, 4]);
    const big = await readNpz(
      await file(
        'zip64.npz',
        zip(
          [
            { name: 'a.npy', data: a },
            { name: 'b.npy', data: b, deflate: true },
          ],
          true,
        ),
      ),
    );
    expect(Array.from(big.get('b')!.data as Float32Array)).toEqual([1, 2, 3, 4]);
    expect(Array.from(big.get('a')!.data as Float32Array)).toEqual([1, 2, 3]);
    await expect(readNpz(p, { names: ['a', 'c'] })).rejects.toThrow(
      /ok\.npz: array 'c' not found \(archive has: a, b\)/,
    );

    const pickled = await file(
      'obj.npz',
      zip([
        {
          name: 'w.npy',
          data: npy("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", new Uint8Array(8)),
        },
      ]),
    );
    await expect(readNpz(pickled)).rejects.toThrow(/obj\.npz: array 'w': dtype '\|O' is an object array/);

    const bad = zip([{ name: 'a.npy', data: a, deflate: true }]);
    const corrupt = Buffer.from(bad);
    corrupt[40]! ^= 0x55;
    await expect(readNpz(await file('corrupt.npz', corrupt))).rejects.toThrow(
      /corrupt\.npz: member 'a\.npy': (deflate data is corrupt|CRC-32 mismatch|inflated)/,
    );
    await expect(readNpz(await file('short.npz', bad.subarray(0, bad.length - 30)))).rejects.toThrow(
      /short\.npz: no zip end-of-central-directory record found/,
    );
    await expect(readNpz(await file('tiny.npz', new Uint8Array(5)))).rejects.toThrow(
      /too short for a zip archive/,
    );
    // A central directory that points past the end of the file (a file cut in the middle of a member).
    const cut = Buffer.concat([bad.subarray(0, 20), bad.subarray(bad.length - 22 - (46 + 5))]);
    await expect(readNpz(await file('cut.npz', cut))).rejects.toThrow(
      /cut\.npz: .*(beyond the end|truncated|malformed)/,
    );
    await expect(readNpz(path.join(tmp, 'missing.npz'))).rejects.toThrow(/file not found: .*missing\.npz/);
  });

  it('crc32 (native, and the fallback for Nodes without zlib.crc32) matches the standard check value', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    expect(crc32Js(Buffer.from('123456789'))).toBe(0xcbf43926);
    const random = Uint8Array.from({ length: 1000 }, (_, i) => (i * 7919) % 251);
    expect(crc32Js(random)).toBe(crc32(random));
  });
});
