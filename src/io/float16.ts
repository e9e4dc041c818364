/**
 * IEEE 754 binary16 (float16) and bfloat16 conversions to and from float32.
 *
 * Node 20 has no Float16Array, so half-precision tensors travel as their raw bits in a Uint16Array.
 * All functions work on bit patterns through Uint32Array views of the float32 side, so NaN payloads,
 * signed zeros and subnormals survive exactly where the target format can hold them.
 */

/** float32 bit patterns of all 65,536 float16 values, built on first use (256 KiB). */
let halfToFloatBits: Uint32Array | undefined;

function halfTable(): Uint32Array {
  if (halfToFloatBits) return halfToFloatBits;
  const table = new Uint32Array(65536);
  const scratch = new Float32Array(1);
  const scratchBits = new Uint32Array(scratch.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exponent = (h >>> 10) & 0x1f;
    const mantissa = h & 0x3ff;
    if (exponent === 0) {
      // Zero or subnormal: mantissa * 2^-24 is exact in float32 (at most 10 significant bits).
      scratch[0] = mantissa * 2 ** -24;
      table[h] = (sign | scratchBits[0]!) >>> 0;
    } else if (exponent === 0x1f) {
      // Infinity or NaN; the payload moves to the top of the float32 mantissa, as hardware does.
      table[h] = (sign | 0x7f800000 | (mantissa << 13)) >>> 0;
    } else {
      table[h] = (sign | ((exponent + 112) << 23) | (mantissa << 13)) >>> 0;
    }
  }
  halfToFloatBits = table;
  return table;
}

function checkOut(kind: string, inputLength: number, outLength: number): void {
  if (outLength < inputLength) {
    throw new RangeError(`${kind}: output has ${outLength} elements, input has ${inputLength}`);
  }
}

function bitsOf(values: Float32Array): Uint32Array {
  return new Uint32Array(values.buffer, values.byteOffset, values.length);
}

/** Exact float16 -> float32 widening (every float16 value, subnormals, infinities and NaNs included). */
export function float16ToFloat32(bits: Uint16Array, out?: Float32Array): Float32Array {
  const result = out ?? new Float32Array(bits.length);
  checkOut('float16ToFloat32', bits.length, result.length);
  const table = halfTable();
  const target = bitsOf(result);
  for (let i = 0; i < bits.length; i++) target[i] = table[bits[i]!]!;
  return result;
}

/** float32 bits -> float16 bits, rounding to nearest with ties to even; magnitudes from 65520 up become infinity. */
function halfBitsOf(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const abs = x & 0x7fffffff;
  if (abs >= 0x7f800000) {
    if (abs === 0x7f800000) return sign | 0x7c00;
    // NaN: keep the top payload bits and force the quiet bit so the result cannot collapse to infinity.
    return sign | 0x7e00 | ((abs >>> 13) & 0x3ff);
  }
  // 65520 is halfway between 65504 (odd mantissa) and 65536: ties-to-even goes up, to infinity.
  if (abs >= 0x477ff000) return sign | 0x7c00;
  if (abs >= 0x38800000) {
    // Normal float16: rebias the exponent (127 -> 15) and round away the low 13 mantissa bits.
    let h = (abs >>> 13) - (112 << 10);
    const rest = abs & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++;
    return sign | h;
  }
  // At most 2^-25 (half the smallest subnormal): ties-to-even gives zero.
  if (abs <= 0x33000000) return sign;
  // Subnormal float16: the value in units of 2^-24 is the full float32 significand shifted right.
  const exponent = abs >>> 23;
  const significand = (abs & 0x7fffff) | 0x800000;
  const shift = 126 - exponent;
  let h = significand >>> shift;
  const rest = significand & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (rest > half || (rest === half && (h & 1) === 1)) h++;
  // A carry out of the subnormal range lands exactly on the smallest normal (0x0400), which is correct.
  return sign | h;
}

/** float32 -> float16 with round-to-nearest-even; overflow gives infinity, NaN stays NaN. */
export function float32ToFloat16(values: Float32Array, out?: Uint16Array): Uint16Array {
  const result = out ?? new Uint16Array(values.length);
  checkOut('float32ToFloat16', values.length, result.length);
  const source = bitsOf(values);
  for (let i = 0; i < source.length; i++) result[i] = halfBitsOf(source[i]!);
  return result;
}

/** bfloat16 is the top half of a float32, so widening is a shift. */
export function bfloat16ToFloat32(bits: Uint16Array, out?: Float32Array): Float32Array {
  const result = out ?? new Float32Array(bits.length);
  checkOut('bfloat16ToFloat32', bits.length, result.length);
  const target = bitsOf(result);
  for (let i = 0; i < bits.length; i++) target[i] = bits[i]! << 16;
  return result;
}

/** float32 -> bfloat16 with round-to-nearest-even; overflow gives infinity, NaN stays NaN (quiet). */
export function float32ToBfloat16(values: Float32Array, out?: Uint16Array): Uint16Array {
  const result = out ?? new Uint16Array(values.length);
  checkOut('float32ToBfloat16', values.length, result.length);
  const source = bitsOf(values);
  for (let i = 0; i < source.length; i++) {
    const x = source[i]!;
    if ((x & 0x7fffffff) > 0x7f800000) {
      // Truncating could clear every payload bit left in the top half and turn NaN into infinity.
      result[i] = (x >>> 16) | 0x0040;
    } else {
      // Adding 0x7fff (+1 when the kept lsb is odd) carries into the kept half exactly when rounding up.
      // The sum stays below 2^32 for every non-NaN input, so `>>> 16` cannot wrap.
      result[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
    }
  }
  return result;
}
