// Rotary position embedding (HF Llama rotate_half layout) applied in place to the q and k heads of the
// fused qkv activation. The host supplies inv_freq, so rope_scaling variants live in the model layer.
import assert from 'node:assert/strict';
import { dispatch, grid1d, loadShader, type Binding, type GpuDevice, type UniformArena } from '../gpu/index.js';

export interface RotaryOptions {
  /** Lanes per workgroup, over a head's rotary pairs. Default: 32 on CPU adapters, 64 otherwise. */
  workgroupSize?: number;
}

/** Where the q and k heads sit in a fused qkv activation (the kernels that rewrite them in place). */
export interface QkHeads {
  qkv: Binding;
  numTokens: number;
  rowStride: number;
  qOffset: number;
  numHeads: number;
  kOffset: number;
  numKvHeads: number;
  headDim: number;
}

export interface RotaryArgs extends QkHeads {
  /** <= headDim, even; dims >= rotaryDim pass through (partial rotary). */
  rotaryDim: number;
  /** u32 [numTokens]: absolute position of each token. */
  positions: Binding;
  /**
   * f32 [rotaryDim / 2], computed on the host from rope_theta and rope_scaling; with perSequenceFreq,
   * f32 [numSeqs, rotaryDim / 2] and token t uses row tokenSeq[t] (dynamic NTK).
   */
  invFreq: Binding;
  /** u32 [numTokens]: each token's sequence index (read only with perSequenceFreq). */
  tokenSeq: Binding;
  /** One invFreq row per sequence instead of one for all tokens. */
  perSequenceFreq: boolean;
  /** Multiplies cos and sin (yarn's mscale); 1 otherwise. */
  attentionScaling: number;
}

export class RotaryKernel {
  private constructor(
    private readonly gpu: GpuDevice,
    private readonly pipeline: GPUComputePipeline,
    private readonly workgroupSize: number,
  ) {}

  static async create(gpu: GpuDevice, options: RotaryOptions = {}): Promise<RotaryKernel> {
    const workgroupSize = options.workgroupSize ?? (gpu.isSoftware ? 32 : 64);
    assert(Number.isInteger(workgroupSize) && workgroupSize >= 1 && workgroupSize <= 256, `rotary: workgroupSize ${workgroupSize} must be 1..256`);
    const pipeline = await gpu.pipelines.get({ kernel: 'rotary', code: loadShader('rotary'), constants: { WG: workgroupSize } });
    return new RotaryKernel(gpu, pipeline, workgroupSize);
  }

  /** Rotates pairs (i, i + rotaryDim/2) of every q and k head of every token by pos * invFreq[i]. */
  apply(pass: GPUComputePassEncoder, uniforms: UniformArena, args: RotaryArgs): void {
    const { numTokens, rowStride, qOffset, numHeads, kOffset, numKvHeads, headDim, rotaryDim } = args;
    assert(rotaryDim > 0 && rotaryDim % 2 === 0 && rotaryDim <= headDim, `rotary: rotaryDim ${rotaryDim} must be even and in (0, headDim=${headDim}]`);
    assert(qOffset + numHeads * headDim <= rowStride && kOffset + numKvHeads * headDim <= rowStride, 'rotary: q or k heads run past rowStride');
    if (numTokens === 0) return;
    const params = new ArrayBuffer(48);
    new Uint32Array(params, 0, 8).set([numTokens, rowStride, qOffset, numHeads, kOffset, numKvHeads, headDim, rotaryDim / 2]);
    new Float32Array(params, 32, 1)[0] = args.attentionScaling;
    new Uint32Array(params, 36, 1)[0] = args.perSequenceFreq ? rotaryDim / 2 : 0;
    const [tokensY, tokensZ] = grid1d(numTokens);
    const grid = [Math.ceil(rotaryDim / 2 / this.workgroupSize), tokensY, tokensZ] as const;
    dispatch(this.gpu.device, pass, this.pipeline, [args.qkv, args.positions, args.invFreq, args.tokenSeq, uniforms.alloc(new Uint8Array(params))], grid);
  }
}
