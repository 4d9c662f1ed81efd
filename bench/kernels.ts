// Kernel micro-benchmarks: each kernel and shape next to a same-run streaming read of the same bytes
// (bench/shaders/stream_read.wgsl) and the host's memcpy bandwidth.
// Usage: npm run bench:kernels [-- --json] [--samples N] [--only <substring>] [--tuning '<MatmulTuning JSON>']
//   (NATIVE_F16=0 forces packed-u32 f16 weights on every path).
import { pathToFileURL } from 'node:url';
import { openDefaultDevice, describeOpened, type GpuDevice } from '../src/gpu/index.js';
import { MatmulKernels, type MatmulTuning } from '../src/kernels/matmul.js';
import { destroyWeight, uploadWeight, type WeightDtype } from '../src/kernels/weight.js';
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

export const matmulCases: KernelCase[] = [
  matmulCase('matmul', 'decode gemv 1x4096x4096 f32', 1, 4096, 4096, 'f32'),
  matmulCase('matmul', 'decode gemv 1x4096x4096 f16', 1, 4096, 4096, 'f16'),
  matmulCase('matmul', 'skinny 4x4096x4096 f32', 4, 4096, 4096, 'f32'),
  matmulCase('matmul', 'skinny 4x4096x4096 f16', 4, 4096, 4096, 'f16'),
  matmulCase('matmul', 'skinny 16x4096x4096 f32', 16, 4096, 4096, 'f32'),
  matmulCase('matmul', 'skinny 16x4096x4096 f16', 16, 4096, 4096, 'f16'),
  matmulCase('matmul', 'prefill gemm 512x4096x4096 f32', 512, 4096, 4096, 'f32', 3),
  matmulCase('matmul', 'prefill gemm 512x4096x4096 f16', 512, 4096, 4096, 'f16', 3),
];

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
  report(results, memcpy, gpu, matmul, json);
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

function report(results: Result[], memcpy: number, gpu: GpuDevice, matmul: MatmulKernels, json: boolean): void {
  const device = describeOpened(gpu).description;
  if (json) {
    const rows = results.map((r) => ({ ...r, vsMemcpy: r.gbps / memcpy, vsGemv: gemmOverGemv(results, r) }));
    console.log(
      JSON.stringify(
        { device, memcpyGBps: memcpy, tuning: matmul.tuning, f16Storage: matmul.f16Storage, weightLayout: matmul.weightLayout, results: rows },
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
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
