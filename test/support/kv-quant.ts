// Plain-TS reference of the quantized KV cache (LMDeploy's quant_policy 8 / 4) as shaders/kv_cache.wgsl's
// write_quant stores it: per (token, kv head) row, scale = (max - min) * (1 / (2^bits - 1)) and min, both
// rounded to f16; codes from the rounded pair (round half to even, clamped to [0, 2^bits - 1]), packed
// 32 / bits per u32 word, low bits first. Every step is done in f32 (Math.fround) in the shader's order,
// so the packed words match the GPU's bit for bit except where a value lands on a rounding midpoint
// (WGSL lets 1 / scale be off by 2.5 ulp); `unrounded` says how close each code came to one.
import { f16ToNumber, f32ToF16 } from '../../src/common/half.js';

export type KvQuantBits = 4 | 8;

export interface QuantizedRow {
  /** pack2x16float(scale, min) of the row: the f16 scale in the low half, the f16 min in the high half. */
  params: number;
  /** The f16-rounded scale and min as numbers: what dequantization uses. */
  scale: number;
  min: number;
  codes: Uint8Array;
  /** (x - min) / scale before rounding, per element (in f32, as the shader computes it). */
  unrounded: Float32Array;
}

const F16_MAX = 65504;
const f = Math.fround;

/** WGSL's round(): to the nearest integer, ties to even. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Quantizes one head_dim row of K or V. */
export function quantizeRow(x: ArrayLike<number>, bits: KvQuantBits): QuantizedRow {
  let lo = x[0]!;
  let hi = lo;
  for (let i = 1; i < x.length; i++) {
    lo = Math.min(lo, x[i]!);
    hi = Math.max(hi, x[i]!);
  }
  const levels = 2 ** bits - 1;
  const scaleBits = f32ToF16(Math.min(Math.max(f(f(hi - lo) * f(1 / levels)), 0), F16_MAX));
  const minBits = f32ToF16(Math.min(Math.max(lo, -F16_MAX), F16_MAX));
  const scale = f16ToNumber(scaleBits);
  const min = f16ToNumber(minBits);
  // A constant row (or a range below f16's subnormals) stores scale 0: every code 0, read back as min.
  const inv = scale > 0 ? f(1 / scale) : 0;
  const codes = new Uint8Array(x.length);
  const unrounded = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    unrounded[i] = f(f(x[i]! - min) * inv);
    codes[i] = Math.min(Math.max(roundHalfEven(unrounded[i]!), 0), levels);
  }
  return { params: (scaleBits | (minBits << 16)) >>> 0, scale, min, codes, unrounded };
}

/** Codes packed 32 / bits per u32 word, element e at bits (e % perWord) * bits. */
export function packCodes(codes: ArrayLike<number>, bits: KvQuantBits): Uint32Array {
  const perWord = 32 / bits;
  const words = new Uint32Array(Math.ceil(codes.length / perWord));
  for (let e = 0; e < codes.length; e++) words[Math.floor(e / perWord)]! |= codes[e]! << ((e % perWord) * bits);
  return words;
}

/** The codes of packed words (the inverse of packCodes). */
export function unpackCodes(words: Uint32Array, bits: KvQuantBits, count: number): Uint8Array {
  const perWord = 32 / bits;
  const mask = 2 ** bits - 1;
  return Uint8Array.from({ length: count }, (_, e) => (words[Math.floor(e / perWord)]! >>> ((e % perWord) * bits)) & mask);
}

/** What attention reads back for a code: code * scale + min, in f32. */
export function dequantize(code: number, scale: number, min: number): number {
  return f(f(code * scale) + min);
}

/** The n x n Sylvester Hadamard matrix (entries +-1): H_1 = [1], H_2n = [[H_n, H_n], [H_n, -H_n]]. */
export function sylvester(n: number): number[][] {
  let h = [[1]];
  while (h.length < n) h = [...h.map((row) => [...row, ...row]), ...h.map((row) => [...row, ...row.map((v) => -v)])];
  return h;
}

/**
 * In place: each block of `block` elements (default: the largest power of two dividing the row's
 * length, as the runner picks it) becomes H x / sqrt(block), by the explicit matrix product in float64.
 */
export function hadamardRotate(row: Float32Array, block = row.length & -row.length): void {
  const h = sylvester(block);
  const x = new Float64Array(block);
  for (let b0 = 0; b0 < row.length; b0 += block) {
    for (let j = 0; j < block; j++) x[j] = row[b0 + j]!;
    for (let i = 0; i < block; i++) {
      let sum = 0;
      for (let j = 0; j < block; j++) sum += h[i]![j]! * x[j]!;
      row[b0 + i] = sum / Math.sqrt(block);
    }
  }
}

/** A whole cache ([rows, headDim] float values) quantized row by row, as the GPU would hold it. */
export interface QuantizedCache {
  /** Packed codes, [rows, headDim * bits / 32] words. */
  words: Uint32Array;
  /** pack2x16float(scale, min) per row. */
  params: Uint32Array;
  /** The values attention sees: every element dequantized. */
  dequantized: Float32Array;
}

export function quantizeCache(values: Float32Array, headDim: number, bits: KvQuantBits): QuantizedCache {
  const rows = values.length / headDim;
  const rowWords = (headDim * bits) / 32;
  const words = new Uint32Array(rows * rowWords);
  const params = new Uint32Array(rows);
  const dequantized = new Float32Array(values.length);
  for (let r = 0; r < rows; r++) {
    const q = quantizeRow(values.subarray(r * headDim, (r + 1) * headDim), bits);
    words.set(packCodes(q.codes, bits), r * rowWords);
    params[r] = q.params;
    for (let d = 0; d < headDim; d++) dequantized[r * headDim + d] = dequantize(q.codes[d]!, q.scale, q.min);
  }
  return { words, params, dequantized };
}

/** Dequantizes packed rows ([rows, headDim * bits / 32] words) with one pack2x16float(scale, min) per row. */
export function dequantizeCache(words: Uint32Array, params: Uint32Array, headDim: number, bits: KvQuantBits): Float32Array {
  const rowWords = (headDim * bits) / 32;
  const out = new Float32Array(params.length * headDim);
  for (let r = 0; r < params.length; r++) {
    const codes = unpackCodes(words.subarray(r * rowWords, (r + 1) * rowWords), bits, headDim);
    const scale = f16ToNumber(params[r]! & 0xffff);
    const min = f16ToNumber(params[r]! >>> 16);
    for (let d = 0; d < headDim; d++) out[r * headDim + d] = dequantize(codes[d]!, scale, min);
  }
  return out;
}

/** The kv_params buffer layout: per row, K's pair then V's pair. */
export function interleaveParams(k: Uint32Array, v: Uint32Array): Uint32Array {
  const out = new Uint32Array(2 * k.length);
  for (let r = 0; r < k.length; r++) {
    out[2 * r] = k[r]!;
    out[2 * r + 1] = v[r]!;
  }
  return out;
}
