// Hugging Face tensor names -> the canonical tensors the runner uses, per architecture, streamed one at a
// time so peak host memory stays near one tensor. Canonical names and shapes ([out, in], row-major):
//   'embed' [vocab, hidden]; 'lm_head' [vocab, hidden] (absent when tied); 'norm' [hidden];
//   'layers.{i}.input_norm' / '.post_norm' [hidden];
//   '.q' [numHeads*headDim, hidden]; '.k' / '.v' [numKvHeads*headDim, hidden]; '.o' [hidden, numHeads*headDim];
//   '.q_bias' '.k_bias' '.v_bias' (qkvBias); '.q_norm' / '.k_norm' [headDim] (qkNorm, Qwen3); '.o_bias' (oBias);
//   '.gate' / '.up' [intermediate, hidden]; '.down' [hidden, intermediate].
// In a 4-bit checkpoint (config.quantization) the projections quantization_config covers arrive as
// CanonicalQ4Tensor (same names and [out, in] shapes, repacked by quantized.ts); everything else as before.
import { strict as assert } from 'node:assert';
import type { ModelConfig } from './config.js';
import type { LoadProgress } from '../common/progress.js';
import { q4ConcatRows, q4SliceRows, type Q4Matrix } from '../common/q4.js';
import { isQuantizedLinear } from './quantization.js';
import { checkQ4Linear, hasQ4Linear, q4GroupSize, readQ4Linear } from './quantized.js';
import type { SafetensorsReader } from './safetensors.js';

/** A float tensor (matrices in the caller's matrixDtype, norms and biases f32). */
export interface CanonicalTensor {
  name: string;
  shape: number[];
  data: Float32Array | Uint16Array;
  dtype: 'f32' | 'f16';
}

/** A 4-bit projection of a quantized checkpoint, shape [out, in]. */
export interface CanonicalQ4Tensor {
  name: string;
  shape: number[];
  dtype: 'q4';
  q4: Q4Matrix;
}

export type CanonicalWeight = CanonicalTensor | CanonicalQ4Tensor;

/** One read from the checkpoint, yielding one canonical tensor, or three for InternLM2's packed wqkv. */
interface PlannedRead {
  hfName: string;
  /** The 4-bit linear's module prefix (hfName without '.weight') when quantization_config covers it. */
  q4Prefix?: string;
  shape: number[];
  /** Matrices follow the caller's matrixDtype; norms and biases are always f32. */
  isMatrix: boolean;
  outputs: { name: string; shape: number[] }[];
  /** Splits a packed q/k/v tensor; absent for one-to-one tensors. */
  splitPackedQkv?: boolean;
}

/** Every canonical tensor the runner will receive, in load order. */
export function canonicalTensorNames(config: ModelConfig): string[] {
  return planReads(config).flatMap((r) => r.outputs.map((o) => o.name));
}

/** Canonical name -> group size of every tensor that arrives 4-bit (empty for a float checkpoint), for memory planning. */
export function q4TensorGroupSizes(config: ModelConfig): Map<string, number> {
  const out = new Map<string, number>();
  for (const read of planReads(config)) {
    if (read.q4Prefix === undefined) continue;
    const g = q4GroupSize(config.quantization!, read.q4Prefix, read.shape[1]!);
    for (const o of read.outputs) out.set(o.name, g);
  }
  return out;
}

/**
 * Streams the canonical tensors of a float checkpoint to `onTensor` (see loadCanonicalWeights); a 4-bit
 * checkpoint is refused here, since this caller cannot take CanonicalQ4Tensor.
 */
export async function loadCanonicalTensors(
  reader: SafetensorsReader,
  config: ModelConfig,
  matrixDtype: 'f32' | 'f16',
  onTensor: (t: CanonicalTensor) => Promise<void> | void,
  progress?: LoadProgress,
): Promise<void> {
  if (config.quantization) {
    throw new Error(
      `${reader.modelDir} is a 4-bit ${config.quantization.method} checkpoint; this loader reads float weights only (loadCanonicalWeights reads both)`,
    );
  }
  await loadCanonicalWeights(reader, config, matrixDtype, (t) => onTensor(t as CanonicalTensor), progress);
}

/**
 * Streams canonical tensors to `onTensor`, awaiting each call before reading the next: floats as
 * CanonicalTensor, the 4-bit projections of a quantized checkpoint as CanonicalQ4Tensor.
 * Missing tensor -> Error naming the HF tensor; wrong shape -> Error naming tensor, expected and actual shape.
 */
export async function loadCanonicalWeights(
  reader: SafetensorsReader,
  config: ModelConfig,
  matrixDtype: 'f32' | 'f16',
  onTensor: (t: CanonicalWeight) => Promise<void> | void,
  progress?: LoadProgress,
): Promise<void> {
  // 1. Plan every read and check names and shapes up front, so a bad checkpoint fails before any upload.
  const plan = planReads(config);
  for (const read of plan) checkTensor(reader, config, read);
  const bytesOf = (read: PlannedRead) => {
    const n = read.shape.reduce((a, b) => a * b, 1);
    if (read.q4Prefix === undefined) return n * (read.isMatrix && matrixDtype === 'f16' ? 2 : 4);
    // Half a byte per weight plus a 2-byte scale and a 1-byte zero per group.
    return n / 2 + (n / q4GroupSize(config.quantization!, read.q4Prefix, read.shape[1]!)) * 3;
  };
  progress?.start(
    plan.reduce((sum, r) => sum + bytesOf(r), 0),
    config.numLayers,
  );
  // 2. Read, split where packed, and hand over one tensor at a time.
  for (const read of plan) {
    if (read.q4Prefix !== undefined) {
      const [rows, cols] = read.shape as [number, number];
      const m = await readQ4Linear(reader, config.quantization!, read.q4Prefix, rows, cols);
      const parts = read.splitPackedQkv ? splitPackedQkvQ4(m, config) : [m];
      for (const [i, out] of read.outputs.entries()) await onTensor({ name: out.name, shape: out.shape, dtype: 'q4', q4: parts[i]! });
    } else {
      const dtype = read.isMatrix ? matrixDtype : 'f32';
      const data = await reader.read(read.hfName, dtype);
      const parts = read.splitPackedQkv ? splitPackedQkv(data, config, read.shape.length === 2 ? config.hiddenSize : 1) : [data];
      for (const [i, out] of read.outputs.entries()) {
        await onTensor({ name: out.name, shape: out.shape, data: parts[i]!, dtype });
      }
    }
    progress?.advance(bytesOf(read), read.outputs[read.outputs.length - 1]!.name);
  }
  progress?.finish();
}

function checkTensor(reader: SafetensorsReader, config: ModelConfig, read: PlannedRead): void {
  const canonical = read.outputs.map((o) => o.name).join('/');
  const q = config.quantization;
  if (read.q4Prefix !== undefined) {
    checkQ4Linear(reader, q!, read.q4Prefix, read.shape[0]!, read.shape[1]!, canonical);
    return;
  }
  const module = read.hfName.replace(/\.weight$/, '');
  if (q && read.isMatrix && hasQ4Linear(reader, q, module)) {
    const name = read.outputs[0]!.name;
    const where =
      name === 'embed'
        ? 'a 4-bit embedding table is not supported'
        : name === 'lm_head'
          ? `quantization_config leaves lm_head in 16 bits${q.method === 'gptq' ? ' (lm_head: true would say otherwise)' : q.method === 'awq' ? ' (AWQ keeps lm_head in 16 bits)' : ' (ignore / targets)'}`
          : `quantization_config leaves it in 16 bits${q.method === 'compressed-tensors' ? ' (ignore / targets)' : q.method === 'awq' ? ' (modules_to_not_convert)' : ' (modules_in_block_to_quantize)'}`;
    throw new Error(`"${module}" is stored in 4 bits in ${reader.modelDir}, but ${where}`);
  }
  if (!reader.has(read.hfName)) {
    throw new Error(
      `tensor "${read.hfName}" (${canonical}) is missing from the safetensors files in ${reader.modelDir}; ` +
        `config.json says ${config.hfArchitecture} with ${config.numLayers} layers — check that the weights match the config`,
    );
  }
  const actual = reader.info(read.hfName).shape; // also throws for unsupported dtypes, naming the tensor
  if (actual.length !== read.shape.length || actual.some((d, i) => d !== read.shape[i])) {
    throw new Error(
      `tensor "${read.hfName}" (${canonical}) has shape [${actual.join(', ')}], but config.json implies ` +
        `[${read.shape.join(', ')}] — the weights do not match config.json`,
    );
  }
}

function planReads(config: ModelConfig): PlannedRead[] {
  const q = config.quantization;
  const linear = (read: PlannedRead): PlannedRead => {
    const module = read.hfName.replace(/\.weight$/, '');
    return q && read.isMatrix && isQuantizedLinear(q, module) ? { ...read, q4Prefix: module } : read;
  };
  const names = config.architecture === 'internlm2' ? INTERNLM2_NAMES : HF_LLAMA_NAMES;
  const { hiddenSize: h, numHeads, numKvHeads, headDim, intermediateSize: ffn, vocabSize } = config;
  const qDim = numHeads * headDim;
  const kvDim = numKvHeads * headDim;
  const one = (hfName: string, name: string, shape: number[]): PlannedRead => ({
    hfName,
    shape,
    isMatrix: shape.length === 2,
    outputs: [{ name, shape }],
  });

  const reads: PlannedRead[] = [one(names.embed, 'embed', [vocabSize, h])];
  for (let i = 0; i < config.numLayers; i++) {
    const hf = (suffix: string) => `${names.layerPrefix}${i}.${suffix}`;
    const c = (suffix: string) => `layers.${i}.${suffix}`;
    reads.push(one(hf(names.inputNorm), c('input_norm'), [h]));
    if (names.packedQkv) {
      const packedRows = qDim + 2 * kvDim;
      const qkv = (suffix: string, shapeTail: number[]): { name: string; shape: number[] }[] => [
        { name: c(`q${suffix}`), shape: [qDim, ...shapeTail] },
        { name: c(`k${suffix}`), shape: [kvDim, ...shapeTail] },
        { name: c(`v${suffix}`), shape: [kvDim, ...shapeTail] },
      ];
      reads.push(linear({ hfName: hf(`${names.packedQkv}.weight`), shape: [packedRows, h], isMatrix: true, outputs: qkv('', [h]), splitPackedQkv: true }));
      if (config.qkvBias) {
        reads.push({ hfName: hf(`${names.packedQkv}.bias`), shape: [packedRows], isMatrix: false, outputs: qkv('_bias', []), splitPackedQkv: true });
      }
    } else {
      reads.push(linear(one(hf(`${names.q}.weight`), c('q'), [qDim, h])));
      reads.push(linear(one(hf(`${names.k}.weight`), c('k'), [kvDim, h])));
      reads.push(linear(one(hf(`${names.v}.weight`), c('v'), [kvDim, h])));
      if (config.qkvBias) {
        reads.push(one(hf(`${names.q}.bias`), c('q_bias'), [qDim]));
        reads.push(one(hf(`${names.k}.bias`), c('k_bias'), [kvDim]));
        reads.push(one(hf(`${names.v}.bias`), c('v_bias'), [kvDim]));
      }
    }
    if (config.qkNorm) {
      reads.push(one(hf('self_attn.q_norm.weight'), c('q_norm'), [headDim]));
      reads.push(one(hf('self_attn.k_norm.weight'), c('k_norm'), [headDim]));
    }
    reads.push(linear(one(hf(`${names.o}.weight`), c('o'), [h, qDim])));
    if (config.oBias) reads.push(one(hf(`${names.o}.bias`), c('o_bias'), [h]));
    reads.push(one(hf(names.postNorm), c('post_norm'), [h]));
    reads.push(linear(one(hf(names.gate), c('gate'), [ffn, h])));
    reads.push(linear(one(hf(names.up), c('up'), [ffn, h])));
    reads.push(linear(one(hf(names.down), c('down'), [h, ffn])));
  }
  reads.push(one(names.norm, 'norm', [h]));
  if (q?.lmHead && config.tieWordEmbeddings) {
    throw new Error('config.json: quantization_config quantizes lm_head, but tie_word_embeddings is true (lm_head is the 16-bit embedding table)');
  }
  if (!config.tieWordEmbeddings) {
    const lmHead = one(names.lmHead, 'lm_head', [vocabSize, h]);
    reads.push(q?.lmHead ? { ...lmHead, q4Prefix: names.lmHead.replace(/\.weight$/, '') } : lmHead);
  }
  return reads;
}

interface HfNames {
  embed: string;
  lmHead: string;
  norm: string;
  layerPrefix: string;
  inputNorm: string;
  postNorm: string;
  q: string;
  k: string;
  v: string;
  o: string;
  packedQkv: string | null;
  gate: string;
  up: string;
  down: string;
}

const HF_LLAMA_NAMES: HfNames = {
  embed: 'model.embed_tokens.weight',
  lmHead: 'lm_head.weight',
  norm: 'model.norm.weight',
  layerPrefix: 'model.layers.',
  inputNorm: 'input_layernorm.weight',
  postNorm: 'post_attention_layernorm.weight',
  q: 'self_attn.q_proj',
  k: 'self_attn.k_proj',
  v: 'self_attn.v_proj',
  o: 'self_attn.o_proj',
  packedQkv: null,
  gate: 'mlp.gate_proj.weight',
  up: 'mlp.up_proj.weight',
  down: 'mlp.down_proj.weight',
};

const INTERNLM2_NAMES: HfNames = {
  embed: 'model.tok_embeddings.weight',
  lmHead: 'output.weight',
  norm: 'model.norm.weight',
  layerPrefix: 'model.layers.',
  inputNorm: 'attention_norm.weight',
  postNorm: 'ffn_norm.weight',
  q: '',
  k: '',
  v: '',
  o: 'attention.wo',
  packedQkv: 'attention.wqkv',
  gate: 'feed_forward.w1.weight',
  up: 'feed_forward.w3.weight',
  down: 'feed_forward.w2.weight',
};

/**
 * InternLM2 packs q, k and v per kv head: for each kv head h, `group` query heads (q_{h*group} ..), then k_h,
 * then v_h, each headDim rows of `rowLength` values. Returns [q, k, v] with heads in natural order.
 */
export function splitPackedQkv<T extends Float32Array | Uint16Array>(packed: T, config: ModelConfig, rowLength: number): [T, T, T] {
  const { numHeads, numKvHeads, headDim } = config;
  const group = numHeads / numKvHeads;
  const headSize = headDim * rowLength;
  assert.equal(packed.length, (group + 2) * numKvHeads * headSize, 'packed wqkv size must match the config');
  const make = (n: number) => new (packed.constructor as { new (n: number): T })(n);
  const q = make(numHeads * headSize),
    k = make(numKvHeads * headSize),
    v = make(numKvHeads * headSize);
  for (let h = 0; h < numKvHeads; h++) {
    const base = h * (group + 2) * headSize;
    for (let j = 0; j < group; j++) {
      q.set(packed.subarray(base + j * headSize, base + (j + 1) * headSize), (h * group + j) * headSize);
    }
    k.set(packed.subarray(base + group * headSize, base + (group + 1) * headSize), h * headSize);
    v.set(packed.subarray(base + (group + 1) * headSize, base + (group + 2) * headSize), h * headSize);
  }
  return [q, k, v];
}

/** The inverse of splitPackedQkv: q, k and v (heads in natural order) packed per kv head as InternLM2 stores wqkv. */
export function packQkv<T extends Float32Array | Uint16Array>(q: T, k: T, v: T, config: ModelConfig, rowLength: number): T {
  const { numHeads, numKvHeads, headDim } = config;
  const group = numHeads / numKvHeads;
  const headSize = headDim * rowLength;
  assert.equal(q.length, numHeads * headSize, 'q size must match the config');
  assert.ok(k.length === numKvHeads * headSize && v.length === k.length, 'k and v sizes must match the config');
  const packed = new (q.constructor as { new (n: number): T })((group + 2) * numKvHeads * headSize);
  for (let h = 0; h < numKvHeads; h++) {
    const base = h * (group + 2) * headSize;
    packed.set(q.subarray(h * group * headSize, (h + 1) * group * headSize), base);
    packed.set(k.subarray(h * headSize, (h + 1) * headSize), base + group * headSize);
    packed.set(v.subarray(h * headSize, (h + 1) * headSize), base + (group + 1) * headSize);
  }
  return packed;
}

/** splitPackedQkv for a 4-bit wqkv: the same per-kv-head row order, as Q4Matrix row slices. */
function splitPackedQkvQ4(packed: Q4Matrix, config: ModelConfig): [Q4Matrix, Q4Matrix, Q4Matrix] {
  const { numHeads, numKvHeads, headDim } = config;
  const group = numHeads / numKvHeads;
  assert.equal(packed.rows, (group + 2) * numKvHeads * headDim, 'packed wqkv rows must match the config');
  const q: Q4Matrix[] = [],
    k: Q4Matrix[] = [],
    v: Q4Matrix[] = [];
  for (let h = 0; h < numKvHeads; h++) {
    const base = h * (group + 2) * headDim;
    q.push(q4SliceRows(packed, base, group * headDim));
    k.push(q4SliceRows(packed, base + group * headDim, headDim));
    v.push(q4SliceRows(packed, base + (group + 1) * headDim, headDim));
  }
  return [q4ConcatRows(q), q4ConcatRows(k), q4ConcatRows(v)];
}
