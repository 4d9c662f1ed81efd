// Row gathers (shaders/embedding.wgsl): token embeddings from an f32 or f16 weight table that may be
// split into row chunks, and rows of an f32 activation (the runner picks each sequence's last hidden
// row before lm_head).
import assert from 'node:assert/strict';
import { dispatch, grid1d, loadShaderSections, type Binding, type GpuDevice, type UniformArena } from '../gpu/index.js';
import type { GpuWeight } from './weight.js';

const WORKGROUP_SIZE = 256;

export interface GatherArgs {
  table: GpuWeight;
  /** u32 [numTokens]; ids outside [0, table.rows) leave their output row unwritten. */
  ids: Binding;
  /** f32 [numTokens, table.cols]. */
  out: Binding;
  numTokens: number;
}

export interface GatherRowsArgs {
  /** f32 [*, dim]. */
  src: Binding;
  /** u32 [numRows]: which src row each output row copies. */
  rows: Binding;
  /** f32 [numRows, dim]. */
  out: Binding;
  numRows: number;
  dim: number;
}

export class EmbeddingKernel {
  private constructor(
    private readonly gpu: GpuDevice,
    private readonly f32Pipeline: GPUComputePipeline,
    /** Native f16 loads where the device has shader-f16, packed u32 pairs otherwise. */
    private readonly f16Pipeline: GPUComputePipeline,
    private readonly rowsPipeline: GPUComputePipeline,
  ) {}

  static async create(gpu: GpuDevice, options: { nativeF16?: boolean } = {}): Promise<EmbeddingKernel> {
    const portable = loadShaderSections('embedding', ['common', 'portable']);
    const nativeF16 = options.nativeF16 ?? gpu.hasF16;
    assert(!nativeF16 || gpu.hasF16, 'EmbeddingKernel: nativeF16 needs a device with the shader-f16 feature');
    const [f32, f16, rows] = await Promise.all([
      gpu.pipelines.get({ kernel: 'embedding.gather_f32', code: portable, entryPoint: 'gather_f32' }),
      nativeF16
        ? gpu.pipelines.get({ kernel: 'embedding.gather_f16', code: loadShaderSections('embedding', ['common', 'native_f16']), entryPoint: 'gather_f16' })
        : gpu.pipelines.get({ kernel: 'embedding.gather_f16_packed', code: portable, entryPoint: 'gather_f16_packed' }),
      gpu.pipelines.get({ kernel: 'embedding.gather_rows', code: portable, entryPoint: 'gather_rows' }),
    ]);
    return new EmbeddingKernel(gpu, f32, f16, rows);
  }

  /** out[t, :] = table[ids[t], :] as f32: one dispatch per table chunk, each skipping ids outside it. */
  gather(pass: GPUComputePassEncoder, uniforms: UniformArena, args: GatherArgs): void {
    const { table, numTokens } = args;
    assert(Number.isInteger(numTokens) && numTokens >= 0, `gather: numTokens ${numTokens} must be a non-negative integer`);
    assert(
      table.chunks.length === Math.ceil(table.rows / table.rowsPerChunk),
      `gather: table ${table.label} has ${table.chunks.length} chunks for ${table.rows} rows of ${table.rowsPerChunk}`,
    );
    assert(numTokens * table.cols < 2 ** 32, 'gather: numTokens * cols overflows u32 indexing; split the batch');
    if (table.dtype === 'q4') throw new Error(`gather: table ${table.label} is 4-bit; embedding tables are gathered from f32 or f16 rows`);
    if (numTokens === 0) return;
    const pipeline = table.dtype === 'f32' ? this.f32Pipeline : this.f16Pipeline;
    const workgroups = grid1d(Math.ceil((numTokens * table.cols) / WORKGROUP_SIZE));
    table.chunks.forEach((chunk, c) => {
      const rowStart = c * table.rowsPerChunk;
      const rowEnd = Math.min(table.rows, rowStart + table.rowsPerChunk);
      const u = uniforms.alloc(new Uint32Array([numTokens, table.cols, rowStart, rowEnd, table.rowStride, 0, 0, 0]));
      dispatch(this.gpu.device, pass, pipeline, [chunk, args.ids, args.out, u], workgroups);
    });
  }

  /** out[i, :] = src[rows[i], :] for f32 activations. */
  gatherRows(pass: GPUComputePassEncoder, uniforms: UniformArena, args: GatherRowsArgs): void {
    const { numRows, dim } = args;
    assert(Number.isInteger(numRows) && numRows >= 0, `gatherRows: numRows ${numRows} must be a non-negative integer`);
    assert(Number.isInteger(dim) && dim > 0, `gatherRows: dim ${dim} must be a positive integer`);
    if (numRows === 0) return;
    const u = uniforms.alloc(new Uint32Array([numRows, dim, 0, 0, dim, 0, 0, 0]));
    dispatch(this.gpu.device, pass, this.rowsPipeline, [args.src, args.rows, args.out, u], grid1d(Math.ceil((numRows * dim) / WORKGROUP_SIZE)));
  }
}
