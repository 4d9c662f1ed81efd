// How much of the (declared) GPU memory goes to weights, activations and the KV cache. WebGPU cannot
// query free memory, so the budget is --gpu-memory (or a default per adapter kind), and the KV pool is
// --cache-max-entry-count of what remains after weights and activations (LMDeploy's meaning), unless
// --kv-cache-blocks gives it outright.
import { formatBytes } from '../common/bytes.js';
import { isQuantizedKvCache, type KvCacheDtype } from '../common/types.js';

/** GPU memory reads best in binary units (GiB), as drivers and --gpu-memory state it. */
const gib = (n: number) => formatBytes(n, 'binary');
import type { GpuDevice } from '../gpu/index.js';
import type { ModelConfig } from '../checkpoint/config.js';
import { q4TensorGroupSizes } from '../checkpoint/weights.js';
import type { ShardLayout } from './sharding.js';

/** A quantized cache row's pack2x16float(scale, min), kept per (token, kv head) for K and for V. */
export const KV_QUANT_PARAM_BYTES = 4;

/** Bytes of one token's K (or V) elements for one kv head, without a quantized row's (scale, min) pair. */
export function kvCacheDataBytesPerTokenHead(dtype: KvCacheDtype, headDim: number): number {
  switch (dtype) {
    case 'f32':
      return 4 * headDim;
    case 'f16':
      return 2 * headDim;
    case 'int8':
      return headDim;
    case 'int4':
      return headDim / 2;
  }
}

/**
 * Bytes of one token's K (or V) for one kv head, a quantized row's (scale, min) pair included: the
 * unit of KV memory. head_dim 128: f16 256, int8 132 (1.94x the tokens of f16), int4 68 (3.76x).
 */
export function kvCacheBytesPerTokenHead(dtype: KvCacheDtype, headDim: number): number {
  return kvCacheDataBytesPerTokenHead(dtype, headDim) + (isQuantizedKvCache(dtype) ? KV_QUANT_PARAM_BYTES : 0);
}

/** A quantized cache's rows must hold whole u32 words of codes: head_dim % 4 (int8) or % 8 (int4). */
function checkKvCacheHeadDim(dtype: KvCacheDtype, headDim: number): void {
  const perWord = dtype === 'int8' ? 4 : dtype === 'int4' ? 8 : 1;
  if (headDim % perWord !== 0) {
    throw new Error(`a ${dtype} KV cache packs ${perWord} codes per u32 word, so head_dim must be a multiple of ${perWord}; this model's is ${headDim}`);
  }
}

export interface MemoryOptions {
  /** Bytes of GPU memory this server may use per device; default: 2 GiB on a software adapter, 16 GiB otherwise. */
  gpuMemoryBytes?: number;
  /** Fraction of the memory left after weights and activations that the KV cache takes (default 0.8). */
  cacheMaxEntryCount: number;
  /** Explicit KV pool size in blocks; overrides cacheMaxEntryCount. */
  kvCacheBlocks?: number;
  /** Token budget per step (chunked prefill slices long prompts to this). */
  maxNumBatchedTokens: number;
  blockSize: number;
  maxNumSeqs: number;
  /** Session length: prompt + output never exceed it (sizes the block tables). */
  maxModelLen: number;
  dtype: 'f16' | 'f32';
  /** KV cache element type (default 'f32'); 'f16' halves the cache; 'int8'/'int4' store codes plus a (scale, min) pair per row (kvCacheBytesPerTokenHead). */
  kvCacheDtype?: KvCacheDtype;
}

export interface MemoryPlan {
  budgetBytes: number;
  weightBytes: number;
  activationBytes: number;
  kvBytesPerBlock: number;
  numBlocks: number;
  blockSize: number;
  maxTokensPerStep: number;
  /** Block-table width: the blocks a maxModelLen-token sequence needs. */
  maxBlocksPerSeq: number;
}

const GiB = 1024 ** 3;

export function defaultGpuMemory(gpu: GpuDevice): number {
  return gpu.adapter.info.isFallbackAdapter ? 2 * GiB : 16 * GiB;
}

export function planMemory(config: ModelConfig, layout: ShardLayout, gpu: GpuDevice, options: MemoryOptions): MemoryPlan {
  const budgetBytes = options.gpuMemoryBytes ?? defaultGpuMemory(gpu);
  const maxBinding = gpu.limits.maxStorageBufferBindingSize;
  const H = config.hiddenSize;
  const hd = config.headDim;
  const qkvWidth = (layout.numHeads + 2 * layout.numKvHeads) * hd;
  const widest = Math.max(H, qkvWidth, 2 * layout.intermediate);
  // Every activation buffer must fit one storage binding.
  const maxTokensPerStep = Math.max(1, Math.min(options.maxNumBatchedTokens, Math.floor(maxBinding / (4 * widest))));
  const weightBytes = estimateWeightBytes(config, layout, options.dtype);
  // + the gather buffer of activation-ordered 4-bit weights (shard.ts ShardBuffers.permuted).
  const permuted = config.quantization?.activationOrder ? Math.max(H, layout.numHeads * hd, layout.intermediate) : 0;
  const perToken = 4 * (3 * H + qkvWidth + layout.numHeads * hd + 3 * layout.intermediate + 4 + permuted);
  const vocabShard = layout.vocabEnd - layout.vocabStart;
  const activationBytes = maxTokensPerStep * perToken + options.maxNumSeqs * 4 * (H + vocabShard * (layout.tp > 1 ? 2 : 1));
  const kvDtype = options.kvCacheDtype ?? 'f32';
  checkKvCacheHeadDim(kvDtype, hd);
  const kvBytesPerLayerBlock = options.blockSize * layout.numKvHeads * kvCacheBytesPerTokenHead(kvDtype, hd);
  const kvBytesPerBlock = 2 * config.numLayers * kvBytesPerLayerBlock;
  // The largest per-layer buffer: K (or V) codes, or a quantized cache's (k, v) pairs when head_dim is tiny.
  const kvBindingBytesPerLayerBlock =
    options.blockSize * layout.numKvHeads * Math.max(kvCacheDataBytesPerTokenHead(kvDtype, hd), isQuantizedKvCache(kvDtype) ? 2 * KV_QUANT_PARAM_BYTES : 0);
  const left = budgetBytes - weightBytes - activationBytes;
  if (left <= 0) {
    throw new Error(
      `the model does not fit: weights need ${gib(weightBytes)} and activations ${gib(activationBytes)} per device, ` +
        `but the GPU memory budget is ${gib(budgetBytes)}; raise --gpu-memory, use --dtype f16, or add devices with --tp`,
    );
  }
  let numBlocks = options.kvCacheBlocks ?? Math.floor((left * options.cacheMaxEntryCount) / kvBytesPerBlock);
  if (options.kvCacheBlocks !== undefined && options.kvCacheBlocks * kvBytesPerBlock > left) {
    throw new Error(
      `--kv-cache-blocks ${options.kvCacheBlocks} needs ${gib(options.kvCacheBlocks * kvBytesPerBlock)}, but only ${gib(left)} is left after weights; lower it or raise --gpu-memory`,
    );
  }
  // Each layer's K (and V, and a quantized cache's params) pool is one storage binding.
  numBlocks = Math.min(numBlocks, Math.floor(maxBinding / kvBindingBytesPerLayerBlock));
  if (numBlocks < 2) {
    throw new Error(
      `the KV cache would get ${numBlocks} blocks (${gib(left)} left after weights); raise --gpu-memory or --cache-max-entry-count, or lower --block-size`,
    );
  }
  const maxBlocksPerSeq = Math.ceil(options.maxModelLen / options.blockSize);
  return { budgetBytes, weightBytes, activationBytes, kvBytesPerBlock, numBlocks, blockSize: options.blockSize, maxTokensPerStep, maxBlocksPerSeq };
}

function estimateWeightBytes(config: ModelConfig, layout: ShardLayout, dtype: 'f16' | 'f32'): number {
  const b = dtype === 'f16' ? 2 : 4;
  const H = config.hiddenSize;
  const hd = config.headDim;
  const vocab = layout.vocabEnd - layout.vocabStart;
  // 4-bit projections: half a byte per weight plus one scale/zero word (4 bytes) per group (kernels/weight.ts).
  const q4 = q4TensorGroupSizes(config);
  const bytes = (name: string, n: number) => {
    const g = q4.get(name);
    return g === undefined ? n * b : n * (0.5 + 4 / g);
  };
  let layers = 0;
  for (let i = 0; i < config.numLayers; i++) {
    const c = (part: string) => `layers.${i}.${part}`;
    layers +=
      bytes(c('q'), H * layout.numHeads * hd) +
      bytes(c('k'), H * layout.numKvHeads * hd) +
      bytes(c('v'), H * layout.numKvHeads * hd) +
      bytes(c('o'), layout.numHeads * hd * H) +
      bytes(c('gate'), H * layout.intermediate) +
      bytes(c('up'), H * layout.intermediate) +
      bytes(c('down'), H * layout.intermediate) +
      2 * H * 4;
  }
  const embed = vocab * H * b;
  const lmHead = config.tieWordEmbeddings ? 0 : bytes('lm_head', vocab * H);
  return layers + embed + lmHead + H * 4;
}
