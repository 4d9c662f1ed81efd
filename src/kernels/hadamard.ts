// Walsh-Hadamard rotation of the q and k heads of the fused qkv activation, in place (shaders/hadamard.wgsl).
// The runner applies it after RoPE when the KV cache is quantized: k is stored in the rotated basis,
// where its per-row range is no longer set by a few dominant channels, and q is rotated alike so that
// attention scores are unchanged.
import assert from 'node:assert/strict';
import { dispatch, grid1d, loadShader, type GpuDevice, type UniformArena } from '../gpu/index.js';
import type { QkHeads } from './rotary.js';

const WORKGROUP_SIZE = 64;

/** The block the rotation uses for a head: the largest power of two dividing headDim (1 = no rotation). */
export function hadamardBlockSize(headDim: number): number {
  assert(Number.isInteger(headDim) && headDim > 0, `hadamard: headDim ${headDim} must be a positive integer`);
  return headDim & -headDim;
}

export class HadamardKernel {
  private constructor(
    private readonly gpu: GpuDevice,
    private readonly pipeline: GPUComputePipeline,
  ) {}

  static async create(gpu: GpuDevice): Promise<HadamardKernel> {
    const pipeline = await gpu.pipelines.get({ kernel: 'hadamard', code: loadShader('hadamard'), constants: { WG: WORKGROUP_SIZE } });
    return new HadamardKernel(gpu, pipeline);
  }

  /** Rotates every q and k head of every token by the block Hadamard matrix of hadamardBlockSize(headDim). */
  apply(pass: GPUComputePassEncoder, uniforms: UniformArena, args: QkHeads): void {
    const { numTokens, rowStride, qOffset, numHeads, kOffset, numKvHeads, headDim } = args;
    assert(qOffset + numHeads * headDim <= rowStride && kOffset + numKvHeads * headDim <= rowStride, 'hadamard: q or k heads run past rowStride');
    const block = hadamardBlockSize(headDim);
    if (numTokens === 0 || block === 1) return;
    const headsPerToken = numHeads + numKvHeads;
    const numRows = numTokens * headsPerToken;
    const params = new ArrayBuffer(48);
    new Uint32Array(params, 0, 8).set([numRows, headsPerToken, numHeads, rowStride, qOffset, kOffset, headDim, block]);
    new Float32Array(params, 32, 1)[0] = 1 / Math.sqrt(block);
    const grid = grid1d(Math.ceil(numRows / WORKGROUP_SIZE));
    dispatch(this.gpu.device, pass, this.pipeline, [args.qkv, uniforms.alloc(new Uint8Array(params))], grid);
  }
}
