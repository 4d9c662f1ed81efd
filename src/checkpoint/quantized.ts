// Reads one 4-bit linear layer of an AWQ, GPTQ or compressed-tensors checkpoint and repacks it into the
// shared Q4Matrix form ([out, in], 8 nibbles per u32 along in, natural order; common/q4.ts). One linear
// at a time, so peak host memory stays near one layer. Layouts, as their packers and dequantizers write
// and read them:
// - AWQ gemm (AutoAWQ WQLinear_GEMM.from_linear / dequantize_gemm, awq/utils/packing_utils.py; LMDeploy
//   lite auto_awq writes the same): qweight int32 [in, out/8] packed along out with order
//   [0, 2, 4, 6, 1, 3, 5, 7] (nibble i of word c = column 8c + order[i]); qzeros int32 [in/G, out/8] in the
//   same order, zeros as they are; scales f16 [in/G, out]. W[n, k] = (q - z) * s.
// - GPTQ (AutoGPTQ QuantLinear.pack / the torch dequantize path in qlinear_cuda_old.py; GPTQModel):
//   qweight int32 [in/8, out] packed along in, natural order; qzeros int32 [in/G, out/8] packed along
//   out, natural order, holding zero - 1 in the v1 format (read back as (stored + 1) & 15, as AutoGPTQ's
//   dequantize does) and the zero in gptq_v2; scales f16 [in/G, out]; g_idx int32 [in], input k's group:
//   k / G, or with desc_act (act-order, without static groups) a permutation of that, G inputs per group;
//   then the columns are sorted by group and Q4Matrix.inputPerm records the order (vLLM also sorts by
//   g_idx and gathers the activations; LMDeploy refuses desc_act).
// - compressed-tensors pack-quantized (compressors/quantized_compressors/pack_quantized.py pack_to_int32):
//   weight_packed int32 [out, in/8], natural order along in, each value stored as q + 8 (q in -8..7);
//   weight_scale [out, in/G]; weight_zero_point, when asymmetric, int32 [ceil(out/8), in/G] packed along
//   out (packed_dim=0) with the same + 8 offset; weight_shape [2] = [out, in]. W = (q - zp) * s, which is
//   (q + 8) - (zp + 8): both stored nibbles are already the Q4Matrix values (symmetric: zero 8).
//   weight_g_idx (actorder "group") as GPTQ's g_idx.
import { f16BitsToF32 } from '../common/half.js';
import type { Q4Matrix } from '../common/q4.js';
import type { QuantizationConfig } from './quantization.js';
import type { SafetensorsReader } from './safetensors.js';

/** AutoAWQ's AWQ_ORDER: nibble i of a packed word holds column 8c + AWQ_ORDER[i]. */
const AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7] as const;

interface ExpectedTensor {
  name: string;
  /** Allowed safetensors dtypes. */
  dtypes: readonly string[];
  /** Allowed shapes (some tensors have an older alternative layout). */
  shapes: number[][];
  optional?: boolean;
}

/** The group size of one linear: quantization_config's, or its whole input row for group_size -1. */
export function q4GroupSize(q: QuantizationConfig, prefix: string, inFeatures: number): number {
  const g = q.groupSize ?? inFeatures;
  if (q.groupSize === null && !(inFeatures >= 8 && (inFeatures & (inFeatures - 1)) === 0)) {
    throw new Error(
      `"${prefix}": quantization_config group_size -1 (one group per input row) needs in_features to be a power of two >= 8 for the 4-bit kernels, got ${inFeatures}`,
    );
  }
  if (inFeatures % g !== 0 || inFeatures % 8 !== 0) {
    throw new Error(
      `"${prefix}": in_features ${inFeatures} is not a multiple of quantization_config group_size ${g} (and of 8); this 4-bit layer cannot be read`,
    );
  }
  return g;
}

function expectedTensors(q: QuantizationConfig, prefix: string, rows: number, cols: number): ExpectedTensor[] {
  const g = q4GroupSize(q, prefix, cols);
  const groups = cols / g;
  const float = ['F16', 'BF16', 'F32'];
  switch (q.method) {
    case 'awq':
      return [
        { name: `${prefix}.qweight`, dtypes: ['I32'], shapes: [[cols, rows / 8]] },
        { name: `${prefix}.qzeros`, dtypes: ['I32'], shapes: [[groups, rows / 8]] },
        { name: `${prefix}.scales`, dtypes: float, shapes: [[groups, rows]] },
      ];
    case 'gptq':
      return [
        { name: `${prefix}.qweight`, dtypes: ['I32'], shapes: [[cols / 8, rows]] },
        { name: `${prefix}.qzeros`, dtypes: ['I32'], shapes: [[groups, rows / 8]] },
        { name: `${prefix}.scales`, dtypes: float, shapes: [[groups, rows]] },
        { name: `${prefix}.g_idx`, dtypes: ['I32', 'I64'], shapes: [[cols]], optional: true },
      ];
    case 'compressed-tensors': {
      const list: ExpectedTensor[] = [
        { name: `${prefix}.weight_packed`, dtypes: ['I32'], shapes: [[rows, cols / 8]] },
        { name: `${prefix}.weight_scale`, dtypes: float, shapes: [[rows, groups]] },
        { name: `${prefix}.weight_shape`, dtypes: ['I64', 'I32'], shapes: [[2]] },
        { name: `${prefix}.weight_g_idx`, dtypes: ['I32', 'I64'], shapes: [[cols]], optional: true },
      ];
      // Releases before zero points were packed stored them as int8 [out, groups].
      if (!q.symmetric)
        list.push({
          name: `${prefix}.weight_zero_point`,
          dtypes: ['I32', 'I8'],
          shapes: [
            [Math.ceil(rows / 8), groups],
            [rows, groups],
          ],
        });
      return list;
    }
  }
}

/** Whether the checkpoint stores `prefix` in this method's 4-bit form (its packed weight tensor exists). */
export function hasQ4Linear(reader: SafetensorsReader, q: QuantizationConfig, prefix: string): boolean {
  return reader.has(`${prefix}.${q.method === 'compressed-tensors' ? 'weight_packed' : 'qweight'}`);
}

/** Checks names, dtypes and shapes of one 4-bit linear before anything is read; throws naming the tensor. */
export function checkQ4Linear(reader: SafetensorsReader, q: QuantizationConfig, prefix: string, rows: number, cols: number, canonical: string): void {
  if (rows % 8 !== 0) throw new Error(`"${prefix}" (${canonical}): ${rows} out features are not a multiple of 8, which 4-bit packing needs`);
  for (const t of expectedTensors(q, prefix, rows, cols)) {
    if (!reader.has(t.name)) {
      if (t.optional) continue;
      throw new Error(
        `tensor "${t.name}" (4-bit ${q.method} ${canonical}) is missing from the safetensors files in ${reader.modelDir}; ` +
          'quantization_config says this linear is quantized (check modules_to_not_convert / ignore against the weights)',
      );
    }
    const info = reader.info(t.name);
    if (!t.dtypes.includes(info.dtype)) {
      throw new Error(`tensor "${t.name}" (4-bit ${q.method} ${canonical}) has dtype ${info.dtype}, expected ${t.dtypes.join(' or ')}`);
    }
    if (!t.shapes.some((s) => s.length === info.shape.length && s.every((d, i) => d === info.shape[i]))) {
      throw new Error(
        `tensor "${t.name}" (4-bit ${q.method} ${canonical}) has shape [${info.shape.join(', ')}], but config.json implies ` +
          `${t.shapes.map((s) => `[${s.join(', ')}]`).join(' or ')} (${rows} out x ${cols} in features, group size ${q4GroupSize(q, prefix, cols)})`,
      );
    }
  }
}

/** Reads one 4-bit linear [rows = out, cols = in] into a Q4Matrix; call checkQ4Linear first. */
export async function readQ4Linear(reader: SafetensorsReader, q: QuantizationConfig, prefix: string, rows: number, cols: number): Promise<Q4Matrix> {
  const groupSize = q4GroupSize(q, prefix, cols);
  switch (q.method) {
    case 'awq':
      return readAwq(reader, prefix, rows, cols, groupSize);
    case 'gptq':
      return readGptq(reader, q, prefix, rows, cols, groupSize);
    case 'compressed-tensors':
      return readCompressedTensors(reader, q, prefix, rows, cols, groupSize);
  }
}

async function readAwq(reader: SafetensorsReader, prefix: string, rows: number, cols: number, groupSize: number): Promise<Q4Matrix> {
  const words = cols / 8;
  const groups = cols / groupSize;
  const out8 = rows / 8;
  const src = await readInt32(reader, `${prefix}.qweight`);
  const qweight = new Uint32Array(rows * words);
  for (let k = 0; k < cols; k++) {
    const shift = 4 * (k & 7);
    const dstWord = k >> 3;
    for (let c = 0; c < out8; c++) {
      const w = src[k * out8 + c]!;
      for (let i = 0; i < 8; i++) {
        const at = (8 * c + AWQ_ORDER[i]!) * words + dstWord;
        qweight[at] = qweight[at]! | (((w >>> (4 * i)) & 15) << shift);
      }
    }
  }
  const qzeros = await readInt32(reader, `${prefix}.qzeros`);
  const zeros = new Uint8Array(rows * groups);
  for (let g = 0; g < groups; g++) {
    for (let c = 0; c < out8; c++) {
      const w = qzeros[g * out8 + c]!;
      for (let i = 0; i < 8; i++) zeros[(8 * c + AWQ_ORDER[i]!) * groups + g] = (w >>> (4 * i)) & 15;
    }
  }
  const scales = transpose(await reader.read(`${prefix}.scales`, 'f16'), groups, rows);
  return { rows, cols, groupSize, qweight, scales, zeros };
}

async function readGptq(reader: SafetensorsReader, q: QuantizationConfig, prefix: string, rows: number, cols: number, groupSize: number): Promise<Q4Matrix> {
  const words = cols / 8;
  const groups = cols / groupSize;
  const out8 = rows / 8;
  // Word (k8, n) already holds inputs 8*k8 .. 8*k8 + 7 of column n in natural order: only the word grid is transposed.
  const qweight = new Uint32Array(transpose(await readInt32(reader, `${prefix}.qweight`), words, rows));
  const qzeros = await readInt32(reader, `${prefix}.qzeros`);
  const zeros = new Uint8Array(rows * groups);
  const bump = q.zerosMinusOne ? 1 : 0;
  for (let g = 0; g < groups; g++) {
    for (let c = 0; c < out8; c++) {
      const w = qzeros[g * out8 + c]!;
      for (let i = 0; i < 8; i++) zeros[(8 * c + i) * groups + g] = (((w >>> (4 * i)) & 15) + bump) & 15;
    }
  }
  const scales = transpose(await reader.read(`${prefix}.scales`, 'f16'), groups, rows);
  return withActivationOrder(reader, `${prefix}.g_idx`, { rows, cols, groupSize, qweight, scales, zeros });
}

async function readCompressedTensors(
  reader: SafetensorsReader,
  q: QuantizationConfig,
  prefix: string,
  rows: number,
  cols: number,
  groupSize: number,
): Promise<Q4Matrix> {
  const groups = cols / groupSize;
  const shape = Array.from(await reader.readInt(`${prefix}.weight_shape`), Number);
  if (shape[0] !== rows || shape[1] !== cols) {
    throw new Error(`tensor "${prefix}.weight_shape" says [${shape.join(', ')}], but config.json implies [${rows}, ${cols}]`);
  }
  const qweight = (await readInt32(reader, `${prefix}.weight_packed`)).slice();
  const scales = await reader.read(`${prefix}.weight_scale`, 'f16');
  const zeros = new Uint8Array(rows * groups).fill(8);
  if (!q.symmetric) {
    const name = `${prefix}.weight_zero_point`;
    const zp = await reader.readInt(name);
    if (zp instanceof Int32Array) {
      for (let r = 0; r < rows; r++) {
        for (let g = 0; g < groups; g++) zeros[r * groups + g] = (zp[(r >> 3) * groups + g]! >>> (4 * (r & 7))) & 15;
      }
    } else {
      for (let i = 0; i < rows * groups; i++) {
        const z = Number(zp[i]);
        if (z < -8 || z > 7) throw new Error(`tensor "${name}" holds ${z} at ${i}, outside the int4 range -8..7`);
        zeros[i] = z + 8;
      }
    }
  }
  return withActivationOrder(reader, `${prefix}.weight_g_idx`, { rows, cols, groupSize, qweight, scales, zeros });
}

/**
 * Applies a g_idx tensor (input k -> its group), when the checkpoint has one: in group order (k / G)
 * nothing changes; an activation order (GPTQ desc_act, compressed-tensors actorder "group": each group's
 * G inputs scattered over the row) sorts the columns by group, stably, and records the order in inputPerm.
 */
async function withActivationOrder(reader: SafetensorsReader, name: string, m: Q4Matrix): Promise<Q4Matrix> {
  if (!reader.has(name)) return m;
  const gIdx = Array.from(await reader.readInt(name), Number);
  const { rows, cols, groupSize } = m;
  const groups = cols / groupSize;
  if (gIdx.every((g, k) => g === Math.floor(k / groupSize))) return m;
  const members: number[][] = Array.from({ length: groups }, () => []);
  for (const [k, g] of gIdx.entries()) {
    if (!(Number.isInteger(g) && g >= 0 && g < groups)) throw new Error(`tensor "${name}" holds ${g} at ${k}, outside the ${groups} groups`);
    members[g]!.push(k);
  }
  const uneven = members.findIndex((m) => m.length !== groupSize);
  if (uneven >= 0) {
    throw new Error(`tensor "${name}" puts ${members[uneven]!.length} inputs in group ${uneven}; an activation order must give every group ${groupSize}`);
  }
  const inputPerm = Uint32Array.from(members.flat());
  const words = cols / 8;
  const qweight = new Uint32Array(m.qweight.length);
  for (let r = 0; r < rows; r++) {
    const row = r * words;
    for (let j = 0; j < cols; j++) {
      const k = inputPerm[j]!;
      const q = (m.qweight[row + (k >> 3)]! >>> (4 * (k & 7))) & 15;
      qweight[row + (j >> 3)] = qweight[row + (j >> 3)]! | (q << (4 * (j & 7)));
    }
  }
  return { ...m, qweight, inputPerm };
}

async function readInt32(reader: SafetensorsReader, name: string): Promise<Uint32Array> {
  const a = await reader.readInt(name);
  if (!(a instanceof Int32Array)) throw new Error(`tensor "${name}" must be I32 (packed 4-bit words)`);
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

/** [rows, cols] -> [cols, rows]. */
function transpose<T extends Uint16Array | Uint32Array>(src: T, rows: number, cols: number): T {
  const out = new (src.constructor as { new (n: number): T })(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c]!;
  return out;
}

/**
 * W = (q - zero) * scale as f32 [rows, cols]: for a fused group whose parts are not all 4-bit (say q_proj
 * listed in modules_to_not_convert but k/v quantized), which is then uploaded as one 16/32-bit matrix.
 */
export function dequantizeQ4(m: Q4Matrix): Float32Array {
  const out = new Float32Array(m.rows * m.cols);
  const words = m.cols / 8;
  const groups = m.cols / m.groupSize;
  const scale = f16BitsToF32(m.scales);
  for (let r = 0; r < m.rows; r++) {
    for (let k = 0; k < m.cols; k++) {
      const g = r * groups + Math.floor(k / m.groupSize);
      const q = (m.qweight[r * words + (k >> 3)]! >>> (4 * (k & 7))) & 15;
      out[r * m.cols + (m.inputPerm ? m.inputPerm[k]! : k)] = (q - m.zeros[g]!) * scale[g]!;
    }
  }
  return out;
}
