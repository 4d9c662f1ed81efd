// Paged attention over the KV cache for prefill, decode and mixed batches in one dispatch family.
// The wrapper picks the query tiling (decode: one token per tile so GQA heads share K/V; otherwise
// several tokens per tile so K/V loads are reused across query rows) and, for long contexts, splits the
// keys over workgroups (flash-decoding) and merges the partials in a second pass. On CPU adapters with
// 8-lane subgroups every batch goes to a barrier-free subgroup kernel (shaders/attention_decode.wgsl),
// one query token per workgroup: pure decode batches always did; prefill and mixed batches since it
// measured 2-5x faster there than the tiled kernel (docs/benchmarks.md). Int8/int4 caches are
// dequantized on read by their own compiled variants of both kernels.
import assert from 'node:assert/strict';
import { isQuantizedKvCache, type KvCacheDtype } from '../common/types.js';
import { dispatch, grid1d, loadShaderSections, type Binding, type GpuDevice, type UniformArena } from '../gpu/index.js';

/**
 * Query rows (token, head) per workgroup; must match ROWS in shaders/attention.wgsl, and bounds the q
 * heads of one decode workgroup (MAX_HEADS in shaders/attention_decode.wgsl).
 */
const ROWS_PER_WORKGROUP = 8;
const MAX_HEAD_DIM = 256;
/** Contexts longer than this are split over workgroups. */
const SPLIT_THRESHOLD = 1024;
/** Preferred keys per split: a multiple of the shader's 64-key chunk. */
export const ATTENTION_SPLIT_LEN = 512;
const KEY_CHUNK = 64;
/** Splitting stops adding workgroups once a dispatch has about this many: enough to fill a large GPU. */
const TARGET_WORKGROUPS = 2048;
/** Upper bound on partial-result scratch; fewer splits are used when a batch would need more. */
const MAX_SCRATCH_BYTES = 64 * 1024 * 1024;
const MAX_WORKGROUPS_PER_DIM = 65535;

export interface AttentionArgs {
  qkv: Binding;
  rowStride: number;
  qOffset: number;
  /** f32 [numTokens, numHeads*headDim] contiguous. */
  out: Binding;
  kCache: Binding;
  vCache: Binding;
  /** Int8/int4 caches only: u32 [numBlocks, blockSize, numKvHeads, 2], the rows' (k, v) f16 (scale, min) pairs. */
  kvParams?: Binding;
  blockTables: Binding;
  maxBlocksPerSeq: number;
  tokenSeq: Binding;
  tokenPos: Binding;
  numTokens: number;
  numSeqs: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  blockSize: number;
  /** Usually 1/sqrt(headDim). */
  scale: number;
  /** 0 = none; else the token at pos attends to keys in [pos - window + 1, pos]. */
  slidingWindow: number;
  /** Largest tokenPos + 1 in this batch: picks split-KV for long decode. */
  maxContextLen: number;
}

/** How one attend() call is laid out over workgroups; exported for tests and benchmarks. */
export interface AttentionPlan {
  tokensPerTile: number;
  headsPerRowGroup: number;
  numHeadGroups: number;
  numTiles: number;
  numSplits: number;
  /** Keys per split (the last split also takes any keys past numSplits * splitLen). */
  splitLen: number;
}

/**
 * Query tiling and KV split count for a batch; attend() uses it, tests and benches may inspect it.
 * oneTokenPerTile: the subgroup kernel's layout (one query token per workgroup) for any batch.
 */
export function planAttention(
  args: Pick<AttentionArgs, 'numTokens' | 'numSeqs' | 'numHeads' | 'numKvHeads' | 'headDim' | 'maxContextLen'>,
  maxScratchBytes = MAX_SCRATCH_BYTES,
  oneTokenPerTile = false,
): AttentionPlan {
  const groupSize = args.numHeads / args.numKvHeads;
  const headsPerRowGroup = Math.min(groupSize, ROWS_PER_WORKGROUP);
  const numHeadGroups = Math.ceil(groupSize / headsPerRowGroup);
  // A pure decode batch has one token per sequence: tiles of several tokens would mix sequences.
  const isDecode = args.numTokens === args.numSeqs;
  const tokensPerTile = isDecode || oneTokenPerTile ? 1 : Math.max(1, Math.floor(ROWS_PER_WORKGROUP / headsPerRowGroup));
  const numTiles = Math.ceil(args.numTokens / tokensPerTile);
  // Split long contexts (flash-decoding) only as far as the GPU needs more workgroups and the
  // partial results fit the scratch budget; prefill batches usually have enough tiles already.
  let numSplits = 1;
  if (args.maxContextLen > SPLIT_THRESHOLD) {
    const baseWorkgroups = numTiles * args.numKvHeads * numHeadGroups;
    const bytesPerSplit = args.numTokens * args.numHeads * (args.headDim + 2) * 4;
    numSplits = Math.min(
      Math.ceil(args.maxContextLen / ATTENTION_SPLIT_LEN),
      Math.ceil(TARGET_WORKGROUPS / baseWorkgroups),
      Math.floor(maxScratchBytes / bytesPerSplit),
      MAX_WORKGROUPS_PER_DIM,
    );
    numSplits = Math.max(1, numSplits);
  }
  // Fewer splits than preferred share the context evenly rather than overloading the last one.
  const splitLen = Math.ceil(args.maxContextLen / numSplits / KEY_CHUNK) * KEY_CHUNK;
  return { tokensPerTile, headsPerRowGroup, numHeadGroups, numTiles, numSplits, splitLen: Math.max(KEY_CHUNK, splitLen) };
}

/**
 * Which kernel serves pure decode batches (numTokens === numSeqs). 'auto': the subgroup kernel on CPU
 * adapters (lavapipe) with subgroups of >= 8 lanes, the portable one elsewhere (the subgroup kernel's
 * 8-lane workgroups were only measured on lavapipe). 'portable': always the tiled 64-thread kernel.
 * 'subgroup': the subgroup kernel on any adapter that supports it (for measuring other adapters).
 */
export type AttentionDecodePath = 'auto' | 'portable' | 'subgroup';

export interface AttentionOptions {
  decodePath?: AttentionDecodePath;
  /**
   * When pure decode runs on the subgroup kernel, run prefill and mixed batches on it too (one query
   * token per workgroup, K/V re-read per token instead of shared by a tile). Default: on software
   * adapters, where the tiled kernel's workgroup-memory q loads and barriers made prefill attention
   * 2-5x slower (docs/benchmarks.md); false keeps the tiled kernel for them (tests use it).
   */
  subgroupPrefill?: boolean;
  /** Element type of the caches attend() reads (default 'f32'; 'f16' = packed u32 pairs, 'int8'/'int4' = codes + kvParams, see KvCacheKernel). */
  kvCacheDtype?: KvCacheDtype;
}

/** The subgroup decode kernel runs an 8-lane workgroup as one subgroup. */
export function supportsSubgroupDecode(gpu: GpuDevice): boolean {
  return gpu.hasSubgroups && (gpu.adapter.info.subgroupMinSize ?? 0) >= 8;
}

export class AttentionKernel {
  private partialAcc: GPUBuffer;
  private partialMl: GPUBuffer;
  /** Outgrown scratch buffers: passes recorded earlier may still use them, so they live until destroy(). */
  private readonly retired: GPUBuffer[] = [];

  private constructor(
    private readonly gpu: GpuDevice,
    private readonly attendPipeline: GPUComputePipeline,
    private readonly reducePipeline: GPUComputePipeline,
    /** attend_decode from attention_decode.wgsl; null when pure decode uses the portable kernel. */
    private readonly decodePipeline: GPUComputePipeline | null,
    /** Element type of the K/V caches this kernel reads. */
    readonly kvCacheDtype: KvCacheDtype,
    /** Prefill and mixed batches also run on decodePipeline (when there is one). */
    private readonly subgroupPrefill: boolean,
  ) {
    this.partialAcc = this.createScratch('attention-partial-acc', 256);
    this.partialMl = this.createScratch('attention-partial-ml', 256);
  }

  static async create(gpu: GpuDevice, options: AttentionOptions = {}): Promise<AttentionKernel> {
    const decodePath = options.decodePath ?? 'auto';
    if (decodePath === 'subgroup' && !supportsSubgroupDecode(gpu)) {
      throw new Error("attention: decodePath 'subgroup' needs the subgroups feature with >= 8-lane subgroups; use 'auto' or 'portable' on this adapter");
    }
    const useSubgroupDecode = decodePath === 'subgroup' || (decodePath === 'auto' && gpu.isSoftware && supportsSubgroupDecode(gpu));
    const kvCacheDtype = options.kvCacheDtype ?? 'f32';
    // The cache sections declare k_cache/v_cache (and a quantized cache's kv_params) and the functions
    // that read them; they and the Params/bindings layout are shared by both kernels.
    const cacheSections = isQuantizedKvCache(kvCacheDtype) ? [`cache_${kvCacheDtype}`, 'cache_quant'] : [`cache_${kvCacheDtype}`];
    const cache = loadShaderSections('attention', [...cacheSections, 'layout']);
    const code = `${cache}\n${loadShaderSections('attention', ['attention'])}`;
    const decodeCode = `${cache}\n${loadShaderSections('attention_decode', ['decode'])}`;
    const [attend, reduce, decode] = await Promise.all([
      gpu.pipelines.get({ kernel: `attention.attend.${kvCacheDtype}`, code, entryPoint: 'attend' }),
      gpu.pipelines.get({ kernel: `attention.reduce_splits.${kvCacheDtype}`, code, entryPoint: 'reduce_splits' }),
      useSubgroupDecode ? gpu.pipelines.get({ kernel: `attention.attend_decode.${kvCacheDtype}`, code: decodeCode, entryPoint: 'attend_decode' }) : null,
    ]);
    const subgroupPrefill = options.subgroupPrefill ?? gpu.isSoftware;
    return new AttentionKernel(gpu, attend, reduce, decode, kvCacheDtype, subgroupPrefill);
  }

  /** The kernel pure decode batches run on, as create() resolved it. */
  get decodePath(): 'portable' | 'subgroup' {
    return this.decodePipeline ? 'subgroup' : 'portable';
  }

  /** The kernel prefill and mixed batches run on. */
  get prefillPath(): 'portable' | 'subgroup' {
    return this.decodePipeline && this.subgroupPrefill ? 'subgroup' : 'portable';
  }

  /** Causal paged attention of every token's q heads over its sequence's cached keys and values. */
  attend(pass: GPUComputePassEncoder, uniforms: UniformArena, args: AttentionArgs): void {
    this.validate(args);
    if (args.numTokens === 0) return;
    const onSubgroupKernel = this.decodePipeline !== null && (args.numTokens === args.numSeqs || this.subgroupPrefill);
    const plan = planAttention(args, Math.min(MAX_SCRATCH_BYTES, this.gpu.limits.maxStorageBufferBindingSize), onSubgroupKernel);
    assert(
      plan.numTiles <= MAX_WORKGROUPS_PER_DIM,
      `attention: ${args.numTokens} tokens need ${plan.numTiles} tiles; split the batch below ${MAX_WORKGROUPS_PER_DIM * plan.tokensPerTile} tokens`,
    );
    const numPartials = args.numTokens * args.numHeads * plan.numSplits;
    if (plan.numSplits > 1) this.ensureScratch(numPartials * args.headDim * 4, numPartials * 8);

    const params = new ArrayBuffer(80);
    new Uint32Array(params, 0, 16).set([
      args.numTokens,
      args.rowStride,
      args.qOffset,
      args.numHeads,
      args.numKvHeads,
      args.headDim,
      args.blockSize,
      args.maxBlocksPerSeq,
      args.numHeads / args.numKvHeads,
      plan.headsPerRowGroup,
      plan.numHeadGroups,
      plan.tokensPerTile,
      args.slidingWindow,
      plan.numSplits,
      plan.splitLen,
      0,
    ]);
    new Float32Array(params, 64, 1)[0] = args.scale;
    const paramsBinding = uniforms.alloc(new Uint8Array(params));
    const shared = [this.partialAcc, this.partialMl, args.out, paramsBinding];
    const attendBindings = [...shared, args.qkv, args.kCache, args.vCache, args.blockTables, args.tokenSeq, args.tokenPos];
    if (args.kvParams) attendBindings.push(args.kvParams);
    dispatch(this.gpu.device, pass, onSubgroupKernel ? this.decodePipeline! : this.attendPipeline, attendBindings, [
      plan.numTiles,
      args.numKvHeads * plan.numHeadGroups,
      plan.numSplits,
    ]);
    if (plan.numSplits > 1) {
      dispatch(this.gpu.device, pass, this.reducePipeline, shared, grid1d(args.numTokens * args.numHeads));
    }
  }

  /** Frees its scratch buffers. */
  destroy(): void {
    for (const b of [this.partialAcc, this.partialMl, ...this.retired]) b.destroy();
    this.retired.length = 0;
  }

  private validate(args: AttentionArgs): void {
    const { numHeads, numKvHeads, headDim } = args;
    assert(numKvHeads > 0 && numHeads % numKvHeads === 0, `attention: numHeads ${numHeads} must be a multiple of numKvHeads ${numKvHeads}`);
    assert(headDim % 4 === 0 && headDim > 0 && headDim <= MAX_HEAD_DIM, `attention: headDim ${headDim} must be a multiple of 4 in [4, ${MAX_HEAD_DIM}]`);
    assert(args.qOffset + numHeads * headDim <= args.rowStride, 'attention: q heads run past rowStride');
    assert(args.blockSize > 0 && args.maxBlocksPerSeq > 0, 'attention: blockSize and maxBlocksPerSeq must be positive');
    assert(Number.isInteger(args.slidingWindow) && args.slidingWindow >= 0, 'attention: slidingWindow must be a non-negative integer (0 = none)');
    const quantized = isQuantizedKvCache(this.kvCacheDtype);
    assert(
      quantized === (args.kvParams !== undefined),
      quantized
        ? `attention: an ${this.kvCacheDtype} cache needs kvParams (the per-row scale/min pairs)`
        : `attention: kvParams is only for int8/int4 caches, this one is ${this.kvCacheDtype}`,
    );
    // An int4 vec4 column is half a u32 word, so a row must be whole words.
    if (this.kvCacheDtype === 'int4')
      assert(headDim % 8 === 0, `attention: an int4 cache packs 8 codes per u32 word, so headDim ${headDim} must be a multiple of 8`);
  }

  private ensureScratch(accBytes: number, mlBytes: number): void {
    if (this.partialAcc.size < accBytes) {
      this.retired.push(this.partialAcc);
      this.partialAcc = this.createScratch('attention-partial-acc', accBytes * 2);
    }
    if (this.partialMl.size < mlBytes) {
      this.retired.push(this.partialMl);
      this.partialMl = this.createScratch('attention-partial-ml', mlBytes * 2);
    }
  }

  private createScratch(label: string, bytes: number): GPUBuffer {
    const cap = Math.min(MAX_SCRATCH_BYTES, this.gpu.limits.maxStorageBufferBindingSize);
    return this.gpu.createBuffer(label, Math.min(bytes, cap), GPUBufferUsage.STORAGE);
  }
}
