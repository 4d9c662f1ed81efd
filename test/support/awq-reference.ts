// An independent reader of AutoAWQ GEMM checkpoints for tests and benches, written from the format
// definition alone (not from src/quantize/): qweight int32 [in, out/8] whose nibble i of word (k, c)
// holds column 8c + [0,2,4,6,1,3,5,7][i], qzeros int32 [in/G, out/8] packed alike, scales f16
// [in/G, out], W[o, k] = (q - z) * s. dequantizeAwqFolder turns a quantized folder back into a plain
// f32 Hugging Face folder that the f16 engine and the CPU reference model load, so quantization error
// can be measured without the 4-bit kernels.
import { copyFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { f16BitsToF32 } from '../../src/common/half.js';
import { writeSafetensors } from './safetensors-writer.js';

/** Output column held by nibble i of a packed word (AutoAWQ's order_map). */
const NIBBLE_COLUMN = [0, 2, 4, 6, 1, 3, 5, 7];

export interface RawTensor {
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

/** Every tensor of one safetensors file, raw (any dtype). */
export async function readRawSafetensors(path: string): Promise<Map<string, RawTensor>> {
  const file = await readFile(path);
  const headerLength = Number(file.readBigUInt64LE(0));
  const header = JSON.parse(file.subarray(8, 8 + headerLength).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const out = new Map<string, RawTensor>();
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const start = 8 + headerLength + t.data_offsets[0];
    const bytes = new Uint8Array(t.data_offsets[1] - t.data_offsets[0]);
    bytes.set(file.subarray(start, start + bytes.length));
    out.set(name, { dtype: t.dtype, shape: t.shape, bytes });
  }
  return out;
}

/** Every tensor of a model folder (single file or index + shards). */
export async function readRawFolder(dir: string): Promise<Map<string, RawTensor>> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.safetensors'));
  const all = new Map<string, RawTensor>();
  for (const f of files) for (const [name, t] of await readRawSafetensors(join(dir, f))) all.set(name, t);
  return all;
}

export function rawToF32(t: RawTensor): Float32Array {
  const aligned = new Uint8Array(t.bytes); // own buffer, aligned
  if (t.dtype === 'F32') return new Float32Array(aligned.buffer);
  if (t.dtype === 'F16') return f16BitsToF32(new Uint16Array(aligned.buffer));
  throw new Error(`rawToF32: dtype ${t.dtype}`);
}

/** Unpacks an int32 [rows, words] AWQ-packed tensor into codes [rows, 8 * words], natural column order. */
export function unpackAwqWords(words: Uint32Array, rows: number, numWords: number): Uint8Array {
  const cols = numWords * 8;
  const out = new Uint8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < numWords; c++) {
      const word = words[r * numWords + c]!;
      for (let i = 0; i < 8; i++) out[r * cols + 8 * c + NIBBLE_COLUMN[i]!] = (word >>> (4 * i)) & 0xf;
    }
  }
  return out;
}

/** W [out, in] of one AWQ linear from its three tensors. */
export function dequantizeAwqLinear(qweight: RawTensor, qzeros: RawTensor, scales: RawTensor): { w: Float32Array; out: number; in: number; groupSize: number } {
  const [inF, outWords] = qweight.shape as [number, number];
  const out = outWords * 8;
  const numGroups = qzeros.shape[0]!;
  const groupSize = inF / numGroups;
  const q = unpackAwqWords(new Uint32Array(new Uint8Array(qweight.bytes).buffer), inF, outWords); // [in, out]
  const z = unpackAwqWords(new Uint32Array(new Uint8Array(qzeros.bytes).buffer), numGroups, outWords); // [groups, out]
  const s = rawToF32(scales); // [groups, out]
  const w = new Float32Array(out * inF);
  for (let k = 0; k < inF; k++) {
    const g = Math.floor(k / groupSize);
    for (let o = 0; o < out; o++) w[o * inF + k] = (q[k * out + o]! - z[g * out + o]!) * s[g * out + o]!;
  }
  return { w, out, in: inF, groupSize };
}

/** Writes `awqDir` back as an unquantized f32 HF folder in `outDir` (quantization_config dropped). */
export async function dequantizeAwqFolder(awqDir: string, outDir: string): Promise<void> {
  await mkdir(outDir, { recursive: true });
  const raw = await readRawFolder(awqDir);
  const tensors: { name: string; dtype: 'F32'; shape: number[]; data: Float32Array }[] = [];
  for (const [name, t] of raw) {
    if (name.endsWith('.qzeros') || name.endsWith('.scales')) continue;
    if (name.endsWith('.qweight')) {
      const base = name.slice(0, -'.qweight'.length);
      const { w, out, in: inF } = dequantizeAwqLinear(t, raw.get(`${base}.qzeros`)!, raw.get(`${base}.scales`)!);
      tensors.push({ name: `${base}.weight`, dtype: 'F32', shape: [out, inF], data: w });
    } else {
      tensors.push({ name, dtype: 'F32', shape: t.shape, data: rawToF32(t) });
    }
  }
  await writeSafetensors(join(outDir, 'model.safetensors'), tensors, { format: 'pt' });
  const config = JSON.parse(await readFile(join(awqDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  delete config.quantization_config;
  config.torch_dtype = 'float32';
  await writeFile(join(outDir, 'config.json'), JSON.stringify(config, null, 2));
  for (const f of await readdir(awqDir)) {
    if (f.startsWith('tokenizer') || f === 'generation_config.json') await copyFile(join(awqDir, f), join(outDir, f));
  }
}
