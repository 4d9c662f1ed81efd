// SwiGLU: silu(gate) * up over a fused [gate | up] projection (shaders/activation.wgsl).
import assert from 'node:assert/strict';
import { dispatch, grid1d, loadShader, type Binding, type GpuDevice, type UniformArena } from '../gpu/index.js';

export interface ActivationOptions {
  /** Lanes per workgroup. Default: 64 on CPU adapters (fewer, fuller workgroups measured fastest), 256 otherwise. */
  workgroupSize?: number;
  /** Columns (vec4 columns on the vec4 path) each lane handles. Default: 4 on CPU adapters, 1 otherwise. */
  columnsPerLane?: number;
  /** Read vec4s when intermediate % 4 == 0 (default); false forces the scalar entry (tests use it). */
  vec4?: boolean;
}

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
    private readonly scalarPipeline: GPUComputePipeline,
    private readonly vec4Pipeline: GPUComputePipeline | null,
    private readonly workgroupSize: number,
    private readonly columnsPerLane: number,
  ) {}

  static async create(gpu: GpuDevice, options: ActivationOptions = {}): Promise<ActivationKernel> {
    const cpu = gpu.isSoftware;
    const workgroupSize = options.workgroupSize ?? (cpu ? 64 : 256);
    const columnsPerLane = options.columnsPerLane ?? (cpu ? 4 : 1);
    assert(Number.isInteger(workgroupSize) && workgroupSize >= 1 && workgroupSize <= 256, `activation: workgroupSize ${workgroupSize} must be 1..256`);
    assert(Number.isInteger(columnsPerLane) && columnsPerLane >= 1, `activation: columnsPerLane ${columnsPerLane} must be a positive integer`);
    const code = loadShader('activation');
    const get = (entryPoint: string) => gpu.pipelines.get({ kernel: `activation.${entryPoint}`, code, entryPoint, constants: { WG: workgroupSize } });
    const [scalar, vec4] = await Promise.all([get('silu_and_mul'), options.vec4 === false ? null : get('silu_and_mul_vec4')]);
    return new ActivationKernel(gpu, scalar, vec4, workgroupSize, columnsPerLane);
  }

  /** out[r, i] = silu(gateUp[r, i]) * gateUp[r, I + i]. */
  siluAndMul(pass: GPUComputePassEncoder, uniforms: UniformArena, args: SiluAndMulArgs): void {
    const { numRows, intermediate } = args;
    assert(Number.isInteger(numRows) && numRows >= 0, `siluAndMul: numRows ${numRows} must be a non-negative integer`);
    assert(Number.isInteger(intermediate) && intermediate > 0, `siluAndMul: intermediate ${intermediate} must be a positive integer`);
    assert(numRows * 2 * intermediate < 2 ** 32, 'siluAndMul: numRows * 2 * intermediate overflows u32 indexing; split the batch');
    if (numRows === 0) return;
    const vec4 = intermediate % 4 === 0 ? this.vec4Pipeline : null;
    const columns = vec4 ? intermediate / 4 : intermediate;
    const columnGroups = Math.ceil(columns / (this.workgroupSize * this.columnsPerLane));
    const [rowsY, rowsZ] = grid1d(numRows);
    const u = uniforms.alloc(new Uint32Array([numRows, intermediate, 0, 0]));
    dispatch(this.gpu.device, pass, vec4 ?? this.scalarPipeline, [args.gateUp, args.out, u], [columnGroups, rowsY, rowsZ]);
  }
}
