import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../src/pipeline/errors.js';
import {
  parseSafetensors,
  readSafetensors,
  readSafetensorsHeader,
  serializeSafetensors,
  tensorToFloat32,
  writeSafetensors,
} from '../src/io/safetensors.js';
import type { SafetensorsDtype, Tensor } from '../src/io/safetensors.js';
import { sha256File } from '../src/io/sha256.js';

const fixtures = fileURLToPath(new URL('./fixtures/safetensors/', import.meta.url));
const mixedPath = join(fixtures, 'mixed.safetensors');

interface ExpectedTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  bits?: number[];
  f32_bits?: number[];
  values?: Array<number | string>;
}

let dir: string;
let expected: { metadata: Record<string, string>; tensors: Record<string, ExpectedTensor> };

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'saeflow-safetensors-'));
  expected = JSON.parse(await readFile(join(fixtures, 'mixed.expected.json'), 'utf8'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function u32(a: Float32Array): number[] {
  return Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));
}

/** A file from a header (object or raw JSON text) and a data area, with the length prefix filled in. */
function buildFile(
  header: unknown,
  data: Uint8Array = new Uint8Array(0),
  lengthOverride?: bigint,
): Uint8Array {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, lengthOverride ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

async function writeTemp(name: string, bytes: Uint8Array): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, bytes);
  return path;
}

/** Checks the file-based and the in-memory reader reject a file with a UserError matching `pattern`. */
async function expectRejected(name: string, bytes: Uint8Array, pattern: RegExp): Promise<void> {
  const path = await writeTemp(name, bytes);
  const err = await readSafetensors(path).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(UserError);
  expect((err as Error).message).toContain(path);
  expect((err as Error).message).toMatch(pattern);
  expect(() => parseSafetensors(bytes, name)).toThrow(pattern);
  await expect(readSafetensorsHeader(path)).rejects.toThrow(pattern);
}

describe('reading a file written by torch', () => {
  it('returns the metadata and exactly the stored values of every dtype', async () => {
    const { metadata, tensors } = await readSafetensors(mixedPath);
    expect(metadata).toEqual(expected.metadata);
    expect([...tensors.keys()].sort()).toEqual(Object.keys(expected.tensors).sort());
    for (const [name, want] of Object.entries(expected.tensors)) {
      const t = tensors.get(name)!;
      expect({ name, dtype: t.dtype, shape: t.shape }).toEqual({
        name,
        dtype: want.dtype,
        shape: want.shape,
      });
      if (want.dtype === 'F32') expect(u32(t.data as Float32Array)).toEqual(want.bits);
      else if (want.dtype === 'F16' || want.dtype === 'BF16') {
        expect(t.data).toBeInstanceOf(Uint16Array);
        expect(Array.from(t.data as Uint16Array)).toEqual(want.bits);
        expect(u32(tensorToFloat32(t, name))).toEqual(want.f32_bits);
      } else if (want.dtype === 'I64') {
        expect(Array.from(t.data as BigInt64Array, String)).toEqual(want.values);
      } else {
        expect(Array.from(t.data as Int32Array, Number)).toEqual(want.values);
      }
    }
  });

  it('reads scalars as one element and empty tensors as zero elements', async () => {
    const { tensors } = await readSafetensors(mixedPath, { names: ['scalar', 'empty'] });
    expect(tensors.get('scalar')).toEqual({ dtype: 'F32', shape: [], data: Float32Array.of(42.5) });
    expect(tensors.get('empty')!.shape).toEqual([0, 3]);
    expect(tensors.get('empty')!.data.length).toBe(0);
  });

  it('reads only the requested tensors, in the requested order', async () => {
    const { tensors } = await readSafetensors(mixedPath, { names: ['i8', 'f32'] });
    expect([...tensors.keys()]).toEqual(['i8', 'f32']);
    expect(Array.from(tensors.get('i8')!.data as Int8Array)).toEqual([-128, 0, 127]);
  });

  it('names the missing tensor and what the file holds', async () => {
    const err = await readSafetensors(mixedPath, { names: ['f32', 'nope'] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(/mixed\.safetensors: tensor 'nope' not found \(file has: .*f32/);
  });

  it('reads the header alone', async () => {
    const header = await readSafetensorsHeader(mixedPath);
    const bytes = await readFile(mixedPath);
    expect(header.fileSize).toBe(bytes.length);
    expect(header.dataStart).toBe(8 + Number(bytes.readBigUInt64LE(0)));
    expect(header.dataStart % 8).toBe(0);
    expect(header.tensors.scalar).toEqual({ dtype: 'F32', shape: [], dataOffsets: expect.any(Array) });
    const [b, e] = header.tensors.f16!.dataOffsets;
    expect(e - b).toBe(16);
  });

  it('parses the same file from memory, even from an unaligned view', async () => {
    const file = await readFile(mixedPath);
    const shifted = new Uint8Array(file.length + 3);
    shifted.set(file, 3);
    const parsed = parseSafetensors(shifted.subarray(3), 'mixed');
    const read = await readSafetensors(mixedPath);
    expect(parsed.metadata).toEqual(read.metadata);
    expect(parsed.tensors).toEqual(read.tensors);
  });

  it('converts every dtype to float32', async () => {
    const { tensors } = await readSafetensors(mixedPath);
    const f32 = tensors.get('f32')!;
    expect(tensorToFloat32(f32)).toBe(f32.data); // no copy for F32
    expect(Array.from(tensorToFloat32(tensors.get('f64')!))).toEqual([Math.fround(0.1), -Infinity]);
    expect(Array.from(tensorToFloat32(tensors.get('i64')!))).toEqual([-(2 ** 62), 2 ** 53, 7]);
    expect(Array.from(tensorToFloat32(tensors.get('i32')!))).toEqual([-(2 ** 31), 2 ** 31]);
    expect(Array.from(tensorToFloat32(tensors.get('u8')!))).toEqual([0, 255]);
    expect(Array.from(tensorToFloat32(tensors.get('bool')!))).toEqual([1, 0, 1]);
    expect(() => tensorToFloat32({ dtype: 'F16', shape: [2], data: new Float32Array(2) }, 'W_enc')).toThrow(
      /'W_enc': dtype F16 needs its data in a Uint16Array, got Float32Array/,
    );
  });
});

describe('writing', () => {
  /** The fixture's tensors as a record in reverse order, so our writer must do the sorting itself. */
  function reversedRecord(tensors: Map<string, Tensor>): Record<string, Tensor> {
    const record: Record<string, Tensor> = {};
    for (const [name, t] of [...tensors].reverse()) record[name] = t;
    return record;
  }

  for (const file of ['numpy_written.safetensors', 'torch_no_metadata.safetensors']) {
    it(`reproduces ${file} byte for byte`, async () => {
      const original = new Uint8Array(await readFile(join(fixtures, file)));
      const { metadata, tensors } = parseSafetensors(original, file);
      const hasMetadata = Object.keys(metadata).length > 0;
      const record = reversedRecord(tensors);
      const bytes = serializeSafetensors(record, hasMetadata ? metadata : undefined);
      expect(Buffer.from(bytes).equals(Buffer.from(original))).toBe(true);
      const path = join(dir, `rewritten-${file}`);
      await writeSafetensors(path, record, hasMetadata ? metadata : undefined);
      expect(Buffer.from(await readFile(path)).equals(Buffer.from(original))).toBe(true);
    });
  }

  it('lays out a multi-key-metadata file like torch (same header up to metadata order, same data)', async () => {
    // The Rust writer keeps metadata in a hash map, so only the order of metadata keys may differ.
    const original = new Uint8Array(await readFile(mixedPath));
    const { metadata, tensors } = parseSafetensors(original, 'mixed');
    const ours = serializeSafetensors(reversedRecord(tensors), metadata);
    expect(ours.length).toBe(original.length);
    const headerOf = (b: Uint8Array) => {
      const n = Number(Buffer.from(b).readBigUInt64LE(0));
      return { n, text: Buffer.from(b.subarray(8, 8 + n)).toString('utf8') };
    };
    const a = headerOf(ours);
    const b = headerOf(original);
    expect(a.n).toBe(b.n);
    expect(Object.keys(JSON.parse(a.text))).toEqual(Object.keys(JSON.parse(b.text)));
    expect(JSON.parse(a.text)).toEqual(JSON.parse(b.text));
    expect(a.text.endsWith(' ') || a.text.endsWith('}')).toBe(true);
    expect(Buffer.from(ours.subarray(8 + a.n)).equals(Buffer.from(original.subarray(8 + b.n)))).toBe(true);
  });

  it('round-trips every dtype, scalars and empty tensors', async () => {
    const tensors: Record<string, Tensor> = {
      a: { dtype: 'F64', shape: [2], data: Float64Array.of(Math.PI, -0) },
      b: { dtype: 'F32', shape: [2, 2], data: Float32Array.of(1, 2, 3, 4) },
      c: { dtype: 'F16', shape: [3], data: Uint16Array.of(0x3c00, 0x7e00, 0x0001) },
      d: { dtype: 'BF16', shape: [1], data: Uint16Array.of(0x3f80) },
      e: { dtype: 'I64', shape: [2], data: BigInt64Array.of(-(2n ** 63n), 2n ** 63n - 1n) },
      f: { dtype: 'I32', shape: [], data: Int32Array.of(-5) },
      g: { dtype: 'I16', shape: [1], data: Int16Array.of(-300) },
      h: { dtype: 'I8', shape: [0, 5], data: new Int8Array(0) },
      i: { dtype: 'U8', shape: [1], data: Uint8Array.of(200) },
      j: { dtype: 'BOOL', shape: [2], data: Uint8Array.of(1, 0) },
    };
    const path = join(dir, 'all.safetensors');
    await writeSafetensors(path, tensors, { format: 'pt', 'saeflow.version': '1' });
    const { metadata, tensors: back } = await readSafetensors(path);
    expect(metadata).toEqual({ format: 'pt', 'saeflow.version': '1' });
    expect(Object.fromEntries(back)).toEqual(tensors);
    const header = await readSafetensorsHeader(path);
    expect(header.dataStart % 8).toBe(0);
    // Wider dtypes first keeps every tensor aligned to its element size within the data area.
    for (const info of Object.values(header.tensors)) {
      const size = info.dataOffsets[1] - info.dataOffsets[0];
      const count = info.shape.reduce((x, y) => x * y, 1);
      if (count > 0) expect(info.dataOffsets[0] % (size / count)).toBe(0);
    }
    expect(await sha256File(path)).toMatch(/^[0-9a-f]{64}$/);
  });

  it('writes an empty file that Python writes too', () => {
    // safetensors.numpy.save({}) == b'\x08\0\0\0\0\0\0\0{}      '
    expect(Buffer.from(serializeSafetensors({})).toString('latin1')).toBe('\x08\0\0\0\0\0\0\0{}      ');
    expect(parseSafetensors(serializeSafetensors({})).tensors.size).toBe(0);
  });

  it('refuses inconsistent tensors, naming them', () => {
    const bad = (t: Tensor) => () => serializeSafetensors({ 'blocks.0.W': t });
    expect(bad({ dtype: 'F32', shape: [3], data: new Float32Array(2) })).toThrow(
      /tensor 'blocks\.0\.W': shape \[3\] has 3 elements but the data has 2/,
    );
    expect(bad({ dtype: 'BF16', shape: [2], data: new Float32Array(2) })).toThrow(
      /needs its data in a Uint16Array/,
    );
    expect(bad({ dtype: 'F32', shape: [-1], data: new Float32Array(0) })).toThrow(/non-negative integers/);
    expect(bad({ dtype: 'U32' as SafetensorsDtype, shape: [1], data: new Uint8Array(4) })).toThrow(
      /unsupported dtype 'U32'/,
    );
    expect(() =>
      serializeSafetensors({ __metadata__: { dtype: 'U8', shape: [0], data: new Uint8Array(0) } }),
    ).toThrow(UserError);
    expect(() => serializeSafetensors({}, { a: 1 as unknown as string })).toThrow(
      /metadata 'a' must be a string/,
    );
  });

  it('leaves no temp file behind, on success or failure', async () => {
    const sub = await mkdtemp(join(dir, 'atomic-'));
    const t: Tensor = { dtype: 'F32', shape: [1], data: Float32Array.of(1) };
    await writeSafetensors(join(sub, 'ok.safetensors'), { t });
    await expect(writeSafetensors(join(sub, 'missing-dir', 'x.safetensors'), { t })).rejects.toThrow();
    await expect(
      writeSafetensors(join(sub, 'bad.safetensors'), { t: { ...t, data: new Float32Array(2) } }),
    ).rejects.toThrow(UserError);
    expect(await readdir(sub)).toEqual(['ok.safetensors']);
  });
});

describe('corrupt or hostile files', () => {
  const f32 = (n: number) => new Uint8Array(new Float32Array(n).buffer);

  it('refuses a file shorter than the length prefix', async () => {
    await expectRejected('tiny.safetensors', Uint8Array.of(1, 2, 3), /3 bytes, shorter than the 8-byte/);
    await expectRejected('zero.safetensors', new Uint8Array(0), /0 bytes/);
  });

  it('refuses a header length past the end of the file', async () => {
    const file = buildFile({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, f32(1), 500n);
    await expectRejected('past-eof.safetensors', file, /header length 500 runs past the end of the file/);
  });

  it('refuses a huge header length before allocating it', async () => {
    await expectRejected(
      'huge.safetensors',
      buildFile('{}', undefined, 2n ** 63n),
      /exceeds the 100000000-byte limit/,
    );
  });

  it('refuses a truncated file, naming the tensor cut off', async () => {
    const file = new Uint8Array(await readFile(mixedPath));
    const header = await readSafetensorsHeader(mixedPath);
    const [name, last] = Object.entries(header.tensors).sort(
      (x, y) => y[1].dataOffsets[1] - x[1].dataOffsets[1],
    )[0]!;
    const cut = file.subarray(0, file.length - 2);
    await expectRejected(
      'truncated.safetensors',
      cut,
      new RegExp(
        `tensor '${name.replace('.', '\\.')}': data_offsets \\[${last.dataOffsets[0]}, ${last.dataOffsets[1]}\\] run past the end`,
      ),
    );
    await expectRejected(
      'truncated-header.safetensors',
      file.subarray(0, 40),
      /runs past the end of the file/,
    );
  });

  it('refuses bad JSON, a non-object header and invalid UTF-8', async () => {
    await expectRejected('bad-json.safetensors', buildFile('{"a": {"dtype": '), /header is not valid JSON/);
    await expectRejected('array.safetensors', buildFile('[1,2]'), /header must be a JSON object/);
    const invalidUtf8 = buildFile('{"a":1}');
    invalidUtf8[10] = 0xff;
    await expectRejected('utf8.safetensors', invalidUtf8, /not valid UTF-8/);
  });

  it('refuses an unknown dtype, naming the tensor', async () => {
    const file = buildFile(
      { 'h.0.w': { dtype: 'F8_E4M3', shape: [4], data_offsets: [0, 4] } },
      new Uint8Array(4),
    );
    await expectRejected('dtype.safetensors', file, /tensor 'h\.0\.w': unsupported dtype "F8_E4M3"/);
  });

  it('refuses offsets outside the data area and reversed offsets', async () => {
    const outside = buildFile({ w: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, f32(2));
    await expectRejected(
      'outside.safetensors',
      outside,
      /tensor 'w': data_offsets \[4, 12\] run past the end of the data area \(8 bytes/,
    );
    const reversed = buildFile({ w: { dtype: 'F32', shape: [0], data_offsets: [8, 4] } }, f32(2));
    await expectRejected('reversed.safetensors', reversed, /tensor 'w': data_offsets must be \[begin, end\]/);
    const negative = buildFile({ w: { dtype: 'F32', shape: [1], data_offsets: [-4, 0] } }, f32(2));
    await expectRejected('negative.safetensors', negative, /tensor 'w': data_offsets must be/);
  });

  it('refuses a shape that does not match the byte length', async () => {
    const file = buildFile({ W_enc: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 16] } }, f32(4));
    await expectRejected(
      'shape.safetensors',
      file,
      /tensor 'W_enc': shape \[2, 3\] of F32 needs 24 bytes but data_offsets \[0, 16\] hold 16/,
    );
    const bad = buildFile({ W: { dtype: 'F32', shape: [1.5], data_offsets: [0, 4] } }, f32(1));
    await expectRejected(
      'frac.safetensors',
      bad,
      /tensor 'W': shape must be a list of non-negative integers/,
    );
    const overflow = buildFile(
      { W: { dtype: 'F32', shape: [2 ** 40, 2 ** 40], data_offsets: [0, 4] } },
      f32(1),
    );
    await expectRejected('overflow.safetensors', overflow, /tensor 'W': shape/);
  });

  it('refuses overlapping tensors', async () => {
    const file = buildFile(
      {
        a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
        b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
      },
      f32(3),
    );
    await expectRejected(
      'overlap.safetensors',
      file,
      /tensor 'b' \(bytes 4\.\.12\) overlaps tensor 'a' \(bytes 0\.\.8\)/,
    );
  });

  it('refuses malformed metadata and entries', async () => {
    await expectRejected(
      'meta.safetensors',
      buildFile({ __metadata__: { n: 3 } }),
      /__metadata__ entry 'n' must be a string/,
    );
    await expectRejected('entry.safetensors', buildFile({ w: [1] }), /tensor 'w': entry must be an object/);
  });

  it('treats a tensor named __proto__ as data, not as a prototype', () => {
    const bytes = buildFile(
      '{"__proto__":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}',
      Uint8Array.of(7),
    );
    const { tensors } = parseSafetensors(bytes);
    expect(Array.from(tensors.get('__proto__')!.data as Uint8Array)).toEqual([7]);
  });

  it('reports a missing file and a directory as user errors', async () => {
    await expect(readSafetensors(join(dir, 'absent.safetensors'))).rejects.toThrow(
      /safetensors file not found: .*absent/,
    );
    await expect(readSafetensors(dir)).rejects.toThrow(UserError);
  });
});
