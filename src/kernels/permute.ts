// Column gather (shaders/permute.wgsl) for activation-ordered (GPTQ desc_act) linears: the loader sorts
// such a linear's input columns so its quantization groups are contiguous, recording perm, and the
// runner reorders each token row of the linear's input the same way before the matmul:
// out[r, j] = x[r, perm[j]], so that y = W' out for the reordered weight W'.
import assert from 'node:assert/strict';
import { dispatch, grid1d, loadShader, type Binding, type GpuDevice, type UniformArena } from '../gpu/index.js';

/** Lanes per workgroup along a row's output columns. */
const WORKGROUP_SIZE = 64;
/** Workgroups per grid dimension (WebGPU's default maxComputeWorkgroupsPerDimension). */
const MAX_WORKGROUPS_PER_DIM = 65535;
/** Row offsets are u32 in the shader. */
const MAX_ELEMENTS = 2 ** 32;

export interface GatherColumnsArgs {
  /** f32 [numRows, cols]: the input activation. */
  x: Binding;
  /** u32 [cols]: a permutation of 0..cols-1 (Q4Matrix.inputPerm, checked by checkQ4Matrix at upload). */
  perm: Binding;
  /** f32 [numRows, cols], not aliasing x: out[r, j] = x[r, perm[j]]; anything past numRows rows is left as it is. */
  out: Binding;
  numRows: number;
  cols: number;
}

export class PermuteKernel {
  private readonly params = new Uint32Array(4);

  private constructor(
    private readonly gpu: GpuDevice,
    private readonly pipeline: GPUComputePipeline,
  ) {}

  static async create(gpu: GpuDevice): Promise<PermuteKernel> {
    const pipeline = await gpu.pipelines.get({
      kernel: 'permute.gather_columns',
      code: loadShader('permute'),
      entryPoint: 'gather_columns',
      constants: { WG: WORKGROUP_SIZE },
    });
    return new PermuteKernel(gpu, pipeline);
  }

  /** Records out[r, j] = x[r, perm[j]] for r < numRows; numRows 0 records nothing. */
  gatherColumns(pass: GPUComputePassEncoder, uniforms: UniformArena, args: GatherColumnsArgs): void {
    const { numRows, cols } = args;
    assert(Number.isInteger(numRows) && numRows >= 0, `gatherColumns: numRows ${numRows} must be a non-negative integer`);
    assert(Number.isInteger(cols) && cols > 0, `gatherColumns: cols ${cols} must be a positive integer`);
    assert(numRows * cols <= MAX_ELEMENTS, `gatherColumns: numRows ${numRows} x cols ${cols} exceeds 2^32 elements`);
    // Out-of-range shader accesses are clamped silently, so a short binding would give wrong rows, not an error.
    const rowBytes = numRows * cols * 4;
    assertBound(args.x, rowBytes, 'x');
    assertBound(args.perm, cols * 4, 'perm');
    assertBound(args.out, rowBytes, 'out');
    if (numRows === 0) return;
    this.params.set([numRows, cols, 0, 0]);
    const columnBlocks = Math.min(Math.ceil(cols / WORKGROUP_SIZE), MAX_WORKGROUPS_PER_DIM);
    const [rowsY, rowsZ] = grid1d(numRows);
    dispatch(this.gpu.device, pass, this.pipeline, [args.x, args.perm, args.out, uniforms.alloc(this.params)], [columnBlocks, rowsY, rowsZ]);
  }
}

function assertBound(binding: Binding, needBytes: number, name: string): void {
  const bytes = binding instanceof GPUBuffer ? binding.size : (binding.size ?? binding.buffer.size - (binding.offset ?? 0));
  assert(bytes >= needBytes, `gatherColumns: ${name} binds ${bytes} bytes, needs ${needBytes}`);
}
