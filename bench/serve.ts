// bench:serve — a load generator in the manner of LMDeploy's profile_restful_api: N streamed
// completions with random story-word prompts at concurrency C against the real server (in-process,
// bench model), reporting request throughput, output tok/s, TTFT and inter-token latency p50/p99.
// Usage: npm run bench:serve [-- --json] [--requests 32] [--concurrency 8] [--input-words 64] [--output-tokens 64] [--max-prefill-tokens N]
import { Engine, DEFAULT_ENGINE_OPTIONS } from '../src/engine/engine.js';
import { startServer } from '../src/server/listen.js';
import { nodeVersion, printTable, wantsJson } from './common.js';
import { benchModelDir } from './bench-model.js';

const json = wantsJson();
const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
const numRequests = arg('requests', 32);
const concurrency = arg('concurrency', 8);
const inputWords = arg('input-words', 64);
const outputTokens = arg('output-tokens', 64);
const maxPrefillTokens = arg('max-prefill-tokens', DEFAULT_ENGINE_OPTIONS.maxNumBatchedTokens);

const WORDS =
  'once upon a time there was a little girl named lily she loved to play outside in the park one day saw big red ball wanted it but was too high mom said tom and sue went happy sad dog cat bird tree sun friend'.split(
    ' ',
  );

function prompt(seed: number): string {
  let s = seed >>> 0;
  return Array.from({ length: inputWords }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return WORDS[s % WORDS.length];
  }).join(' ');
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const modelDir = await benchModelDir();
if (!json) process.stderr.write(`[bench] Node ${nodeVersion()}, model ${modelDir}\n`);
const engine = await Engine.create({
  ...DEFAULT_ENGINE_OPTIONS,
  modelDir,
  modelName: 'bench',
  devices: [0],
  dtype: 'f16',
  maxBatchSize: 16,
  kvCacheBlocks: 64,
  sessionLen: 1024,
  maxNumBatchedTokens: maxPrefillTokens,
  progress: false,
});
const server = await startServer(engine, { host: '127.0.0.1', port: 0, modelName: 'bench', apiKeys: [], allowOrigins: [], logLevel: 'warn' });

interface Result {
  ttftMs: number;
  itlMs: number[];
  outputTokens: number;
  totalMs: number;
}

async function one(i: number): Promise<Result> {
  const t0 = performance.now();
  const res = await fetch(`${server.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'bench',
      prompt: prompt(i),
      max_tokens: outputTokens,
      ignore_eos: true,
      temperature: 0.8,
      seed: i,
      stream: true,
      stream_options: { include_usage: true },
    }),
  });
  if (!res.ok || !res.body) throw new Error(`request ${i}: ${res.status} ${await res.text()}`);
  const decoder = new TextDecoder();
  let buffered = '';
  let last = 0;
  let ttft = 0;
  const itl: number[] = [];
  let tokens = 0;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffered += decoder.decode(chunk, { stream: true });
    let cut: number;
    while ((cut = buffered.indexOf('\n\n')) >= 0) {
      const line = buffered.slice(0, cut).replace(/^data: /, '');
      buffered = buffered.slice(cut + 2);
      if (line === '[DONE]') continue;
      const event = JSON.parse(line) as { choices: { text: string }[]; usage?: { completion_tokens: number } };
      if (event.usage) tokens = event.usage.completion_tokens;
      if (event.choices.length === 0) continue;
      const now = performance.now();
      if (ttft === 0) ttft = now - t0;
      else itl.push(now - last);
      last = now;
    }
  }
  return { ttftMs: ttft, itlMs: itl, outputTokens: tokens, totalMs: performance.now() - t0 };
}

const results: Result[] = [];
let next = 0;
const t0 = performance.now();
await Promise.all(
  Array.from({ length: concurrency }, async () => {
    while (next < numRequests) results.push(await one(next++));
  }),
);
const wallS = (performance.now() - t0) / 1000;
const totalTokens = results.reduce((n, r) => n + r.outputTokens, 0);
const itl = results.flatMap((r) => r.itlMs);
const summary = {
  node: nodeVersion(),
  requests: numRequests,
  maxPrefillTokens,
  concurrency,
  inputWords,
  outputTokens,
  wallSeconds: wallS,
  requestThroughput: numRequests / wallS,
  outputTokPerS: totalTokens / wallS,
  ttftMs: {
    p50: percentile(
      results.map((r) => r.ttftMs),
      50,
    ),
    p99: percentile(
      results.map((r) => r.ttftMs),
      99,
    ),
  },
  interTokenMs: { p50: percentile(itl, 50), p99: percentile(itl, 99) },
};
if (json) console.log(JSON.stringify(summary, null, 2));
else {
  printTable(
    `Serving the bench model on Node ${nodeVersion()}: ${numRequests} streamed completions, ${inputWords} input words, ${outputTokens} output tokens, concurrency ${concurrency}, max ${maxPrefillTokens} prefill tokens per step`,
    [
      { metric: 'request throughput (req/s)', value: summary.requestThroughput },
      { metric: 'output tok/s', value: summary.outputTokPerS },
      { metric: 'TTFT p50 (ms)', value: summary.ttftMs.p50 },
      { metric: 'TTFT p99 (ms)', value: summary.ttftMs.p99 },
      { metric: 'inter-token p50 (ms)', value: summary.interTokenMs.p50 },
      { metric: 'inter-token p99 (ms)', value: summary.interTokenMs.p99 },
    ],
  );
}
await server.close();
await engine.shutdown();
process.exit(0);
