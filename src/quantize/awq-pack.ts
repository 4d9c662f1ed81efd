// AutoAWQ's GEMM checkpoint layout (WQLinear_GEMM.from_linear), what vLLM's and LMDeploy's AWQ loaders
// read: for a linear with W [out, in] and groups of G input columns,
//   qweight int32 [in, out / 8]: word (k, c) holds the codes of columns 8c + AWQ_ORDER[i] of input row k
//     in bits 4i..4i+3 (the interleaved order its dequantize kernel unpacks),
//   qzeros  int32 [in / G, out / 8]: the zero points, packed the same way,
//   scales  f16   [in / G, out].
import { f32ToF16Bits } from '../common/half.js';
import type { GroupQuantized } from './rtn.js';

/** Nibble i of a packed word holds output column 8c + AWQ_ORDER[i]. */
export const AWQ_ORDER: readonly number[] = [0, 2, 4, 6, 1, 3, 5, 7];

/** codes [rows, cols] (HF [out, in] orientation, 0..15) -> int32 words [cols, rows / 8] in AWQ order. */
export function packAwqTransposed(codes: Uint8Array, rows: number, cols: number): Uint32Array {
  if (rows % 8 !== 0) throw new Error(`packAwqTransposed: ${rows} output columns are not a multiple of 8`);
  if (codes.length !== rows * cols) throw new Error(`packAwqTransposed: ${codes.length} codes for a ${rows} x ${cols} matrix`);
  const words = rows / 8;
  const out = new Uint32Array(cols * words);
  for (let c = 0; c < words; c++) {
    for (let i = 0; i < 8; i++) {
      const row = 8 * c + AWQ_ORDER[i]!;
      const shift = 4 * i;
      const src = row * cols;
      for (let k = 0; k < cols; k++) out[k * words + c] = (out[k * words + c]! | (codes[src + k]! << shift)) >>> 0;
    }
  }
  return out;
}

export interface AwqTensors {
  /** int32 bits [in, out / 8]. */
  qweight: Uint32Array;
  /** int32 bits [in / G, out / 8]. */
  qzeros: Uint32Array;
  /** f16 bits [in / G, out]. */
  scales: Uint16Array;
}

/** The three checkpoint tensors of one quantized linear. */
export function packAwq(m: GroupQuantized): AwqTensors {
  const groups = m.cols / m.groupSize;
  const scalesT = new Float32Array(groups * m.rows);
  for (let r = 0; r < m.rows; r++) for (let g = 0; g < groups; g++) scalesT[g * m.rows + r] = m.scales[r * groups + g]!;
  return {
    qweight: packAwqTransposed(m.q, m.rows, m.cols),
    qzeros: packAwqTransposed(m.zeros, m.rows, groups),
    scales: f32ToF16Bits(scalesT),
  };
}
