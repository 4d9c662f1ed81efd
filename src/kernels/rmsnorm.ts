// RMSNorm over f32 rows (HF Llama: out = x / sqrt(mean(x^2) + eps) * weight), plain and with the
// residual add fused in front (shaders/rmsnorm.wgsl).
import assert from 'node:assert/strict';
import { dispatch, grid1d, loadShader, type Binding, type GpuDevice, type UniformArena } from '../gpu/index.js';

export interface RmsNormArgs {
  /** f32 [numRows, dim]. */
  x: Binding;
  /** f32 [dim]. */
  weight: Binding;
  /** f32 [numRows, dim]; must not alias x. */
  out: Binding;
  numRows: number;
  dim: number;
  eps: number;
}

export interface AddNormArgs extends RmsNormArgs {
  /** f32 [numRows, dim]: residual += x is written back; out must not alias it. */
  residual: Binding;
}

export class RmsNormKernel {
  private constructor(
    private readonly gpu: GpuDevice,
    private readonly normPipeline: GPUComputePipeline,
    private readonly addNormPipeline: GPUComputePipeline,
  ) {}

  static async create(gpu: GpuDevice): Promise<RmsNormKernel> {
    const code = loadShader('rmsnorm');
    const [norm, addNorm] = await Promise.all([
      gpu.pipelines.get({ kernel: 'rmsnorm.norm', code, entryPoint: 'norm' }),
      gpu.pipelines.get({ kernel: 'rmsnorm.add_norm', code, entryPoint: 'add_norm' }),
    ]);
    return new RmsNormKernel(gpu, norm, addNorm);
  }

  /** out = rmsnorm(x) * weight, row by row. */
  norm(pass: GPUComputePassEncoder, uniforms: UniformArena, args: RmsNormArgs): void {
    if (!checkShape('norm', args)) return;
    dispatch(this.gpu.device, pass, this.normPipeline, [args.x, args.weight, args.out, params(uniforms, args)], grid1d(args.numRows));
  }

  /** Fused residual add: residual += x (written back), then out = rmsnorm(residual) * weight. */
  addNorm(pass: GPUComputePassEncoder, uniforms: UniformArena, args: AddNormArgs): void {
    if (!checkShape('addNorm', args)) return;
    dispatch(this.gpu.device, pass, this.addNormPipeline, [args.x, args.residual, args.weight, args.out, params(uniforms, args)], grid1d(args.numRows));
  }
}

/** false when there is nothing to do. */
function checkShape(what: string, a: RmsNormArgs): boolean {
  assert(Number.isInteger(a.numRows) && a.numRows >= 0, `rmsnorm.${what}: numRows ${a.numRows} must be a non-negative integer`);
  assert(Number.isInteger(a.dim) && a.dim > 0, `rmsnorm.${what}: dim ${a.dim} must be a positive integer`);
  assert(a.eps >= 0, `rmsnorm.${what}: eps ${a.eps} must be >= 0`);
  return a.numRows > 0;
}

function params(uniforms: UniformArena, a: RmsNormArgs): Binding {
  const data = new ArrayBuffer(16);
  new Uint32Array(data, 0, 2).set([a.numRows, a.dim]);
  new Float32Array(data, 8, 1)[0] = a.eps;
  return uniforms.alloc(new Uint8Array(data));
}
