// bench:floor — what the adapter charges per operation, and the matmul floors that follow from it.
// 1. Cost probes (bench/shaders/cost_probes.wgsl): ns per loop iteration per CPU thread for an empty loop,
//    multiply-adds, and two 16-byte loads through each WGSL load path (storage, uniform, texture),
//    on cached data; and the cost of a dispatch.
// 2. The 16-row skinny GEMM (batched decode) taken apart on 4096x4096 f16 weights: the production
//    kernel, then the same shader source with the weight loads, the x loads, or both replaced by
//    values made in registers (wrong results on purpose), each as a multiple of the same-run GEMV.
// 3. The prefill GEMM (512 rows) over the GEMV in GFLOP/s, and the same for its tile with no loads:
//    the most that ratio can be with these tiles, whatever the loads cost.
// Usage: npm run bench:floor [-- --json] [--samples N]
import { pathToFileURL } from 'node:url';
import { dispatch, loadShader, openDefaultDevice, describeOpened, type GpuDevice } from '../src/gpu/index.js';
import { BENCH_SHADER_DIR } from './shaders.js';
import { MatmulKernels, matmulSource } from '../src/kernels/matmul.js';
import { destroyWeight, uploadWeight } from '../src/kernels/weight.js';
import { median, printTable, randomHost, StreamRead, timePasses, wantsJson, argValue, type RecordFn, type Row } from './common.js';

/** Loop iterations and workgroups per probe dispatch; lanes per workgroup (one lavapipe subgroup). */
const ITERS = 2048;
const GROUPS = 512;
export const LANES = 8;
/** 16-byte words per row of probe data (bench/shaders/cost_probes.wgsl HOT_WORDS); there are 8 rows. */
export const HOT_WORDS = 4096;

interface ProbeResult {
  probe: string;
  /** ns per loop iteration per thread (each of the adapter's threads runs GROUPS / threads workgroups). */
  nsPerIter: number;
  /** Median over interleaved samples of this probe's time over the empty loop's. */
  overEmptyLoop: number;
}

interface SkinnyResult {
  kernel: string;
  ms: number;
  /** Median over interleaved samples of time / GEMV time. */
  overGemv: number;
}

/** Paired ratio: the median over samples of a[i] / b[i] (a shared machine slows both alike). */
function pairedRatio(a: readonly number[], b: readonly number[]): number {
  return median(a.map((ms, i) => ms / b[i]!));
}

/** The loop probes of bench/shaders/cost_probes.wgsl (entry point by label), in table order; the first is the baseline. */
export const COST_PROBES: readonly (readonly [label: string, entryPoint: string])[] = [
  ['empty loop', 'empty_loop'],
  ['8 independent f32 mul+add', 'mul_add'],
  ['2 x vec4<u32> storage loads', 'ssbo_vec4'],
  ['2 x u32 storage loads', 'ssbo_u32'],
  ['2 x vec4<u32> uniform loads', 'ubo_vec4'],
  ['2 x rgba32uint textureLoad', 'texture_rgba32uint'],
];

/**
 * bench/shaders/cost_probes.wgsl with its resources: storage, uniform and texture copies of the same
 * 8 x HOT_WORDS 16-byte words (word i holds i*4 .. i*4+3), so every load path reads the same values.
 */
export class CostProbes {
  private constructor(
    private readonly gpu: GpuDevice,
    private readonly resources: { src: GPUBuffer; ubo: GPUBuffer; tex: GPUTexture; out: GPUBuffer },
    private readonly pipelines: Map<string, { pipeline: GPUComputePipeline; group: GPUBindGroup }>,
  ) {}

  static async create(gpu: GpuDevice, iters = ITERS): Promise<CostProbes> {
    const words = new Uint32Array(HOT_WORDS * 4 * 8).map((_, i) => i);
    const src = gpu.upload('floor.src', words);
    const ubo = gpu.device.createBuffer({ label: 'floor.ubo', size: HOT_WORDS * 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    gpu.write(ubo, words.subarray(0, HOT_WORDS * 4));
    const tex = gpu.device.createTexture({
      label: 'floor.tex',
      size: [HOT_WORDS, 8],
      format: 'rgba32uint',
      usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.COPY_DST,
    });
    gpu.device.queue.writeTexture({ texture: tex }, words, { bytesPerRow: HOT_WORDS * 16 }, [HOT_WORDS, 8]);
    const out = gpu.createBuffer('floor.out', GROUPS * LANES * 16, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
    const code = loadShader('cost_probes', BENCH_SHADER_DIR);
    const pipelines = new Map<string, { pipeline: GPUComputePipeline; group: GPUBindGroup }>();
    for (const entryPoint of [...COST_PROBES.map((p) => p[1]), 'tiny']) {
      const pipeline = await gpu.pipelines.get({ kernel: `cost_probes.${entryPoint}`, code, entryPoint, constants: { ITERS: iters } });
      const entries: GPUBindGroupEntry[] = [
        { binding: 0, resource: { buffer: src } },
        { binding: 1, resource: { buffer: src } },
        { binding: 2, resource: { buffer: ubo } },
        { binding: 3, resource: tex.createView() },
        { binding: 4, resource: { buffer: out } },
      ];
      pipelines.set(entryPoint, { pipeline, group: gpu.device.createBindGroup({ label: entryPoint, layout: pipeline.getBindGroupLayout(0), entries }) });
    }
    return new CostProbes(gpu, { src, ubo, tex, out }, pipelines);
  }

  /** Records `times` dispatches of `groups` workgroups of one entry point. */
  record(entryPoint: string, groups = GROUPS, times = 1): RecordFn {
    const p = this.pipelines.get(entryPoint);
    if (!p) throw new Error(`bench:floor: no cost probe "${entryPoint}"`);
    return (pass) => {
      for (let i = 0; i < times; i++) {
        pass.setPipeline(p.pipeline);
        pass.setBindGroup(0, p.group);
        pass.dispatchWorkgroups(groups);
      }
    };
  }

  /** What the last run wrote: one vec4<u32> per invocation. */
  readOut(groups: number): Promise<Uint32Array> {
    return this.gpu.readU32(this.resources.out, groups * LANES * 4);
  }

  destroy(): void {
    const { src, ubo, tex, out } = this.resources;
    for (const b of [src, ubo, out]) b.destroy();
    tex.destroy();
  }
}

async function costProbes(gpu: GpuDevice, samples: number, threads: number): Promise<{ probes: ProbeResult[]; dispatchUs: number }> {
  const probes = await CostProbes.create(gpu);
  const t = await timePasses(
    gpu,
    [...COST_PROBES.map(([, entry]) => probes.record(entry)), probes.record('tiny', 1, 1), probes.record('tiny', 1, 101)],
    samples,
    2,
  );
  const results = COST_PROBES.map(([probe], i) => ({
    probe,
    nsPerIter: (t[i]!.ms * 1e6) / ((GROUPS / threads) * ITERS),
    overEmptyLoop: pairedRatio(t[i]!.samples, t[0]!.samples),
  }));
  const n = COST_PROBES.length;
  const dispatchUs = (1000 * (t[n + 1]!.ms - t[n]!.ms)) / 100;
  probes.destroy();
  return { probes: results, dispatchUs };
}

/** The gemm_sg statements withoutLoads() replaces (shaders/matmul.wgsl). */
export const GEMM_SG_W_LOAD = 'sg_w[j] = load_w8(min(n0 + 8u * j + lane, last_row), k8);';
export const GEMM_SG_X_LOAD = 'xv = load_x8(min(m0 + 8u * i + lane, last_m), k8);';

/**
 * The production gemm_sg source with its weight loads, x loads or both replaced. Throws when a statement
 * is not there, so a change to shaders/matmul.wgsl cannot silently turn a probe into the real kernel.
 */
export function withoutLoads(source: string, what: 'w' | 'x' | 'both'): string {
  const replace = (code: string, from: string, to: string) => {
    if (!code.includes(from)) throw new Error(`bench:floor: shaders/matmul.wgsl no longer contains "${from}"; update bench/floor.ts`);
    return code.replace(from, to);
  };
  // A per-lane value loaded once before the k loop keeps the made-up operands opaque to the compiler.
  let code = replace(source, 'let m0 = wid.y * (8u * (TM - 1u) + MR);', 'let m0 = wid.y * (8u * (TM - 1u) + MR);\n  probe_seed = x[lane];\n  _ = &w; _ = &x4;');
  // Distinct lanes of every made-up vector: equal ones would let the compiler share the products.
  code = replace(
    code,
    'var<private> sg_w: array<W8, 8>;',
    'var<private> sg_w: array<W8, 8>;\nvar<private> probe_seed: f32;\nconst PROBE_LO = vec4<f32>(0.0, 1.0, 2.0, 3.0);\nconst PROBE_HI = vec4<f32>(0.5, 1.5, 2.5, 3.5);',
  );
  if (what !== 'x') {
    code = replace(code, GEMM_SG_W_LOAD, '{ let f = probe_seed + f32(k8 + j); sg_w[j] = W8(f + PROBE_LO, f * PROBE_HI); }');
  }
  if (what !== 'w') {
    code = replace(code, GEMM_SG_X_LOAD, '{ let f = probe_seed - f32(k8 + i); xv = X8(f * PROBE_HI, f + PROBE_LO); }');
  }
  return code;
}

interface MatmulParts {
  /** The 16-row skinny GEMM and its probes, as multiples of the GEMV's time. */
  skinny: SkinnyResult[];
  /** Prefill GEMM GFLOP/s over GEMV GFLOP/s: the production kernel and its no-loads probe (the ceiling of that ratio). */
  prefillOverGemv: { production: number; noLoads: number };
  gemvOverStream: number;
}

async function matmulParts(gpu: GpuDevice, matmul: MatmulKernels, samples: number): Promise<MatmulParts> {
  const N = 4096,
    K = 4096,
    M = 16,
    P = 512;
  const w = uploadWeight(gpu, 'floor.w', randomHost(N * K, 1), N, K, 'f16', undefined, matmul.weightLayout);
  const x = gpu.upload('floor.x', randomHost(P * K, 2));
  const y = gpu.createBuffer('floor.y', P * N * 4, GPUBufferUsage.STORAGE);
  const stream = await StreamRead.create(gpu, w.byteLength);
  const t = matmul.tuning;
  /** The path's gemm_sg (its f16 view, tile tm x tn) with loads replaced, over the skinny (16) or prefill (512) rows. */
  const probe = async (path: 'skinny' | 'gemm', what: 'w' | 'x' | 'both', tm: number, tn: number): Promise<RecordFn> => {
    const pipeline = await gpu.pipelines.get({
      kernel: `floor.${path}-no-${what}`,
      code: withoutLoads(matmulSource(matmul.f16Storage[path], true), what),
      entryPoint: 'gemm_sg',
      constants: { TM: tm, TN: tn, MR: 8, X_VEC4: 1, X_GUARD_HI: 0 },
    });
    const rows = path === 'skinny' ? M : P;
    const params = new Uint32Array([rows, K, K / 8, N, 0, N, 0, w.layout === 'interleaved8' ? 1 : 0]);
    return (pass, u) =>
      dispatch(gpu.device, pass, pipeline, [x, x, w.chunks[0]!, x, y, u.alloc(params)], [Math.ceil(N / (8 * tn)), Math.ceil(rows / (8 * tm))]);
  };
  const skinnyKernels: [string, RecordFn][] = [
    ['decode GEMV, 1 row (production)', (pass, u) => matmul.matmul(pass, u, x, w, y, 1)],
    ['skinny GEMM, 16 rows (production)', (pass, u) => matmul.matmul(pass, u, x, w, y, M)],
    ['  same, weights made in registers', await probe('skinny', 'w', 2, t.skinnyTnF16)],
    ['  same, x made in registers', await probe('skinny', 'x', 2, t.skinnyTnF16)],
    ['  same, no loads at all', await probe('skinny', 'both', 2, t.skinnyTnF16)],
  ];
  const streamRead: RecordFn = (pass, u) => stream.record(pass, u, w.chunks[0]!, w.chunks[0]!.size);
  const ts = await timePasses(gpu, [...skinnyKernels.map((k) => k[1]), streamRead], samples, 2);
  const gemv = ts[0]!.samples;
  const skinny = skinnyKernels.map(([kernel], i) => ({ kernel, ms: ts[i]!.ms, overGemv: pairedRatio(ts[i]!.samples, gemv) }));
  // Prefill is ~100x a GEMV, so each of its samples is paired with a GEMV run just before it.
  const gemvRun = skinnyKernels[0]![1];
  const prefill = await probe('gemm', 'both', t.gemmTmF16, t.gemmTnF16);
  const tp = await timePasses(gpu, [gemvRun, (pass, u) => matmul.matmul(pass, u, x, w, y, P), gemvRun, prefill], Math.max(3, Math.ceil(samples / 5)), 1);
  const flopRatio = (gemmMs: readonly number[], gemvMs: readonly number[]) => median(gemmMs.map((ms, i) => (P * gemvMs[i]!) / ms));
  const result = {
    skinny,
    prefillOverGemv: { production: flopRatio(tp[1]!.samples, tp[0]!.samples), noLoads: flopRatio(tp[3]!.samples, tp[2]!.samples) },
    gemvOverStream: pairedRatio(gemv, ts[skinnyKernels.length]!.samples),
  };
  destroyWeight(w);
  x.destroy();
  y.destroy();
  stream.destroy();
  return result;
}

async function main(): Promise<void> {
  const json = wantsJson();
  const samples = Number(argValue('--samples') ?? 15);
  const gpu = await openDefaultDevice();
  // Lavapipe runs workgroups on LP_NUM_THREADS threads, one per core by default.
  const threads = gpu.isSoftware ? Number(process.env.LP_NUM_THREADS ?? (await import('node:os')).availableParallelism()) : 1;
  const matmul = await MatmulKernels.create(gpu);
  const costs = await costProbes(gpu, samples, threads);
  const parts = await matmulParts(gpu, matmul, samples);
  const device = describeOpened(gpu).description;
  if (json) {
    console.log(JSON.stringify({ device, threads, ...costs, ...parts }, null, 2));
  } else {
    console.log(`device: ${device}; ${threads} thread(s); ${ITERS} iterations x ${GROUPS} workgroups of ${LANES} lanes per probe`);
    printTable(
      'Cost per loop iteration (cached data; GPU timestamps)',
      costs.probes.map((p): Row => ({ probe: p.probe, 'ns / iteration / thread': p.nsPerIter, 'x empty loop': p.overEmptyLoop })),
    );
    console.log(`\ndispatch: ${costs.dispatchUs.toFixed(1)} us each (100 one-workgroup dispatches in one pass, minus one)`);
    printTable(
      'Batched decode matmul taken apart (4096x4096 f16, 16 rows; probes compute wrong results on purpose)',
      parts.skinny.map((r): Row => ({ kernel: r.kernel, ms: r.ms, 'x GEMV time': r.overGemv })),
    );
    console.log(
      `\nGEMV time / same-run streaming read of its weights: ${parts.gemvOverStream.toFixed(2)} (GEMV at ${(100 / parts.gemvOverStream).toFixed(0)}% of the stream)`,
    );
    const p = parts.prefillOverGemv;
    console.log(
      `prefill GEMM 512x4096x4096 f16, GFLOP/s over the GEMV's: ${p.production.toFixed(1)}x; its tile with no loads at all (the ceiling): ${p.noLoads.toFixed(1)}x`,
    );
  }
  matmul.destroy();
  gpu.destroy();
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
