// Group-wise asymmetric 4-bit round-to-nearest, AutoAWQ's pseudo_quantize_tensor with zero_point=True:
// per group of `groupSize` input columns of a row, scale = (max - min) / 15 (at least 1e-5), zero =
// clamp(round(-min / scale), 0, 15), q = clamp(round(w / scale) + zero, 0, 15), w ~ (q - zero) * scale.
// torch.round is round-half-to-even, and AutoAWQ computes in f16, so the scale is rounded to f16
// before it is used: the stored scale is exactly the one the codes were chosen with.
import { f16ToNumber, f32ToF16 } from '../common/half.js';

export const Q4_MAX = 15;
const MIN_SCALE = 1e-5;

/** The codes of an [rows, cols] matrix, HF [out, in] orientation. */
export interface GroupQuantized {
  rows: number;
  cols: number;
  groupSize: number;
  /** [rows, cols], 0..15. */
  q: Uint8Array;
  /** [rows, cols / groupSize], values exactly representable in f16. */
  scales: Float32Array;
  /** [rows, cols / groupSize], 0..15. */
  zeros: Uint8Array;
}

/** torch.round: halves go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export function toF16(x: number): number {
  return f16ToNumber(f32ToF16(x));
}

/** One group's f16 scale and its zero point from the group's min and max (pseudo_quantize_tensor). */
export function groupScaleZero(min: number, max: number): { scale: number; zero: number } {
  const scale = toF16(Math.max(max - min, MIN_SCALE) / Q4_MAX);
  return { scale, zero: Math.min(Q4_MAX, Math.max(0, roundHalfEven(-min / scale))) };
}

export function checkGroupShape(rows: number, cols: number, groupSize: number, what = 'matrix'): void {
  if (!(Number.isInteger(groupSize) && groupSize >= 8 && (groupSize & (groupSize - 1)) === 0))
    throw new Error(`group size ${groupSize} is not a power of two >= 8 (AWQ checkpoints use 32, 64 or 128)`);
  if (cols % groupSize !== 0) throw new Error(`${what}: in features ${cols} are not a multiple of the group size ${groupSize}`);
  if (rows % 8 !== 0) throw new Error(`${what}: out features ${rows} are not a multiple of 8 (AWQ packs 8 output columns per int32)`);
}

/** RTN codes of `w` [rows, cols]; with `colScale` (length cols) the codes of w * colScale (AWQ's scaled weight). */
export function quantizeRtn(w: Float32Array, rows: number, cols: number, groupSize: number, colScale: Float32Array | null = null): GroupQuantized {
  const groups = cols / groupSize;
  const q = new Uint8Array(rows * cols);
  const scales = new Float32Array(rows * groups);
  const zeros = new Uint8Array(rows * groups);
  const v = new Float64Array(groupSize);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) {
      const base = r * cols + g * groupSize;
      let min = Infinity;
      let max = -Infinity;
      for (let j = 0; j < groupSize; j++) {
        const x = colScale ? w[base + j]! * colScale[g * groupSize + j]! : w[base + j]!;
        v[j] = x;
        if (x < min) min = x;
        if (x > max) max = x;
      }
      const { scale, zero } = groupScaleZero(min, max);
      scales[r * groups + g] = scale;
      zeros[r * groups + g] = zero;
      for (let j = 0; j < groupSize; j++) q[base + j] = Math.min(Q4_MAX, Math.max(0, roundHalfEven(v[j]! / scale) + zero));
    }
  }
  return { rows, cols, groupSize, q, scales, zeros };
}

/** (q - zero) * scale, [rows, cols]; with `colScale`, divided by it per column (undoing AWQ's scaling). */
export function dequantize(m: GroupQuantized, colScale: Float32Array | null = null, out = new Float32Array(m.rows * m.cols)): Float32Array {
  const { rows, cols, groupSize } = m;
  const groups = cols / groupSize;
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) {
      const scale = m.scales[r * groups + g]!;
      const zero = m.zeros[r * groups + g]!;
      const base = r * cols + g * groupSize;
      for (let j = 0; j < groupSize; j++) {
        const x = (m.q[base + j]! - zero) * scale;
        out[base + j] = colScale ? x / colScale[g * groupSize + j]! : x;
      }
    }
  }
  return out;
}

/**
 * Q(w * s) / s in one pass, into `out` (AWQ's search scores this for every grid point, so it is the
 * hot loop: the same arithmetic as dequantize(quantizeRtn(w, .., s), s) without the code arrays).
 */
export function fakeQuantizeScaled(w: Float32Array, rows: number, cols: number, groupSize: number, s: Float32Array, out: Float32Array): Float32Array {
  const groups = cols / groupSize;
  const inv = new Float32Array(cols);
  for (let k = 0; k < cols; k++) inv[k] = 1 / s[k]!;
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) {
      const base = r * cols + g * groupSize;
      const k0 = g * groupSize;
      let min = Infinity;
      let max = -Infinity;
      for (let j = 0; j < groupSize; j++) {
        const x = w[base + j]! * s[k0 + j]!;
        if (x < min) min = x;
        if (x > max) max = x;
      }
      const { scale, zero } = groupScaleZero(min, max);
      for (let j = 0; j < groupSize; j++) {
        const v = (w[base + j]! * s[k0 + j]!) / scale;
        let q = Math.round(v);
        if (q - v === 0.5 && (q & 1) !== 0) q -= 1;
        q += zero;
        q = Math.min(Q4_MAX, Math.max(0, q));
        out[base + j] = (q - zero) * scale * inv[k0 + j]!;
      }
    }
  }
  return out;
}
