// bench:kvquant — decode throughput with a quantized KV cache (LMDeploy's --quant-policy 8 / 4) against
// the f16 cache in the same run, on the 76.3M bench model at 1k and 4k tokens of context, and the KV
// blocks each cache dtype gets from the same memory budget.
// Each dtype gets its own ModelRunner (own device, so its own wait pacer) and decode steps are timed
// through runner.execute (the whole forward pass and GPU sampling, as the engine runs it, minus the
// scheduler and detokenizer, which do not depend on the cache dtype). The context is not prefilled: the
// steps attend over ctx positions of blocks nobody wrote (zeros; an int8/int4 row then reads back as
// 0), which costs attention exactly the loads and dequantization of a real context of that length,
// without three 4k-token prefills (237-380 s each on the 2-core lavapipe VM: prefill attention is
// quadratic there). Rounds interleave the dtypes (f16, int8, int4, f16, ...), so load from other
// processes hits them alike.
// Usage: npm run bench:kvquant [-- --json] [--contexts 1024,4096] [--tokens 32] [--rounds 3]
import { openDevices, type GpuDevice } from '../src/gpu/index.js';
import { loadModelConfig } from '../src/checkpoint/config.js';
import { ModelRunner } from '../src/runner/runner.js';
import { DEFAULT_SAMPLING, type SamplingRow } from '../src/sampling/params.js';
import type { SchedulerOutput } from '../src/scheduler/types.js';
import type { KvCacheDtype } from '../src/common/types.js';
import { argValue, median, nodeVersion, printTable, wantsJson, type Row } from './common.js';
import { benchModelDir, BENCH_MODEL } from './bench-model.js';

const json = wantsJson();
const say = (s: string) => {
  if (!json) process.stderr.write(`${s}\n`);
};

const contexts = (argValue('--contexts') ?? '1024,4096').split(',').map(Number);
const decodeTokens = Number(argValue('--tokens') ?? 32);
const rounds = Number(argValue('--rounds') ?? 3);
if (contexts.some((n) => !Number.isInteger(n) || n < 1) || !(decodeTokens >= 1) || !(rounds >= 1)) {
  throw new Error('bench:kvquant: --contexts takes positive integers, --tokens >= 1, --rounds >= 1');
}
const DTYPES: readonly KvCacheDtype[] = ['f16', 'int8', 'int4'];
const BLOCK_SIZE = 64;
// Weights (153 MB f16) + activations leave ~110 MiB of this for the KV pool: enough f16 blocks for the
// longest context, so every dtype runs the same steps and only the block count differs.
const GPU_MEMORY_BYTES = 320 * 1024 ** 2;
const CACHE_MAX_ENTRY_COUNT = 0.8;
const WARMUP_STEPS = 6;
/** Untimed steps before each timed run: the wait pacer's estimate comes from the last steps, which may have run at another context. */
const SETTLE_STEPS = 2;

const modelDir = await benchModelDir();
const config = await loadModelConfig(modelDir);
const maxModelLen = Math.max(...contexts) + SETTLE_STEPS + Math.max(decodeTokens, WARMUP_STEPS);
say(`[bench] Node ${nodeVersion()}, bench model ${modelDir}, contexts ${contexts.join(', ')}, ${decodeTokens} decode steps x ${rounds} rounds`);

interface Subject {
  runner: ModelRunner;
  devices: GpuDevice[];
}
const subjects = new Map<KvCacheDtype, Subject>();
for (const kvCacheDtype of DTYPES) {
  const devices = await openDevices([0]);
  const runner = await ModelRunner.load(modelDir, config, devices, {
    dtype: 'f16',
    blockSize: BLOCK_SIZE,
    maxNumSeqs: 1,
    maxModelLen,
    maxNumBatchedTokens: 512,
    cacheMaxEntryCount: CACHE_MAX_ENTRY_COUNT,
    gpuMemoryBytes: GPU_MEMORY_BYTES,
    kvCacheDtype,
  });
  const needed = Math.ceil(maxModelLen / BLOCK_SIZE);
  if (runner.numBlocks < needed) throw new Error(`bench:kvquant: the ${kvCacheDtype} cache got ${runner.numBlocks} blocks, ${needed} needed`);
  subjects.set(kvCacheDtype, { runner, devices });
}

let stepId = 0;
/** Greedy decode steps of one sequence at positions ctx, ctx + 1, ...; returns tokens per second over the last `steps`. */
async function decode(runner: ModelRunner, ctx: number, steps: number): Promise<number> {
  const outputs: number[] = [];
  let token = 3;
  let t0 = performance.now();
  for (let i = 0; i < SETTLE_STEPS + steps; i++) {
    if (i === SETTLE_STEPS) t0 = performance.now();
    const position = ctx + i;
    const output: SchedulerOutput = {
      step: stepId++,
      sequences: [
        {
          requestId: 'r',
          tokenIds: [token],
          startPosition: position,
          blockIds: Array.from({ length: Math.floor(position / BLOCK_SIZE) + 1 }, (_, b) => b),
          sample: true,
        },
      ],
      numScheduledTokens: 1,
      preemptedRequestIds: [],
      finishedRequestIds: [],
    };
    const row: SamplingRow = { params: { ...DEFAULT_SAMPLING, temperature: 0 }, promptTokenIds: [3], outputTokenIds: outputs, step: i };
    const result = await runner.execute(output, new Map([['r', row]]));
    token = result.samples.get('r')!.tokenId;
    outputs.push(token);
  }
  return (steps * 1000) / (performance.now() - t0);
}

// Compile the pipelines and let each device's wait pacer learn the step time, at every context.
for (const { runner } of subjects.values()) for (const ctx of contexts) await decode(runner, ctx, WARMUP_STEPS);

const tps = new Map<string, number[]>();
for (const ctx of contexts) {
  for (let r = 0; r < rounds; r++) {
    for (const [d, { runner }] of subjects) {
      const key = `${d}:${ctx}`;
      tps.set(key, [...(tps.get(key) ?? []), await decode(runner, ctx, decodeTokens)]);
    }
  }
  say(`[bench] context ${ctx} done`);
}
const blocks = new Map(DTYPES.map((d) => [d, subjects.get(d)!.runner.numBlocks]));
for (const { runner, devices } of subjects.values()) {
  runner.destroy();
  for (const d of devices) d.destroy();
}

const med = (d: KvCacheDtype, ctx: number) => median(tps.get(`${d}:${ctx}`)!);
const label = (d: KvCacheDtype) => (d === 'f16' ? 'f16' : `${d} (--quant-policy ${d === 'int8' ? 8 : 4})`);
const rows: Row[] = contexts.flatMap((ctx) =>
  DTYPES.map((d) => ({
    context: ctx,
    'kv cache': label(d),
    'decode tok/s (median)': med(d, ctx),
    'x f16': med(d, ctx) / med('f16', ctx),
    'rounds tok/s': tps
      .get(`${d}:${ctx}`)!
      .map((x) => x.toFixed(1))
      .join(' / '),
  })),
);
const blockRows: Row[] = DTYPES.map((d) => ({ 'kv cache': label(d), 'blocks of 64 tokens': blocks.get(d)!, 'x f16': blocks.get(d)! / blocks.get('f16')! }));
if (json) {
  const summary = {
    node: nodeVersion(),
    model: BENCH_MODEL,
    gpuMemoryBytes: GPU_MEMORY_BYTES,
    cacheMaxEntryCount: CACHE_MAX_ENTRY_COUNT,
    blocks: Object.fromEntries(blocks),
    decodeTokPerS: Object.fromEntries(DTYPES.map((d) => [d, Object.fromEntries(contexts.map((c) => [c, tps.get(`${d}:${c}`)]))])),
  };
  console.log(JSON.stringify(summary, null, 2));
} else {
  printTable(
    `Decode steps with a quantized KV cache, bench model (76.3M, f16 weights, 12q/4kv x 64), ${decodeTokens} steps x ${rounds} interleaved rounds`,
    rows,
  );
  printTable(`KV blocks from the same budget (--gpu-memory ${GPU_MEMORY_BYTES / 1024 ** 2}MiB, --cache-max-entry-count ${CACHE_MAX_ENTRY_COUNT})`, blockRows);
}
process.exit(0);
