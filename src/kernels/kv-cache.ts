// Paged KV-cache write: scatters this step's k and v heads from the fused qkv activation into the
// cache slots the KV manager assigned (slot = blockId * blockSize + offset in block). Quantized caches
// (int8 / int4, LMDeploy's quant_policy 8 / 4) also write each row's f16 (scale, min) pair.
import assert from 'node:assert/strict';
import { isQuantizedKvCache, KV_QUANT_BITS, type KvCacheDtype } from '../common/types.js';
import { dispatch, grid1d, loadShader, type Binding, type GpuDevice, type UniformArena } from '../gpu/index.js';

/** Lanes per workgroup along a token's k/v row (one workgroup per 64-lane x 4-column stretch of it). */
const WORKGROUP_SIZE = 64;
/** Elements (vec4s on the vec4 path) each lane copies, at most; more workgroups past that. */
const COLUMNS_PER_LANE = 4;

/** A slotMapping entry that marks a padding token: its k and v are not written. */
export const PADDING_SLOT = 0xffffffff;

export interface KvCacheOptions {
  /** Copy vec4s when row stride, offsets and row length are multiples of 4 (default); false forces the scalar entry (tests use it). */
  vec4?: boolean;
  /**
   * Cache element type (default 'f32'); 'f16' packs two halves per u32 word (no shader-f16 needed);
   * 'int8' / 'int4' pack 4 / 8 codes per u32 word plus a (scale, min) pair per row in kvParams.
   */
  dtype?: KvCacheDtype;
}

/**
 * u32 words of codes per (slot, kv head) row of a quantized cache. int4 rows must hold whole words
 * (headDim % 8 == 0), which also lets attention read a vec4 column as one half of a word.
 */
export function quantizedRowWords(dtype: keyof typeof KV_QUANT_BITS, headDim: number): number {
  const perWord = 32 / KV_QUANT_BITS[dtype];
  assert(headDim % perWord === 0, `kv cache ${dtype}: headDim ${headDim} must be a multiple of ${perWord} (${perWord} codes per u32 word)`);
  return headDim / perWord;
}

export interface KvWriteArgs {
  qkv: Binding;
  numTokens: number;
  rowStride: number;
  kOffset: number;
  vOffset: number;
  numKvHeads: number;
  headDim: number;
  /** [numBlocks, blockSize, numKvHeads, headDim] of the kernel's dtype (f16: packed u32 pairs; int8/int4: packed codes). */
  kCache: Binding;
  vCache: Binding;
  /** u32 [numTokens]: cache slot of each token, or PADDING_SLOT. */
  slotMapping: Binding;
  /** Quantized caches only: u32 [numBlocks, blockSize, numKvHeads, 2], pack2x16float(scale, min) of each row's k and v. */
  kvParams?: Binding;
}

export class KvCacheKernel {
  private readonly params = new Uint32Array(8);

  private constructor(
    private readonly gpu: GpuDevice,
    /** The scalar copy entry; for int8/int4 caches the write_quant pipeline. */
    private readonly scalarPipeline: GPUComputePipeline,
    private readonly vec4Pipeline: GPUComputePipeline | null,
    /** Element type of the caches this kernel writes. */
    readonly dtype: KvCacheDtype,
  ) {}

  static async create(gpu: GpuDevice, options: KvCacheOptions = {}): Promise<KvCacheKernel> {
    const code = loadShader('kv_cache');
    const dtype = options.dtype ?? 'f32';
    if (isQuantizedKvCache(dtype)) {
      const bits = KV_QUANT_BITS[dtype];
      const quant = await gpu.pipelines.get({
        kernel: `kv_cache.write_quant.${dtype}`,
        code,
        entryPoint: 'write_quant',
        constants: { WG: WORKGROUP_SIZE, BITS: bits },
      });
      return new KvCacheKernel(gpu, quant, null, dtype);
    }
    const get = (entryPoint: string) => gpu.pipelines.get({ kernel: `kv_cache.${entryPoint}`, code, entryPoint, constants: { WG: WORKGROUP_SIZE } });
    const suffix = dtype === 'f16' ? '_f16' : '';
    const [scalar, vec4] = await Promise.all([get(`write${suffix}`), options.vec4 === false ? null : get(dtype === 'f16' ? 'write_f16_vec4' : 'write_vec4')]);
    return new KvCacheKernel(gpu, scalar, vec4, dtype);
  }

  /** Copies each token's k and v heads from qkv into the cache slots given by slotMapping (u32 [numTokens]). */
  write(pass: GPUComputePassEncoder, uniforms: UniformArena, args: KvWriteArgs): void {
    const { numTokens, rowStride, kOffset, vOffset, numKvHeads, headDim } = args;
    const rowLen = numKvHeads * headDim;
    assert(kOffset + rowLen <= rowStride && vOffset + rowLen <= rowStride, 'kv write: k or v heads run past rowStride');
    if (this.dtype === 'f16') assert(headDim % 2 === 0, `kv write: an f16 cache packs half pairs, so headDim ${headDim} must be even`);
    if (isQuantizedKvCache(this.dtype)) {
      this.writeQuantized(pass, uniforms, args, this.dtype);
      return;
    }
    assert(args.kvParams === undefined, `kv write: kvParams is only for int8/int4 caches, this one is ${this.dtype}`);
    if (numTokens === 0) return;
    const vec4 = [rowStride, kOffset, vOffset, rowLen].every((n) => n % 4 === 0) ? this.vec4Pipeline : null;
    const unit = vec4 ? 4 : 1;
    // The scalar f16 entry walks the row in u32 words (half pairs) but reads qkv in f32 elements.
    const rowUnits = vec4 || this.dtype === 'f32' ? rowLen / unit : rowLen / 2;
    this.params.set([numTokens, rowStride / unit, kOffset / unit, vOffset / unit, rowUnits, 0, 0, 0]);
    const bindings = [args.qkv, args.kCache, args.vCache, args.slotMapping, uniforms.alloc(this.params)];
    const [tokensY, tokensZ] = grid1d(numTokens);
    const columnGroups = Math.ceil(rowUnits / (WORKGROUP_SIZE * COLUMNS_PER_LANE));
    dispatch(this.gpu.device, pass, vec4 ?? this.scalarPipeline, bindings, [columnGroups, tokensY, tokensZ]);
  }

  /** One lane per (token, kv head, k or v) row: min/max, the f16 (scale, min) pair, then the packed codes. */
  private writeQuantized(pass: GPUComputePassEncoder, uniforms: UniformArena, args: KvWriteArgs, dtype: keyof typeof KV_QUANT_BITS): void {
    const { numTokens, rowStride, kOffset, vOffset, numKvHeads, headDim } = args;
    quantizedRowWords(dtype, headDim);
    assert(args.kvParams !== undefined, `kv write: an ${dtype} cache needs kvParams (the per-row scale/min pairs)`);
    if (numTokens === 0) return;
    const numRows = numTokens * 2 * numKvHeads;
    this.params.set([numTokens, rowStride, kOffset, vOffset, numKvHeads, headDim, numRows, 0]);
    const bindings = [args.qkv, args.kCache, args.vCache, args.slotMapping, uniforms.alloc(this.params), args.kvParams];
    dispatch(this.gpu.device, pass, this.scalarPipeline, bindings, grid1d(Math.ceil(numRows / WORKGROUP_SIZE)));
  }
}
