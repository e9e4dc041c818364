import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  bfloat16ToFloat32,
  float16ToFloat32,
  float32ToBfloat16,
  float32ToFloat16,
} from '../src/io/float16.js';
import { readSafetensors } from '../src/io/safetensors.js';
import type { Tensor } from '../src/io/safetensors.js';

const fixture = fileURLToPath(new URL('./fixtures/safetensors/conversions.safetensors', import.meta.url));

let ref: Map<string, Tensor>;
beforeAll(async () => {
  ref = (await readSafetensors(fixture)).tensors;
});

function allHalfBits(): Uint16Array {
  const bits = new Uint16Array(65536);
  for (let i = 0; i < bits.length; i++) bits[i] = i;
  return bits;
}

function u32(values: Float32Array): Uint32Array {
  return new Uint32Array(values.buffer, values.byteOffset, values.length);
}

const isNanBits32 = (b: number) => (b & 0x7fffffff) > 0x7f800000;
const isNanBits16 = (b: number) => (b & 0x7fff) > 0x7c00;
const isNanBitsBf16 = (b: number) => (b & 0x7fff) > 0x7f80;

describe('float16ToFloat32', () => {
  it('matches numpy bit for bit on all 65,536 float16 values, NaN payloads included', () => {
    const expected = ref.get('f16_all_as_f32')!.data as Float32Array;
    const got = float16ToFloat32(allHalfBits());
    const mismatches: number[] = [];
    const g = u32(got);
    const e = u32(expected);
    for (let i = 0; i < 65536; i++) if (g[i] !== e[i]) mismatches.push(i);
    expect(mismatches).toEqual([]);
  });

  it('gives known values for subnormals, limits and specials', () => {
    const got = float16ToFloat32(
      Uint16Array.of(0x0001, 0x03ff, 0x0400, 0x7bff, 0x7c00, 0xfc00, 0x8000, 0x3c00),
    );
    expect(Array.from(got)).toEqual([2 ** -24, 1023 * 2 ** -24, 2 ** -14, 65504, Infinity, -Infinity, -0, 1]);
    expect(Object.is(got[6], -0)).toBe(true);
    expect(Number.isNaN(float16ToFloat32(Uint16Array.of(0x7e00))[0])).toBe(true);
  });
});

describe('float32ToFloat16', () => {
  it('rounds like numpy (nearest, ties to even, overflow to infinity) on edge, tie and random inputs', () => {
    const inputs = ref.get('f32_inputs')!.data as Float32Array;
    const expected = ref.get('f16_from_f32')!.data as Uint16Array;
    const got = float32ToFloat16(inputs);
    const inBits = u32(inputs);
    const mismatches: string[] = [];
    for (let i = 0; i < inputs.length; i++) {
      const ok = isNanBits32(inBits[i]!) ? isNanBits16(got[i]!) : got[i] === expected[i];
      if (!ok)
        mismatches.push(`${inputs[i]} (0x${inBits[i]!.toString(16)}): got ${got[i]}, numpy ${expected[i]}`);
    }
    expect(mismatches).toEqual([]);
    expect(inputs.length).toBeGreaterThan(4000);
  });

  it('round-trips every non-NaN float16 exactly', () => {
    const bits = allHalfBits();
    const back = float32ToFloat16(float16ToFloat32(bits));
    for (let i = 0; i < 65536; i++) {
      if (isNanBits16(i)) expect(isNanBits16(back[i]!)).toBe(true);
      else if (back[i] !== i) expect(back[i]).toBe(i);
    }
  });

  it('handles the boundaries explicitly', () => {
    const got = float32ToFloat16(
      Float32Array.of(65504, 65519, 65520, 1e9, 2 ** -25, 3 * 2 ** -26, 3 * 2 ** -25, 2 ** -24, -0),
    );
    expect(Array.from(got)).toEqual([0x7bff, 0x7bff, 0x7c00, 0x7c00, 0x0000, 0x0001, 0x0002, 0x0001, 0x8000]);
  });

  it('keeps a NaN whose payload lives only in the low bits a NaN', () => {
    const nan = new Float32Array(new Uint32Array([0x7f800001, 0xffc00001]).buffer);
    const got = float32ToFloat16(nan);
    expect(isNanBits16(got[0]!)).toBe(true);
    expect(isNanBits16(got[1]!)).toBe(true);
    expect(got[1]! & 0x8000).toBe(0x8000);
  });
});

describe('bfloat16', () => {
  it('widens by shifting into the top half', () => {
    const got = u32(bfloat16ToFloat32(allHalfBits()));
    for (let i = 0; i < 65536; i++) if (got[i] !== (i << 16) >>> 0) expect(got[i]).toBe((i << 16) >>> 0);
  });

  it('rounds like torch (nearest, ties to even) and keeps NaN', () => {
    const inputs = ref.get('f32_inputs')!.data as Float32Array;
    const expected = ref.get('bf16_from_f32')!.data as Uint16Array;
    const got = float32ToBfloat16(inputs);
    const inBits = u32(inputs);
    const mismatches: string[] = [];
    for (let i = 0; i < inputs.length; i++) {
      const ok = isNanBits32(inBits[i]!) ? isNanBitsBf16(got[i]!) : got[i] === expected[i];
      if (!ok) mismatches.push(`0x${inBits[i]!.toString(16)}: got ${got[i]}, torch ${expected[i]}`);
    }
    expect(mismatches).toEqual([]);
    const lowNan = new Float32Array(new Uint32Array([0x7f800001]).buffer);
    expect(isNanBitsBf16(float32ToBfloat16(lowNan)[0]!)).toBe(true);
  });

  it('round-trips every non-NaN bfloat16 exactly', () => {
    const bits = allHalfBits();
    const back = float32ToBfloat16(bfloat16ToFloat32(bits));
    for (let i = 0; i < 65536; i++) {
      if (isNanBitsBf16(i)) expect(isNanBitsBf16(back[i]!)).toBe(true);
      else if (back[i] !== i) expect(back[i]).toBe(i);
    }
  });
});

describe('out parameters', () => {
  it('writes into a provided array and returns it', () => {
    const out = new Float32Array(3);
    expect(float16ToFloat32(Uint16Array.of(0x3c00, 0x4000), out)).toBe(out);
    expect(Array.from(out)).toEqual([1, 2, 0]);
    const half = new Uint16Array(2);
    expect(float32ToFloat16(Float32Array.of(1, 2), half)).toBe(half);
    expect(Array.from(half)).toEqual([0x3c00, 0x4000]);
    const viewed = new Float32Array(new ArrayBuffer(16), 4, 2);
    bfloat16ToFloat32(Uint16Array.of(0x3f80, 0xc000), viewed);
    expect(Array.from(viewed)).toEqual([1, -2]);
  });

  it('refuses an output that is too short', () => {
    expect(() => float16ToFloat32(new Uint16Array(4), new Float32Array(3))).toThrow(RangeError);
    expect(() => float32ToBfloat16(new Float32Array(4), new Uint16Array(2))).toThrow(/output has 2 elements/);
  });
});
