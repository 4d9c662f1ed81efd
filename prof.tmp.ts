import { Engine, DEFAULT_ENGINE_OPTIONS } from './src/engine/engine.js';
import { DEFAULT_SAMPLING } from './src/sampling/params.js';
import { benchModelDir } from './bench/bench-model.js';
const modelDir = await benchModelDir();
const engine = await Engine.create({ ...DEFAULT_ENGINE_OPTIONS, modelDir, devices: [0], dtype: 'f16', maxBatchSize: 16, kvCacheBlocks: 64, blockSize: 64, enablePrefixCaching: false, sessionLen: 1024, progress: false });
const B = Number(process.argv[2] ?? 1);
const runner: any = (engine as any).runner;
let rec = 0, steps = 0;
const shard = runner.shards[0];
const origBegin = shard.begin.bind(shard), origSubmit = shard.submit.bind(shard);
let tb = 0;
shard.begin = () => { tb = performance.now(); return origBegin(); };
shard.submit = () => { rec += performance.now() - tb; steps++; return origSubmit(); };
async function run(n: number) {
  rec = 0; steps = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: B }, async (_, i) => {
    for await (const _d of engine.generate({ requestId: `r${i}-${n}`, promptTokenIds: [1, 2 + i, 3, 4], sampling: { ...DEFAULT_SAMPLING, temperature: 0 }, maxTokens: n, stop: [], stopTokenIds: [], ignoreEos: true, skipSpecialTokens: true })) { /* drain */ }
  }));
  const ms = performance.now() - t0;
  return `${(B * n / ms * 1000).toFixed(1)} tok/s (recording ${(rec / steps).toFixed(2)} ms/step, wall ${(ms / steps).toFixed(2)} ms/step)`;
}
await run(8);
const r = [await run(64), await run(64)];
console.log(`B=${B}: ${r.join('; ')}; learned GPU wait ${shard.gpu.pacer.expectedMs(`step:${B}`)?.toFixed(2)} ms`);
process.exit(0);
