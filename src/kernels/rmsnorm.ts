// RMSNorm over f32 rows (HF Llama: out = x / sqrt(mean(x^2) + eps) * weight), plain and with the
// residual add fused in front (shaders/rmsnorm.wgsl).
import assert from 'node:assert/strict';
import { dispatch, grid1d, loadShaderSections, type Binding, type GpuDevice, type UniformArena } from '../gpu/index.js';

/**
 * How one workgroup reduces a row's sum of squares:
 * - 'workgroup256': 256 lanes, tree in workgroup memory (GPUs: many rows' worth of lanes in flight);
 * - 'workgroup8':   8 lanes, tree in workgroup memory (CPU adapters without subgroups);
 * - 'subgroup8':    8 lanes = one subgroup, subgroupAdd and no barrier (CPU adapters with subgroups).
 */
export type RowReduction = 'workgroup256' | 'workgroup8' | 'subgroup8';

export interface RmsNormOptions {
  /** Default: defaultRowReduction(gpu). */
  reduction?: RowReduction;
  /** Read rows as vec4s when dim % 4 == 0. Default: on CPU adapters (measured there); false forces the scalar entries. */
  vec4?: boolean;
}

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

/** Per-head RMSNorm in place on the q and k heads of a fused qkv activation (Qwen3's q_norm / k_norm). */
export interface HeadNormArgs {
  /** f32 [numTokens, rowStride]: token t's heads at t * rowStride + h * headDim, q heads first, then k heads. */
  qkv: Binding;
  /** f32 [2, headDim]: q_norm's weight, then k_norm's. */
  weight: Binding;
  numTokens: number;
  rowStride: number;
  numQHeads: number;
  numKHeads: number;
  headDim: number;
  eps: number;
}

export interface AddNormArgs extends RmsNormArgs {
  /** f32 [numRows, dim]: residual += x is written back; out must not alias it. */
  residual: Binding;
}

/**
 * Lavapipe runs a workgroup as SIMD-8 fibers and switches between all of them at every barrier, so a
 * 256-lane tree costs ~6x an 8-lane subgroupAdd there (16 x 768 addNorm: 215 vs 34 us); GPUs want wide
 * workgroups.
 */
export function defaultRowReduction(gpu: GpuDevice): RowReduction {
  if (!gpu.isSoftware) return 'workgroup256';
  return gpu.hasSubgroups && (gpu.adapter.info.subgroupMinSize ?? 0) >= 8 ? 'subgroup8' : 'workgroup8';
}

interface EntryPipelines {
  scalar: GPUComputePipeline;
  /** null when vec4 reads are off. */
  vec4: GPUComputePipeline | null;
}

export class RmsNormKernel {
  private constructor(
    private readonly gpu: GpuDevice,
    private readonly normPipelines: EntryPipelines,
    private readonly addNormPipelines: EntryPipelines,
    private readonly headNormPipeline: GPUComputePipeline,
    readonly reduction: RowReduction,
  ) {}

  static async create(gpu: GpuDevice, options: RmsNormOptions = {}): Promise<RmsNormKernel> {
    const reduction = options.reduction ?? defaultRowReduction(gpu);
    const useVec4 = options.vec4 ?? gpu.isSoftware;
    const subgroup = reduction === 'subgroup8';
    if (subgroup && !gpu.hasSubgroups) throw new Error("rmsnorm: reduction 'subgroup8' needs the subgroups feature; use 'workgroup8'");
    const code = loadShaderSections('rmsnorm', [subgroup ? 'reduce_subgroup' : 'reduce_workgroup', 'kernels']);
    const constants = { WG: reduction === 'workgroup256' ? 256 : 8 };
    const get = (entryPoint: string) => gpu.pipelines.get({ kernel: `rmsnorm.${entryPoint}.${reduction}`, code, entryPoint, constants });
    const entries = async (name: string): Promise<EntryPipelines> => {
      const [scalar, vec4] = await Promise.all([get(name), useVec4 ? get(`${name}_vec4`) : null]);
      return { scalar, vec4 };
    };
    const [norm, addNorm, headNorm] = await Promise.all([entries('norm'), entries('add_norm'), get('head_norm')]);
    return new RmsNormKernel(gpu, norm, addNorm, headNorm, reduction);
  }

  /** out = rmsnorm(x) * weight, row by row. */
  norm(pass: GPUComputePassEncoder, uniforms: UniformArena, args: RmsNormArgs): void {
    if (!checkShape('norm', args)) return;
    dispatch(this.gpu.device, pass, pick(this.normPipelines, args.dim), [args.x, args.weight, args.out, params(uniforms, args)], grid1d(args.numRows));
  }

  /** Fused residual add: residual += x (written back), then out = rmsnorm(residual) * weight. */
  addNorm(pass: GPUComputePassEncoder, uniforms: UniformArena, args: AddNormArgs): void {
    if (!checkShape('addNorm', args)) return;
    const bindings = [args.x, args.residual, args.weight, args.out, params(uniforms, args)];
    dispatch(this.gpu.device, pass, pick(this.addNormPipelines, args.dim), bindings, grid1d(args.numRows));
  }

  /** In place: every q head of every token normed with weight row 0, every k head with row 1. */
  headNorm(pass: GPUComputePassEncoder, uniforms: UniformArena, a: HeadNormArgs): void {
    const heads = a.numQHeads + a.numKHeads;
    assert(Number.isInteger(a.headDim) && a.headDim > 0, `rmsnorm.headNorm: headDim ${a.headDim} must be a positive integer`);
    assert(heads * a.headDim <= a.rowStride, `rmsnorm.headNorm: ${heads} heads of ${a.headDim} run past rowStride ${a.rowStride}`);
    assert(a.eps >= 0, `rmsnorm.headNorm: eps ${a.eps} must be >= 0`);
    if (a.numTokens === 0 || heads === 0) return;
    const data = new ArrayBuffer(32);
    const u32 = new Uint32Array(data);
    u32.set([a.numTokens, heads, a.headDim]);
    new Float32Array(data, 12, 1)[0] = a.eps;
    u32.set([a.rowStride, a.numQHeads], 4);
    dispatch(this.gpu.device, pass, this.headNormPipeline, [a.qkv, a.weight, uniforms.alloc(new Uint8Array(data))], grid1d(a.numTokens * heads));
  }
}

function pick(p: EntryPipelines, dim: number): GPUComputePipeline {
  return p.vec4 && dim % 4 === 0 ? p.vec4 : p.scalar;
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
