// bench:decode — prefill and decode throughput of the reference bench model, next to the roofline
// (weight bytes per step / the same-run WGSL streaming-read bandwidth).
// With --quant awq|rtn: the bench model is first quantized to 4 bits (group 128) into a temp folder, and
// the f16 and 4-bit engines are measured in the same run, in alternating rounds (best of 2 each), with
// the 4-bit / f16 ratios of prefill, single-stream decode and batch-16 decode.
// Usage: npm run bench:decode [-- --json] [-- --quant awq|rtn]
import { statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Engine } from '../src/engine/engine.js';
import { QUANTIZE_DEFAULTS, quantizeModel, type QuantizeMethod } from '../src/quantize/quantize.js';
import { DEFAULT_SAMPLING } from '../src/sampling/params.js';
import type { GenerateRequest } from '../src/engine/types.js';
import { argValue, median, nodeVersion, printTable, StreamRead, timePass, wantsJson, type Row } from './common.js';
import { benchModelDir, BENCH_MODEL, openBenchEngine, randomPrompt } from './bench-model.js';

const json = wantsJson();
const say = (s: string) => {
  if (!json) process.stderr.write(`${s}\n`);
};

const quant = argValue('--quant') as QuantizeMethod | undefined;
if (quant !== undefined && quant !== 'awq' && quant !== 'rtn') throw new Error(`--quant must be awq or rtn, got ${quant}`);
const modelDir = await benchModelDir();
const fileBytes = statSync(join(modelDir, 'model.safetensors')).size;
say(`[bench] Node ${nodeVersion()}, model ${modelDir} (${(fileBytes / 1e6).toFixed(1)} MB)`);

if (quant) {
  await runQuantComparison(quant);
  process.exit(0);
}
const engine = await openBenchEngine(modelDir);
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

async function timed(prompt: number[], maxTokens: number, seed: number, on: Engine = engine) {
  const t0 = performance.now();
  let first = 0;
  let n = 0;
  for await (const d of on.generate(req(prompt, maxTokens, seed))) {
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

type Measured = Awaited<ReturnType<typeof measure>>;

/** Prefill (128 tokens), single-stream decode and batch-16 output tok/s of one engine. */
async function measure(on: Engine) {
  const prefill: number[] = [];
  for (let i = 0; i < 3; i++) prefill.push((await timed(randomPrompt(128, 10 + i), 1, i, on)).firstMs);
  const r = await timed(randomPrompt(16, 20), 65, 0, on);
  const t0 = performance.now();
  const results = await Promise.all(Array.from({ length: 16 }, (_, i) => timed(randomPrompt(16, 100 + i), 32, i, on)));
  const wall = performance.now() - t0;
  const phaseMs = Math.max(...results.map((x) => x.endAt)) - Math.max(...results.map((x) => x.firstAt));
  return {
    prefillTps: 128 / (median(prefill) / 1000),
    decodeTps: ((r.n - 1) * 1000) / (r.totalMs - r.firstMs),
    batch16Tps: results.reduce((n, x) => n + x.n, 0) / (wall / 1000),
    batch16DecodePhaseTps: results.reduce((n, x) => n + x.n - 1, 0) / (phaseMs / 1000),
  };
}

/** --quant: quantize the bench model (group 128), then f16 and 4-bit engines in alternating rounds. */
async function runQuantComparison(method: QuantizeMethod): Promise<void> {
  const outDir = await mkdtemp(join(tmpdir(), `bench-decode-${method}-`));
  try {
    say(`[bench] quantizing the bench model (${method}, group 128) into ${outDir}`);
    const q = await quantizeModel({ ...QUANTIZE_DEFAULTS, modelDir, outDir, method, groupSize: 128 });
    const q4Bytes = statSync(join(outDir, 'model.safetensors')).size;
    const engines = { f16: await openBenchEngine(modelDir), q4: await openBenchEngine(outDir) };
    const adapter = engines.f16.devices[0]!.adapter.info.description;
    const rounds: Record<'f16' | 'q4', Measured[]> = { f16: [], q4: [] };
    for (const e of Object.values(engines)) await timed(randomPrompt(128, 1), 4, 1, e); // compile pipelines
    for (let round = 0; round < 2; round++) {
      for (const key of ['f16', 'q4'] as const) {
        rounds[key].push(await measure(engines[key]));
      }
    }
    const bestOf = (runs: Measured[]): Measured => {
      const [a, b] = runs as [Measured, Measured];
      return {
        prefillTps: Math.max(a.prefillTps, b.prefillTps),
        decodeTps: Math.max(a.decodeTps, b.decodeTps),
        batch16Tps: Math.max(a.batch16Tps, b.batch16Tps),
        batch16DecodePhaseTps: Math.max(a.batch16DecodePhaseTps, b.batch16DecodePhaseTps),
      };
    };
    const best = { f16: bestOf(rounds.f16), q4: bestOf(rounds.q4) };
    const ratio = (k: keyof Measured) => best.q4[k] / best.f16[k];
    const summary = {
      node: nodeVersion(),
      adapter,
      method,
      groupSize: 128,
      quantizeSeconds: q.seconds,
      fileBytes: { f16: fileBytes, q4: q4Bytes },
      f16: best.f16,
      q4: best.q4,
      ratios: { prefill: ratio('prefillTps'), decode: ratio('decodeTps'), batch16: ratio('batch16Tps'), batch16DecodePhase: ratio('batch16DecodePhaseTps') },
    };
    if (json) {
      console.log(JSON.stringify(summary, null, 2));
    } else {
      printTable(
        `Bench model f16 vs 4-bit (${method}, group 128, quantized in ${q.seconds.toFixed(0)} s; ${(q4Bytes / 1e6).toFixed(1)} MB vs ${(fileBytes / 1e6).toFixed(1)} MB) on ${adapter}, Node ${nodeVersion()}; best of 2 alternating rounds`,
        [
          {
            metric: 'prefill tok/s (128-token prompt)',
            f16: best.f16.prefillTps,
            '4-bit': best.q4.prefillTps,
            '4-bit / f16': ratio('prefillTps'),
            target: '>= 0.8',
          },
          { metric: 'decode tok/s (single stream)', f16: best.f16.decodeTps, '4-bit': best.q4.decodeTps, '4-bit / f16': ratio('decodeTps'), target: '>= 2.5' },
          {
            metric: 'batch 16 output tok/s (end to end)',
            f16: best.f16.batch16Tps,
            '4-bit': best.q4.batch16Tps,
            '4-bit / f16': ratio('batch16Tps'),
            target: '',
          },
          {
            metric: 'batch 16 decode-phase tok/s',
            f16: best.f16.batch16DecodePhaseTps,
            '4-bit': best.q4.batch16DecodePhaseTps,
            '4-bit / f16': ratio('batch16DecodePhaseTps'),
            target: '',
          },
        ],
      );
    }
    await engines.f16.shutdown();
    await engines.q4.shutdown();
  } finally {
    await rm(outDir, { recursive: true, force: true });
  }
}
