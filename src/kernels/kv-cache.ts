// Paged KV-cache write: scatters this step's k and v heads from the fused qkv activation into the
// cache slots the KV manager assigned (slot = blockId * blockSize + offset in block).
import assert from 'node:assert/strict';
import { dispatch, grid1d, loadShader, type Binding, type GpuDevice, type UniformArena } from '../gpu/index.js';

const WORKGROUP_SIZE = 64;

/** A slotMapping entry that marks a padding token: its k and v are not written. */
export const PADDING_SLOT = 0xffffffff;

export interface KvWriteArgs {
  qkv: Binding;
  numTokens: number;
  rowStride: number;
  kOffset: number;
  vOffset: number;
  numKvHeads: number;
  headDim: number;
  /** f32 [numBlocks, blockSize, numKvHeads, headDim]. */
  kCache: Binding;
  vCache: Binding;
  /** u32 [numTokens]: cache slot of each token, or PADDING_SLOT. */
  slotMapping: Binding;
}

export class KvCacheKernel {
  private constructor(
    private readonly gpu: GpuDevice,
    private readonly pipeline: GPUComputePipeline,
  ) {}

  static async create(gpu: GpuDevice): Promise<KvCacheKernel> {
    const pipeline = await gpu.pipelines.get({ kernel: 'kv_cache.write', code: loadShader('kv_cache') });
    return new KvCacheKernel(gpu, pipeline);
  }

  /** Copies each token's k and v heads from qkv into the cache slots given by slotMapping (u32 [numTokens]). */
  write(pass: GPUComputePassEncoder, uniforms: UniformArena, args: KvWriteArgs): void {
    const { numTokens, rowStride, kOffset, vOffset, numKvHeads, headDim } = args;
    const rowLen = numKvHeads * headDim;
    assert(kOffset + rowLen <= rowStride && vOffset + rowLen <= rowStride, 'kv write: k or v heads run past rowStride');
    if (numTokens === 0) return;
    const params = uniforms.alloc(new Uint32Array([numTokens, rowStride, kOffset, vOffset, numKvHeads, headDim, 0, 0]));
    const bindings = [args.qkv, args.kCache, args.vCache, args.slotMapping, params];
    dispatch(this.gpu.device, pass, this.pipeline, bindings, grid1d(Math.ceil((numTokens * rowLen) / WORKGROUP_SIZE)));
  }
}
