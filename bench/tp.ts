// bench:tp — what tensor parallelism costs on this machine: the Dawn round-trip latencies that bound a
// host all-reduce, and decode tok/s at tp = 1 and 2 on the bench model with the all-reduce share.
// Usage: npm run bench:tp [-- --json]
import { Engine, DEFAULT_ENGINE_OPTIONS } from '../src/engine/engine.js';
import { openDefaultDevice } from '../src/gpu/index.js';
import { DEFAULT_SAMPLING } from '../src/sampling/params.js';
import { median, printTable, wantsJson } from './common.js';
import { benchModelDir, BENCH_MODEL, randomPrompt } from './bench-model.js';

const json = wantsJson();

/** copy -> submit -> mapAsync -> getMappedRange of a small buffer, and writeBuffer -> onSubmittedWorkDone. */
async function roundTrips(bytes: number, iterations: number) {
  const gpu = await openDefaultDevice();
  const src = gpu.createBuffer('rt.src', bytes, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST);
  const data = new Float32Array(bytes / 4).fill(1);
  const readMs: number[] = [];
  const writeMs: number[] = [];
  for (let i = 0; i < iterations; i++) {
    let t0 = performance.now();
    await gpu.read(src, bytes);
    readMs.push(performance.now() - t0);
    t0 = performance.now();
    gpu.write(src, data);
    await gpu.device.queue.onSubmittedWorkDone();
    writeMs.push(performance.now() - t0);
  }
  gpu.destroy();
  return { bytes, readbackMs: median(readMs), writeMs: median(writeMs) };
}

const latencies = [await roundTrips(4096, 200), await roundTrips(3072 * 16, 100), await roundTrips(1 << 20, 50)];

const modelDir = await benchModelDir();
const decode: {
  tp: number;
  tokPerS: number;
  allReduceMs: number;
  hostSumMs: number;
  allReduceShare: number;
  allReducesPerStep: number;
  bytesPerAllReduce: number;
}[] = [];
for (const tp of [1, 2]) {
  const engine = await Engine.create({
    ...DEFAULT_ENGINE_OPTIONS,
    modelDir,
    devices: Array.from({ length: tp }, () => 0),
    allowRepeatedDevices: true,
    dtype: 'f16',
    kvCacheBlocks: 32,
    enablePrefixCaching: false,
    sessionLen: 512,
    progress: false,
  });
  const run = async (n: number) => {
    const t0 = performance.now();
    let first = 0;
    let count = 0;
    for await (const d of engine.generate({
      promptTokenIds: randomPrompt(16, 5),
      sampling: { ...DEFAULT_SAMPLING, temperature: 0 },
      maxTokens: n,
      stop: [],
      stopTokenIds: [],
      ignoreEos: true,
      skipSpecialTokens: true,
    })) {
      if (count === 0 && d.tokenIds.length) first = performance.now();
      count += d.tokenIds.length;
    }
    return { decodeMs: performance.now() - first, count, totalMs: performance.now() - t0 };
  };
  await run(4);
  const before = engine.runner.allReduceMs;
  const beforeHost = engine.runner.allReduceHostMs;
  const r = await run(49);
  const reduceMs = engine.runner.allReduceMs - before;
  const hostMs = engine.runner.allReduceHostMs - beforeHost;
  decode.push({
    tp,
    tokPerS: ((r.count - 1) * 1000) / r.decodeMs,
    allReduceMs: reduceMs / r.count,
    hostSumMs: hostMs / r.count,
    allReduceShare: reduceMs / r.totalMs,
    allReducesPerStep: tp > 1 ? 2 * BENCH_MODEL.numLayers + 1 : 0,
    bytesPerAllReduce: BENCH_MODEL.hiddenSize * 4,
  });
  await engine.shutdown();
}

if (json) {
  console.log(JSON.stringify({ latencies, decode }, null, 2));
} else {
  printTable(
    'Dawn round trips (median)',
    latencies.map((l) => ({ bytes: l.bytes, 'readback ms': l.readbackMs, 'writeBuffer+done ms': l.writeMs })),
  );
  printTable(
    'Decode on the bench model (16-token prompt, 48 decode steps)',
    decode.map((d) => ({
      tp: d.tp,
      'decode tok/s': d.tokPerS,
      'all-reduce wall ms/token (incl. waiting for shard work)': d.allReduceMs,
      'host sum+write ms/token': d.hostSumMs,
      'all-reduce share': d.allReduceShare,
      'all-reduces/step': d.allReducesPerStep,
      'bytes/all-reduce/shard': d.bytesPerAllReduce,
    })),
  );
}
process.exit(0);
