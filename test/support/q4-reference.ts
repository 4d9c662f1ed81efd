// CPU side of 4-bit weight tests and benches: random Q4Matrix values (src/common/q4.ts) and the
// reference dequantizer W[r, k] = (q[r, k] - zero[r, g]) * scale[r, g], written from the format's
// definition alone (no code shared with the GPU upload) so the kernels are checked against it.
import type { Q4Matrix } from '../../src/common/q4.js';
import { f16BitsToF32, f32ToF16Bits } from '../../src/common/half.js';
import { rng } from './random.js';

/**
 * A random [rows, cols] matrix: nibbles uniform in 0..15, zeros uniform in 0..16 (both ends
 * included, GPTQ v1 yields 16), f16 scales of either sign with magnitudes in [scaleMin, 2 * scaleMin).
 */
export function randomQ4Matrix(rows: number, cols: number, groupSize: number, seed: number, scaleMin = 0.01): Q4Matrix {
  const r = rng(seed);
  const qweight = new Uint32Array((rows * cols) / 8);
  for (let i = 0; i < qweight.length; i++) qweight[i] = Math.floor(r() * 2 ** 32) >>> 0;
  const groups = (rows * cols) / groupSize;
  const zeros = new Uint8Array(groups).map(() => Math.floor(r() * 17));
  const scales = f32ToF16Bits(new Float32Array(groups).map(() => (r() < 0.5 ? -1 : 1) * scaleMin * (1 + r())));
  return { rows, cols, groupSize, qweight, scales, zeros };
}

/** The nibble q[row, k] of m. */
export function q4Nibble(m: Q4Matrix, row: number, k: number): number {
  const word = m.qweight[row * (m.cols / 8) + Math.floor(k / 8)]!;
  return (word >>> (4 * (k % 8))) & 0xf;
}

/** W as f32 [rows, cols] (exact: (q - zero) is a small integer and scale an f16). */
export function dequantizeQ4(m: Q4Matrix): Float32Array {
  const scales = f16BitsToF32(m.scales);
  const groupsPerRow = m.cols / m.groupSize;
  const out = new Float32Array(m.rows * m.cols);
  for (let row = 0; row < m.rows; row++) {
    for (let k = 0; k < m.cols; k++) {
      const g = row * groupsPerRow + Math.floor(k / m.groupSize);
      out[row * m.cols + k] = (q4Nibble(m, row, k) - m.zeros[g]!) * scales[g]!;
    }
  }
  return out;
}
