// Writes 4-bit checkpoints for tests and benches: takes a float model folder (a synthetic one, or
// stories260K), quantizes its projections round-to-nearest per group, and writes them the way each
// tool does, with its quantization_config: AutoAWQ gemm, AutoGPTQ (v1 zeros - 1, or gptq_v2; sym or asym)
// and compressed-tensors pack-quantized. Packing written from each format's definition (see
// test/support/quant-reference.ts for the matching dequantizer, also written from the definitions).
import { copyFile, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { f32ToBf16Bits, f32ToF16Bits, f16BitsToF32 } from '../../src/common/half.js';
import { SafetensorsReader } from '../../src/checkpoint/safetensors.js';
import { writeRawSafetensors, type RawTensor } from './quant-safetensors.js';
import { seededPermutation } from './random.js';

export type QuantFormat = 'awq' | 'gptq-v1' | 'gptq-v2' | 'compressed-tensors';

export interface QuantizeOptions {
  format: QuantFormat;
  /** Inputs per group; -1 = one group per input row (GPTQ / AWQ group_size -1). */
  groupSize: number;
  /** GPTQ sym / compressed-tensors symmetric (zero fixed at 8, int4 -8..7); AWQ is always asymmetric. */
  symmetric?: boolean;
  /**
   * Module-name substrings left in 16 bits: AWQ modules_to_not_convert, compressed-tensors ignore
   * ('re:.*<s>.*'), GPTQ modules_in_block_to_quantize (written as the complement of Llama-style names).
   */
  keepFloat?: string[];
  /** GPTQ: write desc_act true (with an in-order g_idx, as static_groups gives). */
  descAct?: boolean;
  /**
   * Activation order: GPTQ desc_act without static groups / compressed-tensors actorder "group". Each
   * linear's groups gather scattered inputs (a permuted g_idx / weight_g_idx), one permutation per
   * layer and input (shared by q/k/v, and by gate/up, as their common input makes it in GPTQ).
   */
  actOrder?: boolean;
  /** Quantize lm_head too (GPTQModel `lm_head: true`; compressed-tensors without lm_head in ignore). */
  lmHead?: boolean;
  /** compressed-tensors weight_scale dtype (default BF16, as llm-compressor saves bf16 models). */
  scaleDtype?: 'F16' | 'BF16';
}

const AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7];
const LINEAR = /\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj|wqkv|wo|w1|w2|w3)\.weight$/;

/** Quantizes the float model in srcDir into dstDir (created); returns dstDir. */
export async function writeQuantizedModel(srcDir: string, dstDir: string, o: QuantizeOptions): Promise<string> {
  await mkdir(dstDir, { recursive: true });
  for (const file of await readdir(srcDir)) {
    if (file.startsWith('tokenizer') || file === 'generation_config.json') await copyFile(join(srcDir, file), join(dstDir, file));
  }
  const config = JSON.parse(await readFile(join(srcDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  config.quantization_config = quantizationConfig(o);
  config.torch_dtype = 'float16';
  await writeFile(join(dstDir, 'config.json'), JSON.stringify(config, null, 2));

  const reader = await SafetensorsReader.open(srcDir);
  const out: RawTensor[] = [];
  try {
    for (const [name, info] of reader.tensors) {
      const data = await reader.read(name, 'f32');
      const module = name.replace(/\.weight$/, '');
      const quantized = (LINEAR.test(name) && !(o.keepFloat ?? []).some((s) => module.includes(s))) || (o.lmHead && name === 'lm_head.weight');
      if (quantized) {
        out.push(...quantizeLinear(module, data, info.shape[0]!, info.shape[1]!, o));
      } else {
        out.push(f16Tensor(name, info.shape, data));
      }
    }
  } finally {
    await reader.close();
  }
  await writeRawSafetensors(join(dstDir, 'model.safetensors'), out);
  return dstDir;
}

function quantizationConfig(o: QuantizeOptions): Record<string, unknown> {
  const keep = o.keepFloat ?? [];
  switch (o.format) {
    case 'awq':
      return { quant_method: 'awq', bits: 4, group_size: o.groupSize, zero_point: true, version: 'gemm', modules_to_not_convert: keep.length ? keep : null };
    case 'gptq-v1':
    case 'gptq-v2': {
      const all = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'];
      const quantized = all.filter((m) => !keep.some((s) => m.includes(s)));
      return {
        quant_method: 'gptq',
        bits: 4,
        group_size: o.groupSize,
        desc_act: (o.descAct ?? false) || (o.actOrder ?? false),
        sym: o.symmetric ?? true,
        true_sequential: true,
        static_groups: (o.descAct ?? false) && !o.actOrder,
        lm_head: o.lmHead ?? false,
        damp_percent: 0.01,
        checkpoint_format: o.format === 'gptq-v1' ? 'gptq' : 'gptq_v2',
        ...(keep.length ? { modules_in_block_to_quantize: [quantized] } : {}),
      };
    }
    case 'compressed-tensors':
      return {
        quant_method: 'compressed-tensors',
        format: 'pack-quantized',
        quantization_status: 'compressed',
        global_compression_ratio: null,
        kv_cache_scheme: null,
        sparsity_config: {},
        ignore: [...(o.lmHead ? [] : ['lm_head']), ...keep.map((s) => `re:.*${s.replace(/\./g, '\\.')}.*`)],
        config_groups: {
          group_0: {
            targets: ['Linear'],
            input_activations: null,
            output_activations: null,
            weights: {
              num_bits: 4,
              type: 'int',
              symmetric: o.symmetric ?? true,
              strategy: 'group',
              group_size: o.groupSize,
              dynamic: false,
              actorder: o.actOrder ? 'group' : null,
              block_structure: null,
              observer: 'minmax',
              observer_kwargs: {},
            },
          },
        },
      };
  }
}

interface Quantized {
  /** [rows, cols] values 0..15 (compressed-tensors: the signed value + 8). */
  q: Uint8Array;
  /** [rows, groups] f16 bits. */
  scales: Uint16Array;
  /** [rows, groups], the zero in the q domain (0..15). */
  zeros: Uint8Array;
}

/** Round-to-nearest per (row, group), scales rounded to f16 first so the stored scale is the one used. */
export function quantizeRtn(w: Float32Array, rows: number, cols: number, groupSize: number, symmetric: boolean): Quantized {
  const groups = cols / groupSize;
  const q = new Uint8Array(rows * cols);
  const scales = new Uint16Array(rows * groups);
  const zeros = new Uint8Array(rows * groups);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) {
      let lo = 0,
        hi = 0;
      for (let k = g * groupSize; k < (g + 1) * groupSize; k++) {
        lo = Math.min(lo, w[r * cols + k]!);
        hi = Math.max(hi, w[r * cols + k]!);
      }
      if (symmetric) hi = Math.max(hi, -lo);
      const range = symmetric ? (2 * hi) / 15 : (hi - lo) / 15;
      const bits = f32ToF16Bits(new Float32Array([range || 1e-4]))[0]!;
      const scale = f16BitsToF32(new Uint16Array([bits]))[0]!;
      const zero = symmetric ? 8 : Math.min(15, Math.max(0, Math.round(-lo / scale)));
      scales[r * groups + g] = bits;
      zeros[r * groups + g] = zero;
      for (let k = g * groupSize; k < (g + 1) * groupSize; k++) q[r * cols + k] = Math.min(15, Math.max(0, Math.round(w[r * cols + k]! / scale) + zero));
    }
  }
  return { q, scales, zeros };
}

function quantizeLinear(module: string, w: Float32Array, rows: number, cols: number, o: QuantizeOptions): RawTensor[] {
  const g = o.groupSize === -1 ? cols : o.groupSize;
  const groups = cols / g;
  const symmetric = o.format === 'awq' ? false : (o.symmetric ?? true);
  // Activation order: quantize the columns in `perm` order (group j = sorted columns j*g ..), store
  // them in their own order with g_idx[perm[j]] = j / g.
  const perm = o.actOrder ? activationOrder(module, cols) : null;
  const sorted = perm ? Float32Array.from({ length: rows * cols }, (_, i) => w[Math.floor(i / cols) * cols + perm[i % cols]!]!) : w;
  const { q: sortedQ, scales, zeros } = quantizeRtn(sorted, rows, cols, g, symmetric);
  const q = new Uint8Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) q[r * cols + (perm ? perm[j]! : j)] = sortedQ[r * cols + j]!;
  const gIdx = new Int32Array(cols);
  for (let j = 0; j < cols; j++) gIdx[perm ? perm[j]! : j] = Math.floor(j / g);
  const at = (r: number, k: number) => q[r * cols + k]!;
  switch (o.format) {
    case 'awq': {
      // qweight [in, out/8]: nibble i of word (k, c) holds output column 8c + AWQ_ORDER[i].
      const qweight = new Int32Array(cols * (rows / 8));
      for (let k = 0; k < cols; k++) for (let c = 0; c < rows / 8; c++) qweight[k * (rows / 8) + c] = pack8((i) => at(8 * c + AWQ_ORDER[i]!, k));
      const qzeros = new Int32Array(groups * (rows / 8));
      for (let j = 0; j < groups; j++)
        for (let c = 0; c < rows / 8; c++) qzeros[j * (rows / 8) + c] = pack8((i) => zeros[(8 * c + AWQ_ORDER[i]!) * groups + j]!);
      return [
        i32(`${module}.qweight`, [cols, rows / 8], qweight),
        i32(`${module}.qzeros`, [groups, rows / 8], qzeros),
        raw(`${module}.scales`, 'F16', [groups, rows], transposeU16(scales, rows, groups)),
      ];
    }
    case 'gptq-v1':
    case 'gptq-v2': {
      // qweight [in/8, out]: nibble i of word (k8, n) holds input 8*k8 + i; qzeros [groups, out/8] natural order.
      const qweight = new Int32Array((cols / 8) * rows);
      for (let k8 = 0; k8 < cols / 8; k8++) for (let n = 0; n < rows; n++) qweight[k8 * rows + n] = pack8((i) => at(n, 8 * k8 + i));
      const minusOne = o.format === 'gptq-v1' ? 1 : 0;
      const qzeros = new Int32Array(groups * (rows / 8));
      for (let j = 0; j < groups; j++)
        for (let c = 0; c < rows / 8; c++) qzeros[j * (rows / 8) + c] = pack8((i) => (zeros[(8 * c + i) * groups + j]! - minusOne) & 15);
      return [
        i32(`${module}.qweight`, [cols / 8, rows], qweight),
        i32(`${module}.qzeros`, [groups, rows / 8], qzeros),
        raw(`${module}.scales`, 'F16', [groups, rows], transposeU16(scales, rows, groups)),
        i32(`${module}.g_idx`, [cols], gIdx),
      ];
    }
    case 'compressed-tensors': {
      // weight_packed [out, in/8]: value + 8 (= our q), 8 along in; zero point [ceil(out/8), groups] packed along out.
      const packed = new Int32Array(rows * (cols / 8));
      for (let n = 0; n < rows; n++) for (let k8 = 0; k8 < cols / 8; k8++) packed[n * (cols / 8) + k8] = pack8((i) => at(n, 8 * k8 + i));
      const scaleDtype = o.scaleDtype ?? 'BF16';
      const scaleF32 = f16BitsToF32(scales);
      const tensors: RawTensor[] = [
        i32(`${module}.weight_packed`, [rows, cols / 8], packed),
        raw(`${module}.weight_scale`, scaleDtype, [rows, groups], scaleDtype === 'F16' ? scales : f32ToBf16Bits(scaleF32)),
        raw(`${module}.weight_shape`, 'I64', [2], new BigInt64Array([BigInt(rows), BigInt(cols)])),
        ...(perm ? [i32(`${module}.weight_g_idx`, [cols], gIdx)] : []),
      ];
      if (!symmetric) {
        const zp = new Int32Array(Math.ceil(rows / 8) * groups);
        for (let r8 = 0; r8 < Math.ceil(rows / 8); r8++)
          for (let j = 0; j < groups; j++) zp[r8 * groups + j] = pack8((i) => zeros[(8 * r8 + i) * groups + j] ?? 0);
        tensors.push(i32(`${module}.weight_zero_point`, [Math.ceil(rows / 8), groups], zp));
      }
      return tensors;
    }
  }
}

/**
 * A shuffled order of `cols` inputs, the same for every linear of a layer that reads the same input
 * (q/k/v, gate/up), different for o_proj, down_proj and each layer: what GPTQ's act order (inputs by
 * descending Hessian diagonal) looks like to a loader.
 */
function activationOrder(module: string, cols: number): Uint32Array {
  const layer = Number(/layers\.(\d+)\./.exec(module)?.[1] ?? 0);
  const input = /(q_proj|k_proj|v_proj|wqkv)$/.test(module) ? 1 : /(gate_proj|up_proj|w1|w3)$/.test(module) ? 2 : /(o_proj|wo)$/.test(module) ? 3 : 4;
  return seededPermutation(cols, layer * 7919 + input * 104729 + cols);
}

/** Word with nibble i = nibble(i) (0..15). */
export function pack8(nibble: (i: number) => number): number {
  let w = 0;
  for (let i = 0; i < 8; i++) w |= (nibble(i) & 15) << (4 * i);
  return w | 0;
}

function transposeU16(src: Uint16Array, rows: number, cols: number): Uint16Array {
  const out = new Uint16Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c]!;
  return out;
}

function i32(name: string, shape: number[], data: Int32Array): RawTensor {
  return raw(name, 'I32', shape, data);
}

function f16Tensor(name: string, shape: number[], data: Float32Array): RawTensor {
  return raw(name, 'F16', shape, f32ToF16Bits(data));
}

function raw(name: string, dtype: RawTensor['dtype'], shape: number[], data: ArrayBufferView): RawTensor {
  return { name, dtype, shape, bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}
