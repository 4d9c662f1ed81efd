// Kernel micro-benchmarks: each kernel and shape next to a same-run streaming read of the same bytes
// (bench/shaders/stream_read.wgsl) and the host's memcpy bandwidth; 4-bit weights also against f16
// weights of the same shape, timed interleaved.
// Usage: npm run bench:kernels [-- --json] [--samples N] [--only <substring>] [--tuning '<MatmulTuning JSON>']
//   (NATIVE_F16=0 forces packed-u32 f16 weights on every path).
import { pathToFileURL } from 'node:url';
import { openDefaultDevice, describeOpened, type GpuDevice } from '../src/gpu/index.js';
import { MatmulKernels, type MatmulTuning } from '../src/kernels/matmul.js';
import { PermuteKernel } from '../src/kernels/permute.js';
import { destroyWeight, uploadQ4Weight, uploadWeight, type WeightDtype } from '../src/kernels/weight.js';
import { randomQ4Matrix } from '../test/support/q4-reference.js';
import { seededPermutation } from '../test/support/random.js';
import { attentionDecodeCases } from './attention-cases.js';
import type { KernelCase } from './kernel-case.js';
import { median, memcpyGBps, printTable, randomHost, StreamRead, timePasses, wantsJson, argValue, type RecordFn, type Row } from './common.js';

// ---- HOOK: other kernel families add their cases here ---------------------------------------
// Each file builds KernelCase objects (types in kernel-case.ts). A case's setup() may create its own kernels;
// `streamed` names the bytes the streaming-read baseline should read (for attention: the KV cache).
export const extraKernelCases: KernelCase[] = [...attentionDecodeCases([1024, 4096, 16384])];
// ---------------------------------------------------------------------------------------------

const STORAGE_RW = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

function matmulCase(group: string, name: string, numRows: number, outFeatures: number, inFeatures: number, dtype: WeightDtype, samples?: number): KernelCase {
  return {
    group,
    name,
    samples,
    async setup(gpu, shared) {
      const w = uploadWeight(gpu, name, randomHost(outFeatures * inFeatures, 1), outFeatures, inFeatures, dtype, undefined, shared.matmul.weightLayout);
      const x = gpu.upload('x', randomHost(numRows * inFeatures, 2));
      const y = gpu.createBuffer('y', numRows * outFeatures * 4, STORAGE_RW());
      return {
        record: (pass, uniforms) => shared.matmul.matmul(pass, uniforms, x, w, y, numRows),
        bytes: w.byteLength + numRows * inFeatures * 4,
        flops: 2 * numRows * outFeatures * inFeatures,
        streamed: w.chunks.map((buffer) => ({ buffer, bytes: buffer.size })),
        destroy: () => {
          destroyWeight(w);
          x.destroy();
          y.destroy();
        },
      };
    },
  };
}

/**
 * 4-bit weights (AWQ/GPTQ-style groups): bytes are the packed words plus the scale/zero words, and the
 * streaming read reads exactly those buffers, so "vs stream" is the kernel's share of the bandwidth.
 */
function q4MatmulCase(
  name: string,
  numRows: number,
  outFeatures: number,
  inFeatures: number,
  groupSize: number,
  samples?: number,
  actOrder = false,
): KernelCase {
  return {
    group: 'matmul',
    name,
    samples,
    async setup(gpu, shared) {
      const m = randomQ4Matrix(outFeatures, inFeatures, groupSize, 1);
      // Activation order: the runner gathers the input by the weight's inputPerm, then runs the same matmul.
      if (actOrder) m.inputPerm = seededPermutation(inFeatures, 3);
      const w = uploadQ4Weight(gpu, name, m, undefined, shared.matmul.weightLayout);
      const x = gpu.upload('x', randomHost(numRows * inFeatures, 2));
      const y = gpu.createBuffer('y', numRows * outFeatures * 4, STORAGE_RW());
      const gather = actOrder ? { kernel: await PermuteKernel.create(gpu), out: gpu.createBuffer('x_perm', numRows * inFeatures * 4, STORAGE_RW()) } : null;
      return {
        record: (pass, uniforms) => {
          if (gather && w.inputPerm) gather.kernel.gatherColumns(pass, uniforms, { x, perm: w.inputPerm, out: gather.out, numRows, cols: inFeatures });
          shared.matmul.matmul(pass, uniforms, gather ? gather.out : x, w, y, numRows);
        },
        bytes: w.byteLength + numRows * inFeatures * 4,
        flops: 2 * numRows * outFeatures * inFeatures,
        streamed: [...w.chunks, ...w.scaleChunks].map((buffer) => ({ buffer, bytes: buffer.size })),
        destroy: () => {
          destroyWeight(w);
          x.destroy();
          y.destroy();
          gather?.out.destroy();
        },
      };
    },
  };
}

export const matmulCases: KernelCase[] = [
  matmulCase('matmul', 'decode gemv 1x4096x4096 f32', 1, 4096, 4096, 'f32'),
  matmulCase('matmul', 'decode gemv 1x4096x4096 f16', 1, 4096, 4096, 'f16'),
  matmulCase('matmul', 'skinny 4x4096x4096 f32', 4, 4096, 4096, 'f32'),
  matmulCase('matmul', 'skinny 4x4096x4096 f16', 4, 4096, 4096, 'f16'),
  matmulCase('matmul', 'skinny 16x4096x4096 f32', 16, 4096, 4096, 'f32'),
  matmulCase('matmul', 'skinny 16x4096x4096 f16', 16, 4096, 4096, 'f16'),
  matmulCase('matmul', 'prefill gemm 512x4096x4096 f32', 512, 4096, 4096, 'f32', 3),
  matmulCase('matmul', 'prefill gemm 512x4096x4096 f16', 512, 4096, 4096, 'f16', 3),
  // The dtype is the name's last word (gemmOverGemv pairs prefill and decode rows by it).
  q4MatmulCase('decode gemv 1x4096x4096 g128 q4', 1, 4096, 4096, 128),
  q4MatmulCase('skinny 8x4096x4096 g128 q4', 8, 4096, 4096, 128),
  q4MatmulCase('skinny 16x4096x4096 g128 q4', 16, 4096, 4096, 128),
  q4MatmulCase('prefill gemm 512x4096x4096 g128 q4', 512, 4096, 4096, 128, 3),
];

/**
 * 4-bit against f16 weights of the same shape, their samples interleaved (timePasses), so the time
 * ratio holds on a loaded machine where the two table rows, minutes apart, may not be comparable.
 */
const q4VsF16Shapes: { name: string; numRows: number; samples?: number }[] = [
  { name: 'gemv 1x4096x4096 g128', numRows: 1 },
  { name: 'skinny 16x4096x4096 g128', numRows: 16 },
  { name: 'prefill 512x4096x4096 g128', numRows: 512, samples: 3 },
];

interface PairResult {
  name: string;
  q4Ms: number;
  f16Ms: number;
  q4Gflops: number;
  f16Gflops: number;
  /** Median over interleaved sample pairs of f16 time / 4-bit time. */
  speedup: number;
}

/** Activation-ordered 4-bit (gather by inputPerm, then the matmul) against in-order 4-bit, interleaved. */
interface ActOrderResult {
  name: string;
  plainMs: number;
  actOrderMs: number;
  /** Median over interleaved sample pairs of act-order time / in-order time. */
  ratio: number;
}

async function actOrderVsPlain(gpu: GpuDevice, matmul: MatmulKernels, only: string | undefined, defaultSamples: number): Promise<ActOrderResult[]> {
  const results: ActOrderResult[] = [];
  for (const shape of q4VsF16Shapes) {
    const name = `q4 act-order vs in order ${shape.name}`;
    if (only && !name.includes(only)) continue;
    const plain = await q4MatmulCase(name, shape.numRows, 4096, 4096, 128).setup(gpu, { matmul });
    const act = await q4MatmulCase(name, shape.numRows, 4096, 4096, 128, undefined, true).setup(gpu, { matmul });
    const [a, b] = await timePasses(gpu, [plain.record, act.record], shape.samples ?? defaultSamples);
    results.push({ name: shape.name, plainMs: a!.ms, actOrderMs: b!.ms, ratio: median(a!.samples.map((ms, i) => b!.samples[i]! / ms)) });
    plain.destroy();
    act.destroy();
  }
  return results;
}

async function q4VsF16(gpu: GpuDevice, matmul: MatmulKernels, only: string | undefined, defaultSamples: number): Promise<PairResult[]> {
  const results: PairResult[] = [];
  for (const shape of q4VsF16Shapes) {
    const name = `q4 vs f16 ${shape.name}`;
    if (only && !name.includes(only)) continue;
    const q4 = await q4MatmulCase(name, shape.numRows, 4096, 4096, 128).setup(gpu, { matmul });
    const f16 = await matmulCase('matmul', name, shape.numRows, 4096, 4096, 'f16').setup(gpu, { matmul });
    const [a, b] = await timePasses(gpu, [q4.record, f16.record], shape.samples ?? defaultSamples);
    results.push({
      name: shape.name,
      q4Ms: a!.ms,
      f16Ms: b!.ms,
      q4Gflops: q4.flops / a!.ms / 1e6,
      f16Gflops: f16.flops / b!.ms / 1e6,
      speedup: median(a!.samples.map((ms, i) => b!.samples[i]! / ms)),
    });
    q4.destroy();
    f16.destroy();
  }
  return results;
}

interface Result {
  group: string;
  name: string;
  ms: number;
  minMs: number;
  gbps: number;
  gflops: number;
  /** GFLOP/s of the fastest sample: the two cases of a GEMM / GEMV ratio are not run interleaved. */
  bestGflops: number;
  streamGbps: number;
  /**
   * Kernel GB/s over streaming-read GB/s, the median over sample pairs run back to back: on a
   * shared machine each sample's speed swings up to 2x, and a pair sees the same load.
   */
  vsStream: number;
  timing: string;
}

async function main(): Promise<void> {
  const json = wantsJson();
  const defaultSamples = Number(argValue('--samples') ?? 7);
  const only = argValue('--only');
  const tuning = argValue('--tuning');
  const gpu = await openDefaultDevice();
  // NATIVE_F16=0 forces the packed f16 view everywhere (as on a device without shader-f16).
  const matmul = await MatmulKernels.create(gpu, {
    nativeF16: process.env.NATIVE_F16 !== '0',
    q4: true,
    ...(tuning ? { tuning: JSON.parse(tuning) as Partial<MatmulTuning> } : {}),
  });
  const memcpy = memcpyGBps();
  const cases = [...matmulCases, ...extraKernelCases].filter((c) => !only || c.name.includes(only));
  const stream = await StreamRead.create(gpu, gpu.limits.maxStorageBufferBindingSize);
  const results: Result[] = [];
  for (const c of cases) {
    const prepared = await c.setup(gpu, { matmul });
    const samples = c.samples ?? defaultSamples;
    const streamAll: RecordFn = (pass, u) => {
      for (const b of prepared.streamed) stream.record(pass, u, b.buffer, b.bytes);
    };
    const [t, s] = await timePasses(gpu, [prepared.record, streamAll], samples);
    const streamedBytes = prepared.streamed.reduce((sum, b) => sum + b.bytes, 0);
    results.push({
      group: c.group,
      name: c.name,
      ms: t!.ms,
      minMs: Math.min(...t!.samples),
      gbps: prepared.bytes / t!.ms / 1e6,
      gflops: prepared.flops / t!.ms / 1e6,
      bestGflops: prepared.flops / Math.min(...t!.samples) / 1e6,
      streamGbps: streamedBytes / s!.ms / 1e6,
      vsStream: median(t!.samples.map((ms, i) => prepared.bytes / ms / (streamedBytes / s!.samples[i]!))),
      timing: t!.method,
    });
    prepared.destroy();
    if (!json) process.stderr.write(`  done: ${c.name}\n`);
  }
  stream.destroy();
  const pairs = await q4VsF16(gpu, matmul, only, defaultSamples);
  const actOrder = await actOrderVsPlain(gpu, matmul, only, defaultSamples);
  report(results, pairs, actOrder, memcpy, gpu, matmul, json);
  matmul.destroy();
  gpu.destroy();
}

/** Prefill GEMM over decode GEMV GFLOP/s of the same dtype, each from its fastest sample (least disturbed by other load). */
function gemmOverGemv(results: Result[], r: Result): number | undefined {
  if (!r.name.startsWith('prefill')) return undefined;
  const dtype = r.name.split(' ').pop();
  const gemv = results.find((g) => g.name.startsWith('decode gemv') && g.name.endsWith(` ${dtype}`));
  return gemv ? r.bestGflops / gemv.bestGflops : undefined;
}

function report(
  results: Result[],
  pairs: PairResult[],
  actOrder: ActOrderResult[],
  memcpy: number,
  gpu: GpuDevice,
  matmul: MatmulKernels,
  json: boolean,
): void {
  const device = describeOpened(gpu).description;
  if (json) {
    const rows = results.map((r) => ({ ...r, vsMemcpy: r.gbps / memcpy, vsGemv: gemmOverGemv(results, r) }));
    console.log(
      JSON.stringify(
        {
          device,
          memcpyGBps: memcpy,
          tuning: matmul.tuning,
          f16Storage: matmul.f16Storage,
          weightLayout: matmul.weightLayout,
          results: rows,
          q4VsF16: pairs,
          actOrderVsInOrder: actOrder,
        },
        null,
        2,
      ),
    );
    return;
  }
  console.log(
    `device: ${device}; weight layout ${matmul.weightLayout}; f16 weights: ${Object.entries(matmul.f16Storage)
      .map(([path, view]) => `${path} ${view}`)
      .join(', ')}; host memcpy ${memcpy.toFixed(1)} GB/s`,
  );
  for (const group of [...new Set(results.map((r) => r.group))]) {
    const rows: Row[] = results
      .filter((r) => r.group === group)
      .map((r) => {
        const vsGemv = gemmOverGemv(results, r);
        return {
          case: r.name,
          ms: r.ms,
          'min ms': r.minMs,
          'GB/s': r.gbps,
          'GFLOP/s': r.gflops,
          'stream GB/s': r.streamGbps,
          'vs stream': `${(100 * r.vsStream).toFixed(0)}%`,
          'vs memcpy': `${((100 * r.gbps) / memcpy).toFixed(0)}%`,
          // Only the matmul table has prefill rows to compare.
          ...(results.some((g) => g.group === group && g.name.startsWith('prefill')) ? { 'x gemv GFLOP/s (best)': vsGemv ? `${vsGemv.toFixed(1)}x` : '' } : {}),
          timing: r.timing,
        };
      });
    printTable(group, rows);
  }
  printTable(
    '4-bit vs f16 weights (same shape, samples interleaved)',
    pairs.map((p) => ({
      case: p.name,
      'q4 ms': p.q4Ms,
      'f16 ms': p.f16Ms,
      'q4 GFLOP/s': p.q4Gflops,
      'f16 GFLOP/s': p.f16Gflops,
      'f16 time / q4 time': `${p.speedup.toFixed(2)}x`,
    })),
  );
  printTable(
    '4-bit with activation order (gather by g_idx order, then the matmul) vs in-order 4-bit (samples interleaved)',
    actOrder.map((p) => ({ case: p.name, 'in-order ms': p.plainMs, 'act-order ms': p.actOrderMs, 'act-order / in-order time': `${p.ratio.toFixed(2)}x` })),
  );
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
