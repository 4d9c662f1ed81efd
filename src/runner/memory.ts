// How much of the (declared) GPU memory goes to weights, activations and the KV cache. WebGPU cannot
// query free memory, so the budget is --gpu-memory (or a default per adapter kind), and the KV pool is
// --cache-max-entry-count of what remains after weights and activations (LMDeploy's meaning), unless
// --kv-cache-blocks gives it outright.
import { formatBytes } from '../common/bytes.js';
import type { KvCacheDtype } from '../common/types.js';

/** GPU memory reads best in binary units (GiB), as drivers and --gpu-memory state it. */
const gib = (n: number) => formatBytes(n, 'binary');
import type { GpuDevice } from '../gpu/index.js';
import type { ModelConfig } from '../checkpoint/config.js';
import type { ShardLayout } from './sharding.js';

/** Bytes per KV cache element. */
export function kvCacheElementBytes(dtype: KvCacheDtype = 'f32'): number {
  return dtype === 'f16' ? 2 : 4;
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
  /** KV cache element type (default 'f32'); 'f16' stores two halves per u32 word, halving the cache. */
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
  const perToken = 4 * (3 * H + qkvWidth + layout.numHeads * hd + 3 * layout.intermediate + 4);
  const vocabShard = layout.vocabEnd - layout.vocabStart;
  const activationBytes = maxTokensPerStep * perToken + options.maxNumSeqs * 4 * (H + vocabShard * (layout.tp > 1 ? 2 : 1));
  const kvBytesPerLayerBlock = options.blockSize * layout.numKvHeads * hd * kvCacheElementBytes(options.kvCacheDtype);
  const kvBytesPerBlock = 2 * config.numLayers * kvBytesPerLayerBlock;
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
  // Each layer's K (and V) pool is one storage binding.
  numBlocks = Math.min(numBlocks, Math.floor(maxBinding / kvBytesPerLayerBlock));
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
  const perLayer = H * (layout.numHeads + 2 * layout.numKvHeads) * hd * b + layout.numHeads * hd * H * b + 3 * H * layout.intermediate * b + 2 * H * 4;
  const embed = vocab * H * b * (config.tieWordEmbeddings ? 1 : 2);
  return config.numLayers * perLayer + embed + H * 4;
}
