// An independent CPU dequantizer for 4-bit checkpoints, the oracle for the loader (src/checkpoint/
// quantized.ts) and the GPU path: written from each format's own dequantize routine, not from the loader,
// and reading config.json's quantization_config itself. It turns a quantized model folder into a float32
// one (every `<module>.weight` back in [out, in]), which test/support/reference-model.ts then runs.
//   AWQ gemm (AutoAWQ awq/utils/packing_utils.py dequantize_gemm): unpack qweight/qzeros to [in, out]
//     with nibble i at column 8c + i, then reorder columns with AWQ_REVERSE_ORDER [0, 4, 1, 5, 2, 6, 3, 7];
//     W^T = (iweight - izeros[k // G]) * scales[k // G].
//   GPTQ (AutoGPTQ qlinear_cuda_old.py, the torch path): zeros unpacked along out, v1 adds 1 and masks
//     to 4 bits; weight unpacked along in; W^T[k] = scales[g_idx[k]] * (weight[k] - zeros[g_idx[k]]).
//   compressed-tensors (pack_quantized.py unpack_from_int32 + dequantize): unpack along in (weights) and
//     along out (zero points), subtract 8 from both; W = (q - zp) * scale[:, g_idx or k // G].
import { copyFile, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SafetensorsReader } from '../../src/checkpoint/safetensors.js';
import { writeRawSafetensors, type RawTensor } from './quant-safetensors.js';

const AWQ_REVERSE_ORDER = [0, 4, 1, 5, 2, 6, 3, 7];

/** Reads a float tensor as f32 whatever its dtype (F32, F16 or BF16), straight from the bytes. */
async function floats(reader: SafetensorsReader, name: string): Promise<Float32Array> {
  return reader.read(name, 'f32');
}

async function ints(reader: SafetensorsReader, name: string): Promise<number[]> {
  return Array.from(await reader.readInt(name), Number);
}

/** The 4-bit value at nibble i of a 32-bit word. */
const nibble = (word: number, i: number) => (word >>> (4 * i)) & 15;

/** AWQ gemm -> W [out, in]. */
export async function dequantizeAwq(reader: SafetensorsReader, module: string): Promise<{ w: Float32Array; rows: number; cols: number }> {
  const [cols, out8] = reader.info(`${module}.qweight`).shape as [number, number];
  const rows = out8 * 8;
  const qweight = await ints(reader, `${module}.qweight`);
  const qzeros = await ints(reader, `${module}.qzeros`);
  const scales = await floats(reader, `${module}.scales`);
  const groups = reader.info(`${module}.scales`).shape[0]!;
  const g = cols / groups;
  // unpack: column 8c + i of the unpacked matrix = nibble i; then column j of the result = unpacked column 8c + REVERSE[j].
  const unpack = (words: number[], r: number, n: number) => nibble(words[r * out8 + (n >> 3)]!, AWQ_REVERSE_ORDER[n & 7]!);
  const w = new Float32Array(rows * cols);
  for (let k = 0; k < cols; k++) {
    const gi = Math.floor(k / g);
    for (let n = 0; n < rows; n++) w[n * cols + k] = (unpack(qweight, k, n) - unpack(qzeros, gi, n)) * scales[gi * rows + n]!;
  }
  return { w, rows, cols };
}

/** GPTQ -> W [out, in]; v1 zeros are stored minus one. */
export async function dequantizeGptq(reader: SafetensorsReader, module: string, v1: boolean): Promise<{ w: Float32Array; rows: number; cols: number }> {
  const [in8, rows] = reader.info(`${module}.qweight`).shape as [number, number];
  const cols = in8 * 8;
  const qweight = await ints(reader, `${module}.qweight`);
  const qzeros = await ints(reader, `${module}.qzeros`);
  const scales = await floats(reader, `${module}.scales`);
  const groups = reader.info(`${module}.scales`).shape[0]!;
  const gIdx = reader.has(`${module}.g_idx`) ? await ints(reader, `${module}.g_idx`) : Array.from({ length: cols }, (_, k) => Math.floor(k / (cols / groups)));
  const zero = (gi: number, n: number) => {
    const z = nibble(qzeros[gi * (rows / 8) + (n >> 3)]!, n & 7);
    return v1 ? (z + 1) & 15 : z;
  };
  const w = new Float32Array(rows * cols);
  for (let k = 0; k < cols; k++) {
    const gi = gIdx[k]!;
    for (let n = 0; n < rows; n++) w[n * cols + k] = scales[gi * rows + n]! * (nibble(qweight[(k >> 3) * rows + n]!, k & 7) - zero(gi, n));
  }
  return { w, rows, cols };
}

/** compressed-tensors pack-quantized -> W [out, in]. */
export async function dequantizeCompressedTensors(reader: SafetensorsReader, module: string): Promise<{ w: Float32Array; rows: number; cols: number }> {
  const [rows, cols] = (await ints(reader, `${module}.weight_shape`)) as [number, number];
  const packed = await ints(reader, `${module}.weight_packed`);
  const words = reader.info(`${module}.weight_packed`).shape[1]!;
  const scaleInfo = reader.info(`${module}.weight_scale`);
  const scale = await floats(reader, `${module}.weight_scale`);
  const groups = scaleInfo.shape[1]!;
  const gIdx = reader.has(`${module}.weight_g_idx`) ? await ints(reader, `${module}.weight_g_idx`) : null;
  const hasZp = reader.has(`${module}.weight_zero_point`);
  const zp = hasZp ? await ints(reader, `${module}.weight_zero_point`) : null;
  const w = new Float32Array(rows * cols);
  for (let n = 0; n < rows; n++) {
    for (let k = 0; k < cols; k++) {
      const q = nibble(packed[n * words + (k >> 3)]!, k & 7) - 8;
      const gi = gIdx ? gIdx[k]! : Math.floor(k / (cols / groups));
      const z = zp ? nibble(zp[(n >> 3) * groups + gi]!, n & 7) - 8 : 0;
      w[n * cols + k] = (q - z) * scale[n * groups + gi]!;
    }
  }
  return { w, rows, cols };
}

/** Turns the quantized model in srcDir into a float32 model folder in dstDir (config without quantization_config). */
export async function writeDequantizedModel(srcDir: string, dstDir: string): Promise<string> {
  await mkdir(dstDir, { recursive: true });
  for (const file of await readdir(srcDir)) {
    if (file.startsWith('tokenizer') || file === 'generation_config.json') await copyFile(join(srcDir, file), join(dstDir, file));
  }
  const config = JSON.parse(await readFile(join(srcDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const qc = config.quantization_config as Record<string, unknown>;
  delete config.quantization_config;
  config.torch_dtype = 'float32';
  await writeFile(join(dstDir, 'config.json'), JSON.stringify(config, null, 2));
  const reader = await SafetensorsReader.open(srcDir);
  const out: RawTensor[] = [];
  const f32 = (name: string, shape: number[], data: Float32Array): RawTensor => ({
    name,
    dtype: 'F32',
    shape,
    bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  });
  try {
    for (const [name, info] of reader.tensors) {
      const m = /^(.*)\.(qweight|weight_packed)$/.exec(name);
      if (m) {
        const module = m[1]!;
        const { w, rows, cols } =
          qc.quant_method === 'awq'
            ? await dequantizeAwq(reader, module)
            : qc.quant_method === 'gptq'
              ? await dequantizeGptq(reader, module, (qc.checkpoint_format ?? 'gptq') === 'gptq')
              : await dequantizeCompressedTensors(reader, module);
        out.push(f32(`${module}.weight`, [rows, cols], w));
      } else if (info.dtype === 'F32' || info.dtype === 'F16' || info.dtype === 'BF16') {
        if (/\.(qzeros|scales|weight_scale)$/.test(name)) continue;
        out.push(f32(name, info.shape, await floats(reader, name)));
      }
    }
  } finally {
    await reader.close();
  }
  await writeRawSafetensors(join(dstDir, 'model.safetensors'), out);
  return dstDir;
}
