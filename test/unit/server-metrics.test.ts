// /metrics as a Prometheus client reads it: the exposition parsed with a real text-format parser
// (parse-prometheus-text-format, a port of the Python client's), every family typed as it should be (a
// counter's TYPE line must name its `_total` samples, else the family is "untyped"), and every
// histogram counting the request that ran, the engine's queue/prefill/decode split included.
import { createRequire } from 'node:module';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ServerMetrics } from '../../src/server/metrics.js';
import { startFakeServer } from '../helpers/fake-engine.js';

interface Family {
  name: string;
  help: string;
  type: 'COUNTER' | 'GAUGE' | 'HISTOGRAM' | 'SUMMARY' | 'UNTYPED';
  metrics: Array<{ labels?: Record<string, string>; value?: string; buckets?: Record<string, string>; count?: string; sum?: string }>;
}
const parsePrometheusTextFormat = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => Family[];

const GAUGES = [
  'vllm:num_requests_running',
  'vllm:num_requests_waiting',
  'vllm:gpu_cache_usage_perc',
  'vllm:kv_cache_usage_perc',
  'lmdeploy:num_requests_running',
  'lmdeploy:num_requests_waiting',
  'lmdeploy:gpu_cache_usage_perc',
];
const COUNTERS = [
  'vllm:prefix_cache_queries_total',
  'vllm:prefix_cache_hits_total',
  'vllm:prompt_tokens_total',
  'vllm:generation_tokens_total',
  'vllm:num_preemptions_total',
  'vllm:request_success_total',
];
const HISTOGRAMS = [
  'vllm:time_to_first_token_seconds',
  'vllm:inter_token_latency_seconds',
  'vllm:time_per_output_token_seconds',
  'vllm:request_time_per_output_token_seconds',
  'vllm:e2e_request_latency_seconds',
  'vllm:request_queue_time_seconds',
  'vllm:request_prefill_time_seconds',
  'vllm:request_decode_time_seconds',
  'vllm:request_inference_time_seconds',
  'vllm:request_prompt_tokens',
  'vllm:request_generation_tokens',
];

let server: Awaited<ReturnType<typeof startFakeServer>>;
test.before(async () => {
  server = await startFakeServer({ modelName: 'm"x', tokenDelayMs: 2 });
});
test.after(async () => {
  await server.close();
});

async function scrape(): Promise<{ text: string; families: Map<string, Family>; contentType: string }> {
  const res = await fetch(`${server.url}/metrics`);
  assert.is(res.status, 200);
  const text = await res.text();
  return { text, families: new Map(parsePrometheusTextFormat(text).map((f) => [f.name, f])), contentType: res.headers.get('content-type') ?? '' };
}

/**
 * A histogram's count, sum and +Inf bucket. The parser types histogram families right but its
 * flattening drops the `_sum`/`_count` of labelled series (parse-prometheus-text-format 1.1.1), so those
 * come from the sample lines themselves.
 */
function histogramOf(text: string, name: string): { count: number; sum: number; inf: number } {
  const sample = (suffix: string, extra = '') => {
    const line = text.split('\n').find((l) => l.startsWith(`${name}${suffix}{`) && l.includes(extra));
    assert.ok(line, `${name}${suffix}${extra} present`);
    return Number(line!.split(' ').at(-1));
  };
  return { count: sample('_count'), sum: sample('_sum'), inf: sample('_bucket', 'le="+Inf"') };
}

test('every family has its type; no sample is untyped', async () => {
  const { families, contentType, text } = await scrape();
  assert.match(contentType, /^text\/plain; version=0\.0\.4/);
  for (const name of GAUGES) assert.is(families.get(name)?.type, 'GAUGE', name);
  for (const name of COUNTERS) assert.is(families.get(name)?.type, 'COUNTER', name);
  for (const name of HISTOGRAMS) assert.is(families.get(name)?.type, 'HISTOGRAM', name);
  const expected = new Set([...GAUGES, ...COUNTERS, ...HISTOGRAMS]);
  for (const family of families.values()) {
    assert.ok(expected.has(family.name), `unexpected family ${family.name} (${family.type})`);
    if (family.type !== 'HISTOGRAM') {
      for (const metric of family.metrics) assert.is(metric.labels?.model_name, 'm"x', `${family.name} labelled model_name (escaped)`);
    }
  }
  for (const line of text.split('\n').filter((l) => l && !l.startsWith('#'))) assert.ok(line.includes('model_name="m\\"x"'), line);
  // Dashboards query the sample names, which stay what they were.
  assert.match(text, /^vllm:prompt_tokens_total\{model_name="m\\"x"\} \d+$/m);
  assert.match(text, /^# TYPE vllm:prompt_tokens_total counter$/m);
});

test('the old exposition (TYPE without _total) is what typed counters as unknown', () => {
  const old = '# HELP vllm:prompt_tokens x\n# TYPE vllm:prompt_tokens counter\nvllm:prompt_tokens_total{model_name="m"} 3\n';
  const parsed = parsePrometheusTextFormat(old);
  assert.ok(
    parsed.some((f) => f.name === 'vllm:prompt_tokens_total' && f.type === 'UNTYPED'),
    'the parser sees the sample as an untyped family',
  );
});

test('histograms count a request; queue + prefill + decode come from the engine and fit in e2e', async () => {
  const before = await scrape();
  const res = await fetch(`${server.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'm"x', prompt: 'abc', max_tokens: 5, temperature: 0 }),
  });
  assert.is(res.status, 200);
  await res.json();
  const after = await scrape();
  const delta = (name: string) => histogramOf(after.text, name).count - histogramOf(before.text, name).count;
  for (const name of HISTOGRAMS) {
    if (name === 'vllm:inter_token_latency_seconds') assert.is(delta(name), 4, `${name}: one per token after the first`);
    else assert.is(delta(name), 1, `${name} counted the request`);
    const h = histogramOf(after.text, name);
    assert.is(h.inf, h.count, `${name}: +Inf bucket = count`);
  }
  const sumOf = (name: string) => histogramOf(after.text, name).sum - histogramOf(before.text, name).sum;
  assert.is(sumOf('vllm:request_prompt_tokens'), 4, 'BOS + 3 characters');
  assert.is(sumOf('vllm:request_generation_tokens'), 5);
  const phases = sumOf('vllm:request_queue_time_seconds') + sumOf('vllm:request_prefill_time_seconds') + sumOf('vllm:request_decode_time_seconds');
  assert.ok(sumOf('vllm:request_prefill_time_seconds') > 0, 'prefill took the first token delay');
  assert.ok(sumOf('vllm:request_decode_time_seconds') > 0, 'decode took the other four');
  assert.ok(phases <= sumOf('vllm:e2e_request_latency_seconds') + 1e-3, `phases ${phases} within e2e`);
  const success = after.families.get('vllm:request_success_total')!.metrics.find((m) => m.labels?.finished_reason === 'length');
  assert.ok(success && Number(success.value) >= 1);
});

test('two apps in one process keep their own registries', async () => {
  const a = new ServerMetrics('a');
  const b = new ServerMetrics('b');
  a.observe({ ttftSeconds: 0.1, e2eSeconds: 0.5, numPromptTokens: 3, numOutputTokens: 2, finishReason: 'stop' });
  const stats = server.engine.stats();
  const [textA, textB] = await Promise.all([a.render(stats), b.render(stats)]);
  assert.is(histogramOf(textA, 'vllm:e2e_request_latency_seconds').count, 1);
  assert.is(histogramOf(textB, 'vllm:e2e_request_latency_seconds').count, 0);
  assert.match(textA, /model_name="a"/);
  assert.match(textB, /model_name="b"/);
  // A request the engine never timed (no GenerateDelta.timing) leaves the phase histograms alone.
  assert.is(histogramOf(textA, 'vllm:request_queue_time_seconds').count, 0);
});

test.run();
