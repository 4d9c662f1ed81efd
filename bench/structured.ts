// Structured output cost: on the 76.3M bench model (bench-model.ts), decode with a 10-property JSON
// schema vs unconstrained in the same run, single stream and batch 8 (target ratio >= 0.9); plus the
// grammar engine's compile time and mask time per token (p50/p99) on the model's vocabulary.
// Usage: npm run bench:structured [-- --json]
import { DEFAULT_SAMPLING } from '../src/sampling/params.js';
import type { GenerateRequest, GuidedDecoding } from '../src/engine/types.js';
import { GrammarService } from '../src/structured/grammar-service.js';
import { grammarVocab } from '../src/structured/vocab.js';
import { nodeVersion, wantsJson } from './common.js';
import { benchModelDir, BENCH_MODEL, openBenchEngine, randomPrompt, TEN_PROPERTY_SCHEMA } from './bench-model.js';

const json = wantsJson();
const say = (s: string) => {
  if (!json) process.stderr.write(`${s}\n`);
};

const SCHEMA = TEN_PROPERTY_SCHEMA;
const GUIDED: GuidedDecoding = { type: 'json_schema', schema: SCHEMA };
const MAX_TOKENS = 64;

const modelDir = await benchModelDir();
const engine = await openBenchEngine(modelDir);

/** Output tokens per second of `batch` concurrent requests. */
async function decodeRate(batch: number, guided: GuidedDecoding | null): Promise<number> {
  const t0 = performance.now();
  let tokens = 0;
  await Promise.all(
    Array.from({ length: batch }, async (_, i) => {
      const req: GenerateRequest = {
        promptTokenIds: randomPrompt(16, 100 + i),
        sampling: { ...DEFAULT_SAMPLING, temperature: 1, seed: i },
        maxTokens: MAX_TOKENS,
        stop: [],
        stopTokenIds: [],
        ignoreEos: guided === null,
        skipSpecialTokens: true,
        guided,
      };
      for await (const d of engine.generate(req)) tokens += d.tokenIds.length;
    }),
  );
  return tokens / ((performance.now() - t0) / 1000);
}

await engine.warmup();
await decodeRate(1, GUIDED); // compiles the grammar and the masked sampler
const results: Record<string, number> = {};
for (const batch of [1, 8]) {
  const plain = await decodeRate(batch, null);
  const constrained = await decodeRate(batch, GUIDED);
  results[`batch${batch}_plain_tok_s`] = plain;
  results[`batch${batch}_constrained_tok_s`] = constrained;
  results[`batch${batch}_ratio`] = constrained / plain;
  say(`batch ${batch}: unconstrained ${plain.toFixed(1)} tok/s, constrained ${constrained.toFixed(1)} tok/s, ratio ${(constrained / plain).toFixed(3)}`);
}
await engine.shutdown();

// Grammar engine alone: compile (first open of a new schema) and mask time per token.
const service = new GrammarService(grammarVocab(modelDir, BENCH_MODEL.vocabSize, [2]));
await service.open({ type: 'json_object' }); // starts the worker
const t0 = performance.now();
const m = await service.open({ type: 'json_schema', schema: { ...SCHEMA, title: 'fresh' } });
const compileMs = performance.now() - t0;
const times: number[] = [];
let accept: number[] = [];
for (let i = 0; i < 200; i++) {
  const t = performance.now();
  const [r] = await service.step([{ matcher: m, accept }]);
  times.push(performance.now() - t);
  const mask = r!.mask;
  if (!mask) break;
  const allowed: number[] = [];
  for (let id = 0; id < BENCH_MODEL.vocabSize; id++) if ((mask[id >> 5]! >>> (id & 31)) & 1) allowed.push(id);
  const next = allowed.filter((id) => id !== 2);
  if (next.length === 0) break;
  accept = [next[(i * 7919) % next.length]!];
}
service.destroy();
times.sort((a, b) => a - b);
const pct = (p: number) => times[Math.min(times.length - 1, Math.floor(p * times.length))]!;
Object.assign(results, { vocab: BENCH_MODEL.vocabSize, compile_ms: compileMs, mask_ms_p50: pct(0.5), mask_ms_p99: pct(0.99), mask_samples: times.length });
say(
  `grammar compile ${compileMs.toFixed(1)} ms; mask per token (round trip to the worker) p50 ${pct(0.5).toFixed(3)} ms, p99 ${pct(0.99).toFixed(3)} ms over ${times.length} tokens, vocab ${BENCH_MODEL.vocabSize}`,
);
if (json) process.stdout.write(`${JSON.stringify({ bench: 'structured', node: nodeVersion(), ...results })}\n`);
