// Hugging Face tensor names -> the canonical tensors the runner uses, per architecture, streamed one at a
// time so peak host memory stays near one tensor. Canonical names and shapes ([out, in], row-major):
//   'embed' [vocab, hidden]; 'lm_head' [vocab, hidden] (absent when tied); 'norm' [hidden];
//   'layers.{i}.input_norm' / '.post_norm' [hidden];
//   '.q' [numHeads*headDim, hidden]; '.k' / '.v' [numKvHeads*headDim, hidden]; '.o' [hidden, numHeads*headDim];
//   '.q_bias' '.k_bias' '.v_bias' (qkvBias); '.q_norm' / '.k_norm' [headDim] (qkNorm, Qwen3); '.o_bias' (oBias);
//   '.gate' / '.up' [intermediate, hidden]; '.down' [hidden, intermediate].
import { strict as assert } from 'node:assert';
import type { ModelConfig } from './config.js';
import type { LoadProgress } from '../common/progress.js';
import type { SafetensorsReader } from './safetensors.js';

export interface CanonicalTensor {
  name: string;
  shape: number[];
  data: Float32Array | Uint16Array;
  dtype: 'f32' | 'f16';
}

/** One read from the checkpoint, yielding one canonical tensor, or three for InternLM2's packed wqkv. */
interface PlannedRead {
  hfName: string;
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

/**
 * Streams canonical tensors to `onTensor`, awaiting each call before reading the next.
 * Missing tensor -> Error naming the HF tensor; wrong shape -> Error naming tensor, expected and actual shape.
 */
export async function loadCanonicalTensors(
  reader: SafetensorsReader,
  config: ModelConfig,
  matrixDtype: 'f32' | 'f16',
  onTensor: (t: CanonicalTensor) => Promise<void> | void,
  progress?: LoadProgress,
): Promise<void> {
  // 1. Plan every read and check names and shapes up front, so a bad checkpoint fails before any upload.
  const plan = planReads(config);
  for (const read of plan) checkTensor(reader, config, read);
  const bytesOf = (read: PlannedRead) => read.shape.reduce((a, b) => a * b, 1) * (read.isMatrix && matrixDtype === 'f16' ? 2 : 4);
  progress?.start(
    plan.reduce((sum, r) => sum + bytesOf(r), 0),
    config.numLayers,
  );
  // 2. Read, split where packed, and hand over one tensor at a time.
  for (const read of plan) {
    const dtype = read.isMatrix ? matrixDtype : 'f32';
    const data = await reader.read(read.hfName, dtype);
    const parts = read.splitPackedQkv ? splitPackedQkv(data, config, read.shape.length === 2 ? config.hiddenSize : 1) : [data];
    for (const [i, out] of read.outputs.entries()) {
      await onTensor({ name: out.name, shape: out.shape, data: parts[i]!, dtype });
    }
    progress?.advance(bytesOf(read), read.outputs[read.outputs.length - 1]!.name);
  }
  progress?.finish();
}

function checkTensor(reader: SafetensorsReader, config: ModelConfig, read: PlannedRead): void {
  const canonical = read.outputs.map((o) => o.name).join('/');
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
      reads.push({ hfName: hf(`${names.packedQkv}.weight`), shape: [packedRows, h], isMatrix: true, outputs: qkv('', [h]), splitPackedQkv: true });
      if (config.qkvBias) {
        reads.push({ hfName: hf(`${names.packedQkv}.bias`), shape: [packedRows], isMatrix: false, outputs: qkv('_bias', []), splitPackedQkv: true });
      }
    } else {
      reads.push(one(hf(`${names.q}.weight`), c('q'), [qDim, h]));
      reads.push(one(hf(`${names.k}.weight`), c('k'), [kvDim, h]));
      reads.push(one(hf(`${names.v}.weight`), c('v'), [kvDim, h]));
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
    reads.push(one(hf(`${names.o}.weight`), c('o'), [h, qDim]));
    if (config.oBias) reads.push(one(hf(`${names.o}.bias`), c('o_bias'), [h]));
    reads.push(one(hf(names.postNorm), c('post_norm'), [h]));
    reads.push(one(hf(names.gate), c('gate'), [ffn, h]));
    reads.push(one(hf(names.up), c('up'), [ffn, h]));
    reads.push(one(hf(names.down), c('down'), [h, ffn]));
  }
  reads.push(one(names.norm, 'norm', [h]));
  if (!config.tieWordEmbeddings) reads.push(one(names.lmHead, 'lm_head', [vocabSize, h]));
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
