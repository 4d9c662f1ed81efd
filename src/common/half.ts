// IEEE half (f16) and bfloat16 conversions, shared by the safetensors loader and GPU weight uploads.
// Round-to-nearest-even everywhere, subnormals and NaN kept (numpy's algorithms).

let f16ToF32Table: Float32Array | undefined;

/** All 65536 half-precision values as f32 (256 KB, built once): conversion becomes a lookup. */
function halfTable(): Float32Array {
  if (f16ToF32Table) return f16ToF32Table;
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) table[h] = sign * frac * 2 ** -24;
    else if (exp === 31) table[h] = frac ? NaN : sign * Infinity;
    else table[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return (f16ToF32Table = table);
}

export function f16BitsToF32(bits: Uint16Array): Float32Array {
  const table = halfTable();
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]!]!;
  return out;
}

/** Round-to-nearest-even f32 -> f16 bits, with subnormals, overflow to inf and NaN kept (numpy's algorithm). */
export function f32BitsToF16Bits(f: number): number {
  const sign = (f >>> 16) & 0x8000;
  const exp = f & 0x7f800000;
  if (exp >= 0x47800000) {
    if (exp === 0x7f800000 && (f & 0x7fffff) !== 0) return sign | 0x7e00 | ((f & 0x7fffff) >>> 13);
    return sign | 0x7c00;
  }
  if (exp <= 0x38000000) {
    if (exp < 0x33000000) return sign;
    const e = exp >>> 23;
    let sig = (0x800000 + (f & 0x7fffff)) >>> (113 - e);
    // Round half to even; bits shifted out above also count toward "more than half".
    if ((sig & 0x3fff) !== 0x1000 || (f & 0x7ff) !== 0) sig += 0x1000;
    return sign + (sig >>> 13);
  }
  let sig = f & 0x7fffff;
  if ((sig & 0x3fff) !== 0x1000) sig += 0x1000;
  return sign + ((exp - 0x38000000) >>> 13) + (sig >>> 13);
}

export function f32ToF16Bits(values: Float32Array): Uint16Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < bits.length; i++) out[i] = f32BitsToF16Bits(bits[i]!);
  return out;
}

/** Round-to-nearest-even f32 -> bf16 bits (NaN stays NaN). */
export function f32ToBf16Bits(values: Float32Array): Uint16Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i]!;
    out[i] = (b & 0x7fffffff) > 0x7f800000 ? (b >>> 16) | 0x40 : (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return out;
}

export function bf16BitsToF32(bits: Uint16Array): Float32Array {
  const out = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = bits[i]! << 16;
  return new Float32Array(out.buffer);
}

const f32View = new Float32Array(1);
const u32View = new Uint32Array(f32View.buffer);

/** One f32 value -> f16 bits. */
export function f32ToF16(value: number): number {
  f32View[0] = value;
  return f32BitsToF16Bits(u32View[0]!);
}

/** One f16 bit pattern -> its value. */
export function f16ToNumber(h: number): number {
  return halfTable()[h & 0xffff]!;
}
