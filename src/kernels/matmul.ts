// y = x W^T (+ bias) for HF-layout weights: GEMV for decode-sized batches, tiled GEMM for prefill.
// One binding per weight storage kind (f32, native f16, f16 packed in u32 pairs, 4-bit with a
// scale/zero binding), chosen per path (gemv, skinny, gemm) since both f16 views read the same bytes;
// weights may be row-major or interleaved8 (src/kernels/weight.ts), a uniform says which. The shader
// source is assembled from sections of shaders/matmul.wgsl (see its header).
import { dispatch, grid1d, loadShaderSections, type Binding, type GpuDevice, type UniformArena } from '../gpu/index.js';
import { WEIGHT_ROW_ALIGN, type GpuWeight, type Q4GpuWeight, type WeightLayout } from './weight.js';

/**
 * numRows at or below this are decode-sized: one row runs the GEMV kernel, 2..16 rows a skinny GEMM
 * whose tile height covers every row, so the weights are streamed once. Above: the prefill GEMM.
 */
export const GEMV_MAX_ROWS = 16;

/** Tile heights of the skinny GEMM pipelines: a batch of n rows runs the first >= n (one tile row, so weights stream once). */
const SKINNY_TILE_ROWS = [2, 4, 8, 16] as const;

/** How a kernel views the weight buffer; f16 and f16_packed are the same bytes (little-endian halves). */
export type WeightStorage = 'f32' | 'f16' | 'f16_packed' | 'q4';

/** The matmul paths, each compiled with its own view of f16 weights. */
export type MatmulPath = 'gemv' | 'skinny' | 'gemm';

/** Kernel shape knobs; defaults come from measurements (docs/benchmarks.md, bench/kernels.ts). */
export interface MatmulTuning {
  /** gemv_sg (subgroups): weight rows per lane (1..8); a workgroup owns 8x as many. */
  gemvRowsPerLane: number;
  /** gemv_q4_sg (subgroups, 4-bit 'interleaved8' weights): 4-row quads per lane (1..4); a workgroup owns 32x as many rows. */
  gemvQ4QuadsPerLane: number;
  /** Portable gemv: lanes per workgroup (lanes stride over k). */
  gemvLanes: number;
  /** Portable gemv: weight rows per workgroup (1..16): each x block loaded is reused this many times. */
  gemvRowsPerGroup: number;
  /** gemm_sg for prefill, f32 weights: x rows and weight rows per lane (tile = 8*tm x 8*tn). */
  gemmTm: number;
  gemmTn: number;
  /** The same for f16 weights (packed f16 has half the weight loads, so a wider tile pays). */
  gemmTmF16: number;
  gemmTnF16: number;
  /** gemm_sg for 2..16 rows (skinny; tile heights 2, 4, 8, 16: one covers all rows): weight rows per lane, f32 / f16 weights. */
  skinnyTn: number;
  skinnyTnF16: number;
  /** The same for 4-bit weights (one u32 per 8 weights plus a scale/zero word). */
  gemmTmQ4: number;
  gemmTnQ4: number;
  skinnyTnQ4: number;
  /** Use the subgroup kernels (gemv_sg, gemm_sg) when the device has subgroups of >= 8 lanes. */
  useSubgroupKernels: boolean;
  /**
   * Read f16 weights as u32 pairs (unpack2x16float) rather than vec4<f16> in the decode kernels (gemv,
   * skinny) and in the prefill GEMM. Lavapipe loads every 16-bit element separately, so packed
   * halves the loads there; ignored (always packed) without shader-f16.
   */
  packedF16Decode: boolean;
  packedF16Prefill: boolean;
  /**
   * The weight layout these kernels stream fastest; callers pass it to uploadWeight() for weights
   * only matmul reads. 'interleaved8' suits the subgroup kernels (a workgroup's 8 lanes on 8 rows
   * read adjacent blocks); the portable kernels stride lanes over k, which wants 'rows'.
   */
  weightLayout: WeightLayout;
}

export interface MatmulOptions {
  /** false forces the packed-u32 f16 view on every path even when the device has shader-f16 (tests use it). */
  nativeF16?: boolean;
  /**
   * Also compile the 4-bit weight kernels (matmul() of a Q4GpuWeight needs them). Off by default: they
   * add about a third to create()'s compile time (~0.3 s on lavapipe), which a model without 4-bit
   * weights should not pay at startup.
   */
  q4?: boolean;
  tuning?: Partial<MatmulTuning>;
}

/** Kernel shapes per device: software adapters (lavapipe) run a workgroup as SIMD lanes of one CPU thread. */
export function defaultTuning(gpu: GpuDevice): MatmulTuning {
  const cpu = gpu.isSoftware;
  return {
    gemvRowsPerLane: 4,
    gemvQ4QuadsPerLane: 2,
    gemvLanes: cpu ? 8 : 64,
    gemvRowsPerGroup: cpu ? 4 : 2,
    // Lavapipe, interleaved A/B runs (docs/benchmarks.md): 2x2 / 2x4 tiles beat 1x2 by 15-40%;
    // 4x4 and 2x8 spill. Skinny: TN 4 wins for f16 (half the weight loads), loses for f32.
    gemmTm: 2,
    gemmTn: 2,
    gemmTmF16: 2,
    gemmTnF16: 4,
    skinnyTn: 2,
    skinnyTnF16: 4,
    // 4-bit: the f16 tiles measured best as well (same-run A/B, docs/benchmarks.md "4-bit weights").
    gemmTmQ4: 2,
    gemmTnQ4: 4,
    skinnyTnQ4: 4,
    // The subgroup kernels use 8-lane workgroups: right for lavapipe, wasteful on discrete GPUs.
    useSubgroupKernels: cpu,
    // Lavapipe: packed measured faster on every path (interleaved A/B runs, docs/benchmarks.md).
    // Other adapters keep native f16 loads (not measured there).
    packedF16Decode: cpu,
    packedF16Prefill: cpu,
    weightLayout: cpu ? 'interleaved8' : 'rows',
  };
}

/**
 * How a kernel reads x rows, the index into a path's pipelines: 0 scalars (cols % 4 != 0 or an
 * unaligned binding), 1 vec4s with the last block's upper half guarded (cols % 8 == 4), 2 vec4s
 * unguarded (cols % 8 == 0; the guard cost lavapipe's f16 prefill GEMM 4-12%).
 */
type XMode = 0 | 1 | 2;
const X_MODES: readonly XMode[] = [0, 1, 2];

function xModeOf(cols: number, x: Binding): XMode {
  if (cols % 4 !== 0 || bindingOffset(x) % 16 !== 0) return 0;
  return cols % 8 === 0 ? 2 : 1;
}

interface GemmPipelines {
  /** By XMode. */
  pipelines: GPUComputePipeline[];
  tileRows: number;
  tileCols: number;
}

interface GemvPipelines {
  /** By XMode. */
  pipelines: GPUComputePipeline[];
  rowsPerGroup: number;
}

interface KernelSet {
  gemv: GemvPipelines;
  /** The GEMV for 'interleaved8' weights where it is its own kernel (4-bit with subgroups: gemv_q4_sg), else null. */
  gemvInterleaved: GemvPipelines | null;
  /** Subgroup GEMM for 2, 3..4, 5..8 and 9..16 rows (SKINNY_TILE_ROWS); null without subgroups (gemm_tile serves them). */
  skinny: GemmPipelines[] | null;
  gemm: GemmPipelines;
}

/** The subgroup kernels need subgroups of at least 8 lanes, and are chosen by the tuning. */
function usesSubgroupKernels(gpu: GpuDevice, tuning: MatmulTuning): boolean {
  return tuning.useSubgroupKernels && gpu.hasSubgroups && (gpu.adapter.info.subgroupMinSize ?? 0) >= 8;
}

/** The layout MatmulKernels.create(gpu) with default tuning reads: upload model weights in it. */
export function defaultWeightLayout(gpu: GpuDevice): WeightLayout {
  return usesSubgroupKernels(gpu, defaultTuning(gpu)) ? 'interleaved8' : 'rows';
}

export class MatmulKernels {
  /** The shader's Params (12 u32s, a multiple of 16 bytes). */
  private readonly params = new Uint32Array(12);

  private constructor(
    private readonly gpu: GpuDevice,
    /** q4: null unless created with `q4: true`. */
    private readonly kernels: Record<'f32' | 'f16', KernelSet> & { q4: KernelSet | null },
    /** The view each path takes of f16 weights. */
    readonly f16Storage: Record<MatmulPath, WeightStorage>,
    /** Bound where a binding is unused (no bias; x4 when x cannot be read as vec4s). */
    private readonly placeholder: GPUBuffer,
    readonly tuning: MatmulTuning,
  ) {}

  static async create(gpu: GpuDevice, options: MatmulOptions = {}): Promise<MatmulKernels> {
    const tuning = { ...defaultTuning(gpu), ...options.tuning };
    const native = gpu.hasF16 && options.nativeF16 !== false;
    const view = (packed: boolean): WeightStorage => (native && !packed ? 'f16' : 'f16_packed');
    const decode = view(tuning.packedF16Decode);
    const f16Storage: Record<MatmulPath, WeightStorage> = { gemv: decode, skinny: decode, gemm: view(tuning.packedF16Prefill) };
    const useSubgroups = usesSubgroupKernels(gpu, tuning);
    // Unless asked for, the layout follows the kernels actually compiled (see MatmulTuning.weightLayout).
    if (options.tuning?.weightLayout === undefined) tuning.weightLayout = useSubgroups ? 'interleaved8' : 'rows';
    const [f32, f16, q4] = await Promise.all([
      compileKernelSet(gpu, { gemv: 'f32', skinny: 'f32', gemm: 'f32' }, tuning, useSubgroups, {
        gemm: [tuning.gemmTm, tuning.gemmTn],
        skinnyTn: tuning.skinnyTn,
      }),
      compileKernelSet(gpu, f16Storage, tuning, useSubgroups, { gemm: [tuning.gemmTmF16, tuning.gemmTnF16], skinnyTn: tuning.skinnyTnF16 }),
      options.q4
        ? compileKernelSet(gpu, { gemv: 'q4', skinny: 'q4', gemm: 'q4' }, tuning, useSubgroups, {
            gemm: [tuning.gemmTmQ4, tuning.gemmTnQ4],
            skinnyTn: tuning.skinnyTnQ4,
          })
        : null,
    ]);
    const placeholder = gpu.createBuffer('matmul.placeholder', 16, GPUBufferUsage.STORAGE);
    return new MatmulKernels(gpu, { f32, f16, q4 }, f16Storage, placeholder, tuning);
  }

  /** The layout to upload weights in (uploadWeight's `layout`) when only matmul reads them; both layouts work. */
  get weightLayout(): WeightLayout {
    return this.tuning.weightLayout;
  }

  /**
   * y[r, c] = sum_k x[r, k] * W[c, k] (+ bias[c]) for r < numRows, c < w.rows. x: f32 [numRows, w.cols]
   * contiguous; y: f32 [numRows, w.rows] contiguous; bias: f32 [w.rows]. GEMV for numRows <= 16,
   * tiled GEMM above; one dispatch per weight chunk, each writing its column range of y.
   */
  matmul(pass: GPUComputePassEncoder, uniforms: UniformArena, x: Binding, w: GpuWeight, y: Binding, numRows: number, bias?: Binding): void {
    if (!(Number.isInteger(numRows) && numRows > 0)) throw new Error(`matmul(${w.label}): numRows must be a positive integer, got ${numRows}`);
    if (w.chunks.length === 0) throw new Error(`matmul(${w.label}): weight was destroyed`);
    if (w.rowStride % WEIGHT_ROW_ALIGN !== 0)
      throw new Error(`matmul(${w.label}): rowStride ${w.rowStride} is not a multiple of ${WEIGHT_ROW_ALIGN}; upload weights with uploadWeight()`);
    const gshift = w.dtype === 'q4' ? q4GroupShift(w) : 0;
    const set = this.kernels[w.dtype];
    if (!set) throw new Error(`matmul(${w.label}): 4-bit weights need the q4 kernels; create MatmulKernels with { q4: true }`);
    const xMode = xModeOf(w.cols, x);
    const kernel = this.select(set, numRows, w.layout);
    for (let c = 0; c < w.chunks.length; c++) {
      const row0 = c * w.rowsPerChunk;
      const outRows = Math.min(w.rowsPerChunk, w.rows - row0);
      const p = this.params;
      p[0] = numRows;
      p[1] = w.cols;
      p[2] = w.rowStride / WEIGHT_ROW_ALIGN;
      p[3] = outRows;
      p[4] = row0;
      p[5] = w.rows;
      p[6] = bias ? 1 : 0;
      p[7] = w.layout === 'interleaved8' ? 1 : 0;
      p[8] = gshift;
      const bindings = [x, xMode !== 0 ? x : this.placeholder, w.chunks[c]!, bias ?? this.placeholder, y, uniforms.alloc(p)];
      if (w.dtype === 'q4') bindings.push(w.scaleChunks[c]!);
      if ('rowsPerGroup' in kernel) {
        dispatch(this.gpu.device, pass, kernel.pipelines[xMode]!, bindings, grid1d(Math.ceil(outRows / kernel.rowsPerGroup)));
      } else {
        const gx = Math.ceil(outRows / kernel.tileCols),
          gy = Math.ceil(numRows / kernel.tileRows);
        if (gx > this.gpu.limits.maxComputeWorkgroupsPerDimension || gy > this.gpu.limits.maxComputeWorkgroupsPerDimension) {
          throw new Error(`matmul(${w.label}): ${numRows} x ${outRows} outputs need more workgroups than one dispatch allows; split the batch`);
        }
        dispatch(this.gpu.device, pass, kernel.pipelines[xMode]!, bindings, [gx, gy]);
      }
    }
  }

  /** GEMV for one row, the skinny subgroup GEMM for 2..16 rows, the prefill GEMM above. */
  private select(set: KernelSet, numRows: number, layout: WeightLayout): GemmPipelines | GemvPipelines {
    if (numRows === 1) return (layout === 'interleaved8' && set.gemvInterleaved) || set.gemv;
    if (numRows <= GEMV_MAX_ROWS && set.skinny) return set.skinny[SKINNY_TILE_ROWS.findIndex((rows) => numRows <= rows)]!;
    return set.gemm;
  }

  destroy(): void {
    this.placeholder.destroy();
  }
}

/**
 * log2(groupSize / 8) of a 4-bit weight, after checking what the kernels' shift indexing relies on:
 * a power-of-two group of >= 8 that divides cols, unpadded rows, and a scale buffer per chunk.
 */
function q4GroupShift(w: Q4GpuWeight): number {
  const g = w.groupSize;
  const what = `matmul(${w.label})`;
  if (!(Number.isInteger(g) && g >= 8 && (g & (g - 1)) === 0)) throw new Error(`${what}: 4-bit groupSize ${g} is not a power of two >= 8`);
  if (w.cols % g !== 0) throw new Error(`${what}: 4-bit weight has ${w.cols} in features, not a multiple of its groupSize ${g}`);
  if (w.rowStride !== w.cols) throw new Error(`${what}: 4-bit rowStride ${w.rowStride} must equal cols ${w.cols}; upload with uploadQ4Weight()`);
  if (w.scaleChunks.length !== w.chunks.length) {
    throw new Error(`${what}: ${w.scaleChunks.length} scale/zero buffers for ${w.chunks.length} weight chunks; upload with uploadQ4Weight()`);
  }
  return Math.log2(g / 8);
}

function bindingOffset(b: Binding): number {
  return b instanceof GPUBuffer ? 0 : (b.offset ?? 0);
}

/** Concatenates the header-less sections of matmul.wgsl that make up one weight storage kind. */
export function matmulSource(storage: WeightStorage, withSubgroups: boolean): string {
  const subgroups = withSubgroups ? ['subgroups', ...(storage === 'q4' ? ['q4_subgroups'] : [])] : [];
  return loadShaderSections('matmul', [`weights_${storage}`, 'common', 'kernels', ...subgroups]);
}

/** gemm_sg tile shapes of one weight dtype. */
interface SubgroupTiles {
  gemm: [tm: number, tn: number];
  skinnyTn: number;
}

async function compileKernelSet(
  gpu: GpuDevice,
  storage: Record<MatmulPath, WeightStorage>,
  tuning: MatmulTuning,
  useSubgroups: boolean,
  tiles: SubgroupTiles,
): Promise<KernelSet> {
  const pipeline = (path: MatmulPath, entryPoint: string, constants: Record<string, number>) => {
    const code = matmulSource(storage[path], useSubgroups);
    return gpu.pipelines.get({ kernel: `matmul.${storage[path]}.${entryPoint}`, code, entryPoint, constants });
  };
  const allXModes = (path: MatmulPath, entryPoint: string, constants: Record<string, number>) =>
    Promise.all(X_MODES.map((mode) => pipeline(path, entryPoint, { ...constants, X_VEC4: mode === 0 ? 0 : 1, X_GUARD_HI: mode === 1 ? 1 : 0 })));
  let gemv: Promise<GemvPipelines>;
  if (useSubgroups) {
    const rpl = tuning.gemvRowsPerLane;
    if (!(Number.isInteger(rpl) && rpl >= 1 && rpl <= 8)) throw new Error(`matmul tuning: gemvRowsPerLane must be 1..8, got ${rpl}`);
    // gemv_sg reads x as scalars: it only needs to know whether x has whole 8-blocks (mode 2, read
    // unguarded) or not (modes 0 and 1, guarded; mode 0 may also be an unaligned binding).
    const xConstants = (mode: XMode) => ({ RPL: rpl, X_VEC4: mode === 0 ? 0 : 1, X_GUARD_HI: mode === 1 ? 1 : 0 });
    gemv = Promise.all([pipeline('gemv', 'gemv_sg', xConstants(1)), pipeline('gemv', 'gemv_sg', xConstants(2))]).then(([guarded, whole]) => ({
      pipelines: [guarded, guarded, whole],
      rowsPerGroup: 8 * rpl,
    }));
  } else {
    const rpw = tuning.gemvRowsPerGroup;
    if (!(Number.isInteger(rpw) && rpw >= 1 && rpw <= 16)) throw new Error(`matmul tuning: gemvRowsPerGroup must be 1..16, got ${rpw}`);
    gemv = allXModes('gemv', 'gemv', { WG: tuning.gemvLanes, RPW: rpw }).then((pipelines) => ({ pipelines, rowsPerGroup: rpw }));
  }
  /** mr: x rows of the tile's last 8-row group in use (tile height 8 * (tm - 1) + mr). */
  const sg = async (path: MatmulPath, tm: number, tn: number, mr = 8): Promise<GemmPipelines> => {
    if (!(tn >= 1 && tm >= 1 && 8 * tm * tn <= 128)) throw new Error(`matmul tuning: need 8 * TM * TN <= 128 (got TM ${tm}, TN ${tn})`);
    return { pipelines: await allXModes(path, 'gemm_sg', { TM: tm, TN: tn, MR: mr }), tileRows: 8 * (tm - 1) + mr, tileCols: 8 * tn };
  };
  // 4-bit interleaved8 weights get their own GEMV (see gemv_q4_sg in matmul.wgsl); it reads x as
  // scalars and needs no guard (cols % 8 == 0), so one pipeline serves every x mode.
  let gemvInterleaved: Promise<GemvPipelines> | null = null;
  if (useSubgroups && storage.gemv === 'q4') {
    const qpl = tuning.gemvQ4QuadsPerLane;
    if (!(Number.isInteger(qpl) && qpl >= 1 && qpl <= 4)) throw new Error(`matmul tuning: gemvQ4QuadsPerLane must be 1..4, got ${qpl}`);
    gemvInterleaved = pipeline('gemv', 'gemv_q4_sg', { QPL: qpl }).then((p) => ({ pipelines: [p, p, p], rowsPerGroup: 32 * qpl }));
  }
  const [gemvPipelines, gemvInterleavedPipelines, skinny, gemm] = await Promise.all([
    gemv,
    gemvInterleaved,
    useSubgroups ? Promise.all(SKINNY_TILE_ROWS.map((rows) => sg('skinny', Math.ceil(rows / 8), tiles.skinnyTn, rows - 8 * (Math.ceil(rows / 8) - 1)))) : null,
    useSubgroups ? sg('gemm', ...tiles.gemm) : allXModes('gemm', 'gemm_tile', {}).then((pipelines) => ({ pipelines, tileRows: 32, tileCols: 32 })),
  ]);
  return { gemv: gemvPipelines, gemvInterleaved: gemvInterleavedPipelines, skinny, gemm };
}
