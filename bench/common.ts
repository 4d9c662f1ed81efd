// Helpers every bench shares: timing a recorded GPU pass (GPU timestamps when the device has them,
// else wall time around submit + onSubmittedWorkDone), medians, the host memcpy and streaming-read
// baselines, and printing a result table or JSON.
import { dispatch, grid1d, loadShader, UniformArena, type GpuDevice } from '../src/gpu/index.js';
import { Profiler } from './gpu-profiler.js';
import { BENCH_SHADER_DIR } from './shaders.js';

export interface Timing {
  /** Median milliseconds per run. */
  ms: number;
  /** All samples, ms. */
  samples: number[];
  method: 'gpu-timestamp' | 'wall';
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export type RecordFn = (pass: GPUComputePassEncoder, uniforms: UniformArena) => void;

/**
 * Times each of `records` (one compute pass per sample) `samples` times after `warmup` untimed runs.
 * Samples of the different records are interleaved, so load from other processes on a shared
 * machine hits a kernel and its baseline alike. With timestamp-query each pass is bracketed by GPU
 * timestamps; otherwise a sample is the wall time of submit -> onSubmittedWorkDone.
 *
 * With timestamps, each wait starts only after sleeping a quarter longer than the pass last took:
 * while a wait is pending Dawn's event polling spins a CPU core, which on lavapipe slows the very
 * kernels being timed (by up to 2x on the 2-core reference machine; docs/benchmarks.md, "Wait
 * pacing"). The engine's WaitPacer sleeps for less (it must not add latency); a bench need not.
 */
export async function timePasses(gpu: GpuDevice, records: readonly RecordFn[], samples = 5, warmup = 1): Promise<Timing[]> {
  const uniforms = new UniformArena(gpu.device);
  const profiler = gpu.features.has('timestamp-query') ? new Profiler(gpu.device) : null;
  /** Per record: how long its pass took when it outlasted the sleep before its wait. */
  const expectedMs = records.map(() => 0);
  const wall: number[][] = records.map(() => []);
  try {
    for (let i = 0; i < warmup + samples; i++) {
      for (let r = 0; r < records.length; r++) {
        const timed = i >= warmup;
        const encoder = gpu.device.createCommandEncoder({ label: 'bench' });
        const pass = encoder.beginComputePass(timed && profiler ? profiler.timestampWrites(`bench${r}`) : {});
        records[r]!(pass, uniforms);
        pass.end();
        uniforms.flush();
        const t0 = performance.now();
        gpu.device.queue.submit([encoder.finish()]);
        const nap = profiler ? 1.25 * expectedMs[r]! : 0;
        if (nap > 1) await sleep(nap);
        const napEnd = performance.now();
        await gpu.sync();
        const end = performance.now();
        if (end - napEnd > 0.3) expectedMs[r] = end - t0;
        if (timed) wall[r]!.push(end - t0);
      }
    }
    if (profiler) {
      const stamps = await profiler.collect();
      const gpuMs = records.map((_, r) => stamps.filter((t) => t.label === `bench${r}`).map((t) => t.ms));
      if (gpuMs.every((ms) => ms.length === samples && ms.every((v) => v > 0))) {
        return gpuMs.map((ms) => ({ ms: median(ms), samples: ms, method: 'gpu-timestamp' }));
      }
    }
    return wall.map((ms) => ({ ms: median(ms), samples: ms, method: 'wall' }));
  } finally {
    uniforms.destroy();
    profiler?.destroy();
  }
}

export async function timePass(gpu: GpuDevice, record: RecordFn, samples = 5, warmup = 1): Promise<Timing> {
  return (await timePasses(gpu, [record], samples, warmup))[0]!;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Host memory bandwidth: bytes copied per second by TypedArray.set over `bytes` (median of runs). */
export function memcpyGBps(bytes = 256 * 1024 * 1024, runs = 5): number {
  const src = new Uint8Array(bytes).fill(1);
  const dst = new Uint8Array(bytes);
  dst.set(src); // fault the pages in
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    dst.set(src);
    times.push(performance.now() - t0);
  }
  return bytes / median(times) / 1e6;
}

/** The bench/shaders/stream_read.wgsl baseline: reads every byte of a buffer once and sums it. */
export class StreamRead {
  static readonly WORDS_PER_GROUP = 4096;
  private readonly out: GPUBuffer;

  private constructor(
    private readonly gpu: GpuDevice,
    private readonly pipeline: GPUComputePipeline,
    private readonly lanes: number,
    readonly maxGroups: number,
  ) {
    this.out = gpu.createBuffer('stream_read.out', maxGroups * lanes * 16, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
  }

  static async create(gpu: GpuDevice, maxBytes: number, lanes = 8): Promise<StreamRead> {
    const pipeline = await gpu.pipelines.get({ kernel: 'stream_read', code: loadShader('stream_read', BENCH_SHADER_DIR), constants: { WG: lanes } });
    return new StreamRead(gpu, pipeline, lanes, Math.ceil(maxBytes / 16 / StreamRead.WORDS_PER_GROUP));
  }

  /** Reads the first `bytes` (a multiple of 16) of `src`. */
  record(pass: GPUComputePassEncoder, uniforms: UniformArena, src: GPUBuffer, bytes: number): void {
    const numWords = Math.floor(bytes / 16);
    const groups = Math.ceil(numWords / StreamRead.WORDS_PER_GROUP);
    if (groups > this.maxGroups) throw new Error(`StreamRead: ${bytes} bytes exceed the size it was created for`);
    const params = uniforms.alloc(new Uint32Array([numWords, StreamRead.WORDS_PER_GROUP, 0, 0]));
    dispatch(this.gpu.device, pass, this.pipeline, [src, this.out, params], grid1d(groups));
  }

  /** Sum of all u32 words read by the last run (wrapping), for checking that it read everything. */
  async sum(groups: number): Promise<number> {
    const words = await this.gpu.readU32(this.out, groups * this.lanes * 4);
    let s = 0;
    for (const v of words) s = (s + v) >>> 0;
    return s;
  }

  destroy(): void {
    this.out.destroy();
  }
}

/** Finite, varied values in [-0.5, 0.5): a cheap LCG, because benches fill hundreds of MiB. */
export function randomHost(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 4294967296 - 0.5;
  }
  return out;
}

export type Row = Record<string, string | number>;

/** Prints rows as an aligned text table with a title. */
export function printTable(title: string, rows: readonly Row[]): void {
  if (rows.length === 0) return;
  const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cell = (v: string | number | undefined) => (v === undefined ? '' : typeof v === 'number' ? formatNumber(v) : v);
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (values: string[]) => values.map((v, i) => (i === 0 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join('  ');
  console.log(`\n${title}`);
  console.log(line(columns));
  console.log(line(widths.map((w) => '-'.repeat(w))));
  for (const r of rows) console.log(line(columns.map((c) => cell(r[c]))));
}

export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Math.abs(v) >= 100) return v.toFixed(0);
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

/** The value after `flag` on the command line (`--samples 9`), if given. */
export function argValue(flag: string, argv: readonly string[] = process.argv): string | undefined {
  const i = argv.indexOf(flag);
  return i >= 0 ? argv[i + 1] : undefined;
}

/** The Node running the bench ("v24.22.3"): in every bench's header and JSON, as results differ between majors. */
export function nodeVersion(): string {
  return process.version;
}

/** True when the bench was started with --json: print one JSON document instead of tables. */
export function wantsJson(argv: readonly string[] = process.argv): boolean {
  return argv.includes('--json');
}
