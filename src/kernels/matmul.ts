// y = x W^T (+ bias) for HF-layout weights: GEMV for decode-sized batches, tiled GEMM for prefill.
// One binding per weight storage kind (f32, native f16, f16 packed in u32 pairs); the shader
// source is assembled from sections of shaders/matmul.wgsl (see its header).
import { dispatch, grid1d, loadShader, type Binding, type GpuDevice, type UniformArena } from '../gpu/index.js';
import { WEIGHT_ROW_ALIGN, type GpuWeight } from './weight.js';

/**
 * numRows at or below this are decode-sized: one row runs the GEMV kernel, 2..16 rows a skinny GEMM
 * whose tile height covers every row, so the weights are streamed once. Above: the prefill GEMM.
 */
export const GEMV_MAX_ROWS = 16;

export type WeightStorage = 'f32' | 'f16' | 'f16_packed';

/** Kernel shape knobs; defaults come from measurements (docs/benchmarks.md, bench/kernels.ts). */
export interface MatmulTuning {
  /** gemv_sg (subgroups): weight rows per lane (1..8); a workgroup owns 8x as many. */
  gemvRowsPerLane: number;
  /** Portable gemv: lanes per workgroup (lanes stride over k). */
  gemvLanes: number;
  /** Portable gemv: weight rows per workgroup (1..16): each x block loaded is reused this many times. */
  gemvRowsPerGroup: number;
  /** gemm_sg for prefill: x rows and weight rows per lane (tile = 8*tm x 8*tn). */
  gemmTm: number;
  gemmTn: number;
  /** gemm_sg for 2..16 rows (skinny; tile height 8 or 16 covers all rows): weight rows per lane. */
  skinnyTn: number;
  /** Use the subgroup kernels (gemv_sg, gemm_sg) when the device has subgroups of >= 8 lanes. */
  useSubgroupKernels: boolean;
}

export interface MatmulOptions {
  /** false forces the packed-u32 f16 path even when the device has shader-f16 (tests use it). */
  nativeF16?: boolean;
  tuning?: Partial<MatmulTuning>;
}

/** Software rasterisers (lavapipe/SwiftShader) run a workgroup as SIMD lanes of one CPU thread. */
export function isCpuAdapter(gpu: GpuDevice): boolean {
  return gpu.adapter.info.architecture === 'software' || /llvmpipe|swiftshader/i.test(gpu.adapter.info.description);
}

export function defaultTuning(gpu: GpuDevice): MatmulTuning {
  const cpu = isCpuAdapter(gpu);
  return {
    gemvRowsPerLane: 4,
    gemvLanes: cpu ? 8 : 64,
    gemvRowsPerGroup: cpu ? 4 : 2,
    gemmTm: 1,
    gemmTn: 2,
    skinnyTn: 2,
    // The subgroup kernels use 8-lane workgroups: right for lavapipe, wasteful on discrete GPUs.
    useSubgroupKernels: cpu,
  };
}

interface GemmPipelines {
  /** [xVec4 ? 1 : 0] */
  pipelines: GPUComputePipeline[];
  tileRows: number;
  tileCols: number;
}

interface GemvPipelines {
  /** [xVec4 ? 1 : 0] */
  pipelines: GPUComputePipeline[];
  rowsPerGroup: number;
}

interface KernelSet {
  gemv: GemvPipelines;
  /** Subgroup GEMM for 2..8 and 9..16 rows; null without subgroups (gemm_tile serves them). */
  skinny: GemmPipelines[] | null;
  gemm: GemmPipelines;
}

export class MatmulKernels {
  private readonly params = new Uint32Array(8);

  private constructor(
    private readonly gpu: GpuDevice,
    private readonly kernels: Record<'f32' | 'f16', KernelSet>,
    readonly storage: Record<'f32' | 'f16', WeightStorage>,
    /** Bound where a binding is unused (no bias; x4 when x cannot be read as vec4s). */
    private readonly placeholder: GPUBuffer,
    readonly tuning: MatmulTuning,
  ) {}

  static async create(gpu: GpuDevice, options: MatmulOptions = {}): Promise<MatmulKernels> {
    const tuning = { ...defaultTuning(gpu), ...options.tuning };
    const f16Storage: WeightStorage = gpu.hasF16 && options.nativeF16 !== false ? 'f16' : 'f16_packed';
    const useSubgroups = tuning.useSubgroupKernels && gpu.hasSubgroups && (gpu.adapter.info.subgroupMinSize ?? 0) >= 8;
    const [f32, f16] = await Promise.all([
      compileKernelSet(gpu, 'f32', tuning, useSubgroups),
      compileKernelSet(gpu, f16Storage, tuning, useSubgroups),
    ]);
    const placeholder = gpu.createBuffer('matmul.placeholder', 16, GPUBufferUsage.STORAGE);
    return new MatmulKernels(gpu, { f32, f16 }, { f32: 'f32', f16: f16Storage }, placeholder, tuning);
  }

  /**
   * y[r, c] = sum_k x[r, k] * W[c, k] (+ bias[c]) for r < numRows, c < w.rows. x: f32 [numRows, w.cols]
   * contiguous; y: f32 [numRows, w.rows] contiguous; bias: f32 [w.rows]. GEMV for numRows <= 16,
   * tiled GEMM above; one dispatch per weight chunk, each writing its column range of y.
   */
  matmul(pass: GPUComputePassEncoder, uniforms: UniformArena, x: Binding, w: GpuWeight, y: Binding, numRows: number, bias?: Binding): void {
    if (!(Number.isInteger(numRows) && numRows > 0)) throw new Error(`matmul(${w.label}): numRows must be a positive integer, got ${numRows}`);
    if (w.chunks.length === 0) throw new Error(`matmul(${w.label}): weight was destroyed`);
    if (w.rowStride % WEIGHT_ROW_ALIGN !== 0) throw new Error(`matmul(${w.label}): rowStride ${w.rowStride} is not a multiple of ${WEIGHT_ROW_ALIGN}; upload weights with uploadWeight()`);
    const set = this.kernels[w.dtype];
    const xVec4 = w.cols % 4 === 0 && bindingOffset(x) % 16 === 0 ? 1 : 0;
    const kernel = this.select(set, numRows);
    for (let c = 0; c < w.chunks.length; c++) {
      const row0 = c * w.rowsPerChunk;
      const outRows = Math.min(w.rowsPerChunk, w.rows - row0);
      const p = this.params;
      p[0] = numRows; p[1] = w.cols; p[2] = w.rowStride / WEIGHT_ROW_ALIGN; p[3] = outRows;
      p[4] = row0; p[5] = w.rows; p[6] = bias ? 1 : 0; p[7] = 0;
      const bindings = [x, xVec4 ? x : this.placeholder, w.chunks[c]!, bias ?? this.placeholder, y, uniforms.alloc(p)];
      if ('rowsPerGroup' in kernel) {
        dispatch(this.gpu.device, pass, kernel.pipelines[xVec4]!, bindings, grid1d(Math.ceil(outRows / kernel.rowsPerGroup)));
      } else {
        const gx = Math.ceil(outRows / kernel.tileCols), gy = Math.ceil(numRows / kernel.tileRows);
        if (gx > this.gpu.limits.maxComputeWorkgroupsPerDimension || gy > this.gpu.limits.maxComputeWorkgroupsPerDimension) {
          throw new Error(`matmul(${w.label}): ${numRows} x ${outRows} outputs need more workgroups than one dispatch allows; split the batch`);
        }
        dispatch(this.gpu.device, pass, kernel.pipelines[xVec4]!, bindings, [gx, gy]);
      }
    }
  }

  /** GEMV for one row, the skinny subgroup GEMM for 2..16 rows, the prefill GEMM above. */
  private select(set: KernelSet, numRows: number): GemmPipelines | GemvPipelines {
    if (numRows === 1) return set.gemv;
    if (numRows <= GEMV_MAX_ROWS && set.skinny) return set.skinny[numRows <= 8 ? 0 : 1]!;
    return set.gemm;
  }

  destroy(): void {
    this.placeholder.destroy();
  }
}

function bindingOffset(b: Binding): number {
  return b instanceof GPUBuffer ? 0 : b.offset ?? 0;
}

/** Concatenates the header-less sections of matmul.wgsl that make up one weight storage kind. */
export function matmulSource(storage: WeightStorage, withSubgroups: boolean): string {
  const sections = parseSections(loadShader('matmul'));
  const names = [`weights_${storage}`, 'common', 'kernels', ...(withSubgroups ? ['subgroups'] : [])];
  return names
    .map((name) => {
      const text = sections.get(name);
      if (text === undefined) throw new Error(`shaders/matmul.wgsl has no section "${name}"`);
      return text;
    })
    .join('\n');
}

function parseSections(code: string): Map<string, string> {
  const sections = new Map<string, string>();
  const parts = code.split(/^\/\/#section +(\S+) *$/m);
  for (let i = 1; i + 1 < parts.length; i += 2) sections.set(parts[i]!, parts[i + 1]!);
  return sections;
}

async function compileKernelSet(gpu: GpuDevice, storage: WeightStorage, tuning: MatmulTuning, useSubgroups: boolean): Promise<KernelSet> {
  const code = matmulSource(storage, useSubgroups);
  const kernel = `matmul.${storage}`;
  const bothXLayouts = (entryPoint: string, constants: Record<string, number>) =>
    Promise.all([0, 1].map((xVec4) => gpu.pipelines.get({ kernel: `${kernel}.${entryPoint}`, code, entryPoint, constants: { ...constants, X_VEC4: xVec4 } })));
  let gemv: Promise<GemvPipelines>;
  if (useSubgroups) {
    const rpl = tuning.gemvRowsPerLane;
    if (!(Number.isInteger(rpl) && rpl >= 1 && rpl <= 8)) throw new Error(`matmul tuning: gemvRowsPerLane must be 1..8, got ${rpl}`);
    // gemv_sg reads x as scalars, so one pipeline serves both x layouts.
    gemv = gpu.pipelines
      .get({ kernel: `${kernel}.gemv_sg`, code, entryPoint: 'gemv_sg', constants: { RPL: rpl } })
      .then((p) => ({ pipelines: [p, p], rowsPerGroup: 8 * rpl }));
  } else {
    const rpw = tuning.gemvRowsPerGroup;
    if (!(Number.isInteger(rpw) && rpw >= 1 && rpw <= 16)) throw new Error(`matmul tuning: gemvRowsPerGroup must be 1..16, got ${rpw}`);
    gemv = bothXLayouts('gemv', { WG: tuning.gemvLanes, RPW: rpw }).then((pipelines) => ({ pipelines, rowsPerGroup: rpw }));
  }
  const sg = async (tm: number, tn: number): Promise<GemmPipelines> => {
    if (!(tn >= 1 && tm >= 1 && 8 * tm * tn <= 128)) throw new Error(`matmul tuning: need 8 * TM * TN <= 128 (got TM ${tm}, TN ${tn})`);
    return { pipelines: await bothXLayouts('gemm_sg', { TM: tm, TN: tn }), tileRows: 8 * tm, tileCols: 8 * tn };
  };
  const [gemvPipelines, skinny, gemm] = await Promise.all([
    gemv,
    useSubgroups ? Promise.all([sg(1, tuning.skinnyTn), sg(2, tuning.skinnyTn)]) : null,
    useSubgroups
      ? sg(tuning.gemmTm, tuning.gemmTn)
      : bothXLayouts('gemm_tile', {}).then((pipelines) => ({ pipelines, tileRows: 32, tileCols: 32 })),
  ]);
  return { gemv: gemvPipelines, skinny, gemm };
}
