// bench:decode — prefill and decode throughput of the reference bench model, next to the roofline
// (weight bytes per step / the same-run WGSL streaming-read bandwidth).
// Usage: npm run bench:decode [-- --json]
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { Engine, DEFAULT_ENGINE_OPTIONS } from '../src/engine/engine.js';
import { DEFAULT_SAMPLING } from '../src/sampling/params.js';
import type { GenerateRequest } from '../src/engine/types.js';
import { median, nodeVersion, printTable, StreamRead, timePass, wantsJson, type Row } from './common.js';
import { benchModelDir, BENCH_MODEL, randomPrompt } from './bench-model.js';

const json = wantsJson();
const say = (s: string) => {
  if (!json) process.stderr.write(`${s}\n`);
};

const modelDir = await benchModelDir();
const fileBytes = statSync(join(modelDir, 'model.safetensors')).size;
say(`[bench] Node ${nodeVersion()}, model ${modelDir} (${(fileBytes / 1e6).toFixed(1)} MB)`);
const engine = await Engine.create({
  ...DEFAULT_ENGINE_OPTIONS,
  modelDir,
  devices: [0],
  dtype: 'f16',
  maxBatchSize: 16,
  kvCacheBlocks: 64,
  blockSize: 64,
  enablePrefixCaching: false,
  sessionLen: 1024,
  progress: false,
});
const gpu = engine.devices[0]!;

// Same-run streaming-read baseline over 128 MiB (one storage binding).
const streamBytes = 128 * 1024 * 1024;
const src = gpu.createBuffer('bench.stream', streamBytes, GPUBufferUsage.STORAGE);
const stream = await StreamRead.create(gpu, streamBytes);
const streamTiming = await timePass(gpu, (pass, u) => stream.record(pass, u, src, streamBytes), 5, 1);
const streamGBps = streamBytes / streamTiming.ms / 1e6;
src.destroy();
stream.destroy();

const weightBytes = engine.runner.plan.weightBytes;
const roofline = (streamGBps * 1e9) / weightBytes;

function req(prompt: number[], maxTokens: number, seed: number): GenerateRequest {
  return {
    promptTokenIds: prompt,
    sampling: { ...DEFAULT_SAMPLING, temperature: 0, seed },
    maxTokens,
    stop: [],
    stopTokenIds: [],
    ignoreEos: true,
    skipSpecialTokens: true,
  };
}

async function timed(prompt: number[], maxTokens: number, seed: number) {
  const t0 = performance.now();
  let first = 0;
  let n = 0;
  for await (const d of engine.generate(req(prompt, maxTokens, seed))) {
    if (n === 0 && d.tokenIds.length) first = performance.now() - t0;
    n += d.tokenIds.length;
  }
  return { firstMs: first, totalMs: performance.now() - t0, n, firstAt: t0 + first, endAt: performance.now() };
}

// Warm up pipelines and buffers.
await timed(randomPrompt(128, 1), 4, 1);

const prefillMs: number[] = [];
for (let i = 0; i < 3; i++) prefillMs.push((await timed(randomPrompt(128, 10 + i), 1, i)).firstMs);
const prefillTps = 128 / (median(prefillMs) / 1000);

const decodeRuns: number[] = [];
for (let i = 0; i < 2; i++) {
  const r = await timed(randomPrompt(16, 20 + i), 65, i);
  decodeRuns.push(((r.n - 1) * 1000) / (r.totalMs - r.firstMs));
}
const decodeTps = median(decodeRuns);

const batchRows: Row[] = [];
const batchTps: Record<number, number> = {};
const decodePhaseTps: Record<number, number> = {};
for (const batch of [1, 4, 16]) {
  const outputLen = 32;
  const t0 = performance.now();
  const results = await Promise.all(Array.from({ length: batch }, (_, i) => timed(randomPrompt(16, 100 + i), outputLen, i)));
  const wall = performance.now() - t0;
  const tokens = results.reduce((n, r) => n + r.n, 0);
  batchTps[batch] = tokens / (wall / 1000);
  // Decode phase alone: from the last request's first token (every prompt prefilled) to the last finish.
  const phaseMs = Math.max(...results.map((r) => r.endAt)) - Math.max(...results.map((r) => r.firstAt));
  decodePhaseTps[batch] = results.reduce((n, r) => n + r.n - 1, 0) / (phaseMs / 1000);
  batchRows.push({
    batch,
    'output tok/s': batchTps[batch]!,
    'x batch 1': batchTps[batch]! / batchTps[1]!,
    'decode-phase tok/s': decodePhaseTps[batch]!,
    'decode x batch 1': decodePhaseTps[batch]! / decodePhaseTps[1]!,
  });
}

const summary = {
  node: nodeVersion(),
  model: { ...BENCH_MODEL, params: 76_303_104, fileBytes, gpuWeightBytes: weightBytes },
  adapter: gpu.adapter.info.description,
  streamReadGBps: streamGBps,
  rooflineTokPerS: roofline,
  prefillTokPerS: prefillTps,
  decodeTokPerS: decodeTps,
  decodeFractionOfRoofline: decodeTps / roofline,
  batched: batchTps,
  batch16OverBatch1: batchTps[16]! / batchTps[1]!,
  batchedDecodePhase: decodePhaseTps,
  batch16OverBatch1DecodePhase: decodePhaseTps[16]! / decodePhaseTps[1]!,
};
if (json) {
  console.log(JSON.stringify(summary, null, 2));
} else {
  printTable(`Decode bench model (76.3M params, f16) on ${gpu.adapter.info.description}, Node ${nodeVersion()}`, [
    { metric: 'streaming-read baseline GB/s', value: streamGBps },
    { metric: 'roofline tok/s (weights / stream bw)', value: roofline },
    { metric: 'prefill tok/s (128-token prompt)', value: prefillTps },
    { metric: 'decode tok/s (single stream)', value: decodeTps },
    { metric: 'decode / roofline', value: decodeTps / roofline },
  ]);
  printTable('Batched decode (16-token prompts, 32 output tokens each; end to end, and the decode phase after every prompt is prefilled)', batchRows);
}
await engine.shutdown();
process.exit(0);
