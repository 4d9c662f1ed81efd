// SwiGLU: silu(gate) * up over a fused [gate | up] projection (shaders/activation.wgsl).
import assert from 'node:assert/strict';
import { dispatch, grid1d, loadShader, type Binding, type GpuDevice, type UniformArena } from '../gpu/index.js';

const WORKGROUP_SIZE = 256;

export interface SiluAndMulArgs {
  /** f32 [numRows, 2 * intermediate]: gate in columns [0, I), up in [I, 2I). */
  gateUp: Binding;
  /** f32 [numRows, intermediate]. */
  out: Binding;
  numRows: number;
  intermediate: number;
}

export class ActivationKernel {
  private constructor(
    private readonly gpu: GpuDevice,
    private readonly siluPipeline: GPUComputePipeline,
  ) {}

  static async create(gpu: GpuDevice): Promise<ActivationKernel> {
    const pipeline = await gpu.pipelines.get({ kernel: 'activation.silu_and_mul', code: loadShader('activation'), entryPoint: 'silu_and_mul' });
    return new ActivationKernel(gpu, pipeline);
  }

  /** out[r, i] = silu(gateUp[r, i]) * gateUp[r, I + i]. */
  siluAndMul(pass: GPUComputePassEncoder, uniforms: UniformArena, args: SiluAndMulArgs): void {
    const { numRows, intermediate } = args;
    assert(Number.isInteger(numRows) && numRows >= 0, `siluAndMul: numRows ${numRows} must be a non-negative integer`);
    assert(Number.isInteger(intermediate) && intermediate > 0, `siluAndMul: intermediate ${intermediate} must be a positive integer`);
    assert(numRows * 2 * intermediate < 2 ** 32, 'siluAndMul: numRows * 2 * intermediate overflows u32 indexing; split the batch');
    if (numRows === 0) return;
    const u = uniforms.alloc(new Uint32Array([numRows, intermediate, 0, 0]));
    dispatch(this.gpu.device, pass, this.siluPipeline, [args.gateUp, args.out, u], grid1d(Math.ceil((numRows * intermediate) / WORKGROUP_SIZE)));
  }
}
