// Writes a complete, random, deterministic Hugging Face model folder for tests and benches: config.json with
// the architecture's real HF field names, generation_config.json, model.safetensors (or shards + index), and
// stories260K's tokenizer when the vocabulary is its 512 tokens. Tensors are generated and written one at a
// time (sfc32 + Box-Muller), so a 76M-parameter F16 model takes a few seconds and little memory.
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Architecture } from '../../src/checkpoint/config.js';
import type { SafetensorsDtype } from '../../src/checkpoint/safetensors.js';
import { writeSafetensorsStreaming, type TensorSpec } from './safetensors-writer.js';

export interface SyntheticModelOptions {
  architecture: Architecture;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  intermediateSize: number;
  /** Default 512 = the stories260K tokenizer. */
  vocabSize?: number;
  headDim?: number;
  tieWordEmbeddings?: boolean;
  slidingWindow?: number | null;
  /**
   * Llama, Qwen3: attention_bias (q/k/v and o); InternLM2: bias (wqkv and wo); InternLM3: qkv_bias (q/k/v);
   * Qwen2 always has q/k/v biases.
   */
  qkvBias?: boolean;
  /** Written verbatim as config.json rope_scaling. */
  ropeScaling?: object;
  ropeTheta?: number;
  dtype?: SafetensorsDtype;
  numShards?: number;
  seed?: number;
  maxPositionEmbeddings?: number;
}

export const STORIES260K_DIR = fileURLToPath(new URL('../../../shared/models/stories260K', import.meta.url));

const HF_ARCHITECTURE: Record<Architecture, string> = {
  llama: 'LlamaForCausalLM',
  mistral: 'MistralForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
  qwen3: 'Qwen3ForCausalLM',
  internlm2: 'InternLM2ForCausalLM',
  internlm3: 'InternLM3ForCausalLM',
};

const TORCH_DTYPE: Record<SafetensorsDtype, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

/** Writes the model folder into `dir` (created if needed) and returns `dir`. */
export async function writeSyntheticModel(dir: string, options: SyntheticModelOptions): Promise<string> {
  const o = { vocabSize: 512, dtype: 'F32' as SafetensorsDtype, numShards: 1, seed: 1, ...options };
  if (o.numHeads % o.numKvHeads !== 0) throw new Error('writeSyntheticModel: numHeads must be a multiple of numKvHeads');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'config.json'), JSON.stringify(hfConfig(o), null, 2));
  await writeFile(join(dir, 'generation_config.json'), JSON.stringify({ bos_token_id: 1, eos_token_id: 2, do_sample: false }, null, 2));
  if (o.vocabSize === 512) {
    for (const file of ['tokenizer.json', 'tokenizer_config.json']) await copyFile(join(STORIES260K_DIR, file), join(dir, file));
  }
  await writeWeights(dir, o, syntheticTensorSpecs(o));
  return dir;
}

function hfConfig(o: SyntheticModelOptions & { vocabSize: number; dtype: SafetensorsDtype }): Record<string, unknown> {
  const config: Record<string, unknown> = {
    architectures: [HF_ARCHITECTURE[o.architecture]],
    model_type: o.architecture,
    hidden_size: o.hiddenSize,
    intermediate_size: o.intermediateSize,
    num_hidden_layers: o.numLayers,
    num_attention_heads: o.numHeads,
    num_key_value_heads: o.numKvHeads,
    hidden_act: 'silu',
    max_position_embeddings: o.maxPositionEmbeddings ?? 2048,
    rms_norm_eps: 1e-5,
    rope_theta: o.ropeTheta ?? 10000,
    rope_scaling: o.ropeScaling ?? null,
    vocab_size: o.vocabSize,
    bos_token_id: 1,
    eos_token_id: 2,
    tie_word_embeddings: o.tieWordEmbeddings ?? false,
    torch_dtype: TORCH_DTYPE[o.dtype],
  };
  if (o.headDim !== undefined) config.head_dim = o.headDim;
  // Qwen3Config's head_dim default is 128, not hidden/heads: always write it, as the real configs do.
  if (o.architecture === 'qwen3') config.head_dim = o.headDim ?? o.hiddenSize / o.numHeads;
  switch (o.architecture) {
    case 'llama':
      config.attention_bias = o.qkvBias ?? false;
      break;
    case 'mistral':
      config.sliding_window = o.slidingWindow ?? null;
      break;
    case 'qwen2':
      config.use_sliding_window = o.slidingWindow != null;
      config.sliding_window = o.slidingWindow ?? 4096;
      config.max_window_layers = o.slidingWindow != null ? 0 : o.numLayers;
      break;
    case 'qwen3':
      config.attention_bias = o.qkvBias ?? false;
      config.use_sliding_window = false;
      config.sliding_window = null;
      config.max_window_layers = o.numLayers;
      break;
    case 'internlm2':
      config.bias = o.qkvBias ?? false;
      config.auto_map = { AutoConfig: 'configuration_internlm2.InternLM2Config', AutoModelForCausalLM: 'modeling_internlm2.InternLM2ForCausalLM' };
      break;
    case 'internlm3':
      config.qkv_bias = o.qkvBias ?? false;
      config.bias = false;
      config.auto_map = { AutoConfig: 'configuration_internlm3.InternLM3Config', AutoModelForCausalLM: 'modeling_internlm3.InternLM3ForCausalLM' };
      break;
  }
  if (o.architecture !== 'mistral' && o.architecture !== 'qwen2' && o.slidingWindow != null) {
    throw new Error(`writeSyntheticModel: ${o.architecture} has no sliding window`);
  }
  return config;
}

type Init = 'matrix' | 'norm' | 'bias';
interface SyntheticSpec extends TensorSpec {
  init: Init;
}

/** The HF tensors of the model, in checkpoint order. */
export function syntheticTensorSpecs(o: SyntheticModelOptions & { vocabSize: number; dtype: SafetensorsDtype }): SyntheticSpec[] {
  const headDim = o.headDim ?? o.hiddenSize / o.numHeads;
  const qDim = o.numHeads * headDim,
    kvDim = o.numKvHeads * headDim,
    h = o.hiddenSize,
    ffn = o.intermediateSize;
  const specs: SyntheticSpec[] = [];
  const add = (name: string, shape: number[], init: Init) => specs.push({ name, shape, dtype: o.dtype, init });
  const internlm = o.architecture === 'internlm2';
  const qkvBias = o.architecture === 'qwen2' || (o.qkvBias ?? false);
  const oBias = (o.architecture === 'llama' || o.architecture === 'qwen3' || o.architecture === 'internlm2') && (o.qkvBias ?? false);
  add(internlm ? 'model.tok_embeddings.weight' : 'model.embed_tokens.weight', [o.vocabSize, h], 'matrix');
  for (let i = 0; i < o.numLayers; i++) {
    const p = `model.layers.${i}.`;
    if (internlm) {
      add(`${p}attention.wqkv.weight`, [qDim + 2 * kvDim, h], 'matrix');
      if (qkvBias) add(`${p}attention.wqkv.bias`, [qDim + 2 * kvDim], 'bias');
      add(`${p}attention.wo.weight`, [h, qDim], 'matrix');
      if (oBias) add(`${p}attention.wo.bias`, [h], 'bias');
      add(`${p}feed_forward.w1.weight`, [ffn, h], 'matrix');
      add(`${p}feed_forward.w3.weight`, [ffn, h], 'matrix');
      add(`${p}feed_forward.w2.weight`, [h, ffn], 'matrix');
      add(`${p}attention_norm.weight`, [h], 'norm');
      add(`${p}ffn_norm.weight`, [h], 'norm');
      continue;
    }
    add(`${p}self_attn.q_proj.weight`, [qDim, h], 'matrix');
    add(`${p}self_attn.k_proj.weight`, [kvDim, h], 'matrix');
    add(`${p}self_attn.v_proj.weight`, [kvDim, h], 'matrix');
    if (qkvBias) {
      add(`${p}self_attn.q_proj.bias`, [qDim], 'bias');
      add(`${p}self_attn.k_proj.bias`, [kvDim], 'bias');
      add(`${p}self_attn.v_proj.bias`, [kvDim], 'bias');
    }
    add(`${p}self_attn.o_proj.weight`, [h, qDim], 'matrix');
    if (o.architecture === 'qwen3') {
      add(`${p}self_attn.q_norm.weight`, [headDim], 'norm');
      add(`${p}self_attn.k_norm.weight`, [headDim], 'norm');
    }
    if (oBias) add(`${p}self_attn.o_proj.bias`, [h], 'bias');
    add(`${p}mlp.gate_proj.weight`, [ffn, h], 'matrix');
    add(`${p}mlp.up_proj.weight`, [ffn, h], 'matrix');
    add(`${p}mlp.down_proj.weight`, [h, ffn], 'matrix');
    add(`${p}input_layernorm.weight`, [h], 'norm');
    add(`${p}post_attention_layernorm.weight`, [h], 'norm');
  }
  add('model.norm.weight', [h], 'norm');
  if (!(o.tieWordEmbeddings ?? false)) add(internlm ? 'output.weight' : 'lm_head.weight', [o.vocabSize, h], 'matrix');
  return specs;
}

async function writeWeights(dir: string, o: { numShards: number; seed: number }, specs: SyntheticSpec[]): Promise<void> {
  const produce = (spec: TensorSpec) => randomTensor(spec as SyntheticSpec, o.seed);
  if (o.numShards <= 1) {
    await writeSafetensorsStreaming(join(dir, 'model.safetensors'), specs, produce, { format: 'pt' });
    return;
  }
  // Contiguous groups of roughly equal size, like transformers' save_pretrained(max_shard_size).
  const sizes = specs.map((s) => s.shape.reduce((a, b) => a * b, 1));
  const total = sizes.reduce((a, b) => a + b, 0);
  const shards: SyntheticSpec[][] = Array.from({ length: o.numShards }, () => []);
  let running = 0;
  specs.forEach((spec, i) => {
    const shard = Math.min(o.numShards - 1, Math.floor((running / total) * o.numShards));
    shards[shard]!.push(spec);
    running += sizes[i]!;
  });
  const weightMap: Record<string, string> = {};
  let totalBytes = 0;
  for (const [i, shard] of shards.entries()) {
    const file = `model-${String(i + 1).padStart(5, '0')}-of-${String(o.numShards).padStart(5, '0')}.safetensors`;
    for (const spec of shard) weightMap[spec.name] = file;
    totalBytes += await writeSafetensorsStreaming(join(dir, file), shard, produce, { format: 'pt' });
  }
  await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: totalBytes }, weight_map: weightMap }, null, 2));
}

/** Matrices ~ N(0, 1/fan_in); norms uniform in [0.9, 1.1]; biases ~ N(0, 0.02^2). Seeded by (seed, name). */
function randomTensor(spec: SyntheticSpec, seed: number): Float32Array {
  const n = spec.shape.reduce((a, b) => a * b, 1);
  const rng = sfc32(seed, hashName(spec.name));
  const out = new Float32Array(n);
  if (spec.init === 'norm') {
    for (let i = 0; i < n; i++) out[i] = 0.9 + 0.2 * rng();
    return out;
  }
  const std = spec.init === 'bias' ? 0.02 : 1 / Math.sqrt(spec.shape[spec.shape.length - 1]!);
  fillNormal(out, rng, std);
  return out;
}

function fillNormal(out: Float32Array, rng: () => number, std: number): void {
  for (let i = 0; i < out.length; i += 2) {
    // Box-Muller: two independent normals from two uniforms; 1 - u keeps log's argument in (0, 1].
    const r = Math.sqrt(-2 * Math.log(1 - rng())) * std;
    const theta = 2 * Math.PI * rng();
    out[i] = r * Math.cos(theta);
    if (i + 1 < out.length) out[i + 1] = r * Math.sin(theta);
  }
}

/** sfc32: a small, fast 32-bit PRNG with good statistical quality; returns uniforms in [0, 1). */
function sfc32(seed: number, stream: number): () => number {
  let a = 0x9e3779b9 ^ seed,
    b = 0x243f6a88 ^ stream,
    c = 0xb7e15162,
    d = 1;
  const next = () => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  for (let i = 0; i < 12; i++) next(); // mix the seed in
  return next;
}

/** FNV-1a, so each tensor's values depend on its name, not on write order or sharding. */
function hashName(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
