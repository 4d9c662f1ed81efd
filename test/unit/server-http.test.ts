// The server over raw HTTP (fetch) with the fake engine: SSE framing, every error status, the
// session-length rules, /v1/encode, /health, /metrics, /openapi.json, CORS, auth and logging.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { EngineOverloadedError, EngineUnavailableError, InvalidRequestError } from '../../src/common/errors.js';
import { completionRequestSchema } from '../../src/protocol/requests.js';
import { BOS_ID, STORY, startFakeServer, VOCAB_SIZE } from '../helpers/fake-engine.js';

let server: Awaited<ReturnType<typeof startFakeServer>>;

test.before(async () => {
  server = await startFakeServer({ sessionLen: 64 }, { apiKeys: ['k1', 'k2'], allowOrigins: ['http://ui.example'], maxBodyBytes: 4096 });
});
test.after(async () => {
  await server.close();
});
test.after.each(() => {
  server.engine.failWith = null;
  server.engine.healthState = { ready: true };
  assert.is(server.engine.numLive, 0, 'no engine request left running');
});

const AUTH = { authorization: 'Bearer k2', 'content-type': 'application/json' };
const post = (path: string, body: unknown, headers: Record<string, string> = AUTH) =>
  fetch(`${server.url}${path}`, { method: 'POST', headers, body: typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body) });
async function errorOf(res: Response): Promise<{ message: string; type: string; param: string | null; code: string | null }> {
  const body = (await res.json()) as { error: { message: string; type: string; param: string | null; code: string | null } };
  assert.type(body.error.message, 'string');
  assert.ok('param' in body.error && 'code' in body.error && 'type' in body.error, 'OpenAI error shape');
  return body.error;
}
function events(text: string): unknown[] {
  assert.ok(text.endsWith('data: [DONE]\n\n'), 'ends with [DONE]');
  const frames = text.split('\n\n').slice(0, -1);
  for (const f of frames) assert.ok(f.startsWith('data: '), `SSE frame: ${f.slice(0, 40)}`);
  return frames.slice(0, -1).map((f) => JSON.parse(f.slice(6)));
}

test('SSE: headers, one data frame per delta, usage chunk, [DONE]', async () => {
  const res = await post('/v1/completions', { prompt: 'x', max_tokens: 5, temperature: 0, stream: true, stream_options: { include_usage: true } });
  assert.is(res.status, 200);
  assert.match(res.headers.get('content-type')!, /^text\/event-stream/);
  assert.is(res.headers.get('cache-control'), 'no-cache');
  assert.is(res.headers.get('x-accel-buffering'), 'no');
  const chunks = events(await res.text()) as Array<{ object: string; choices: Array<{ text: string; finish_reason: string | null }>; usage: unknown }>;
  const usageChunk = chunks.at(-1)!;
  assert.equal(usageChunk.choices, []);
  assert.equal(usageChunk.usage, { prompt_tokens: 2, completion_tokens: 5, total_tokens: 7, prompt_tokens_details: { cached_tokens: 0 } });
  const deltas = chunks.slice(0, -1);
  assert.is(deltas.length, 5, 'one event per token');
  for (const c of deltas) {
    assert.is(c.object, 'text_completion');
    assert.is(c.usage, null);
  }
  assert.is(deltas.map((c) => c.choices[0]!.text).join(''), STORY.slice(0, 5));
  assert.is(deltas.at(-1)!.choices[0]!.finish_reason, 'length');
});

test('SSE: events are flushed as they are produced, not at the end', async () => {
  server.engine.tokenDelayMs = 25;
  try {
    const started = Date.now();
    const res = await post('/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], max_tokens: 12, temperature: 0, stream: true });
    const reader = res.body!.getReader();
    const arrivals: number[] = [];
    for (;;) {
      const { done } = await reader.read();
      if (done) break;
      arrivals.push(Date.now() - started);
    }
    assert.ok(arrivals.length >= 6, `many separate reads (got ${arrivals.length})`);
    assert.ok(arrivals[1]! < arrivals.at(-1)! - 150, `first tokens arrived at ${arrivals[1]} ms, the end at ${arrivals.at(-1)} ms`);
  } finally {
    server.engine.tokenDelayMs = 1;
  }
});

test('400: invalid JSON, invalid UTF-8, wrong types, out of range, empty body, bad combinations', async () => {
  const cases: Array<[unknown, RegExp, string | null]> = [
    ['{"prompt": "x",', /not valid JSON/, null],
    [new Uint8Array([0x7b, 0x22, 0x70, 0x72, 0x6f, 0x6d, 0x70, 0x74, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]), /not valid UTF-8/, null],
    ['', /empty/, null],
    ['[1,2]', /must be a JSON object/, null],
    [{ prompt: 5 }, /prompt must be a string.*(got 5)/, 'prompt'],
    [{ prompt: 'x', max_tokens: 'ten' }, /max_tokens must be an integer or null \(got "ten"\)/, 'max_tokens'],
    [{ prompt: 'x', max_tokens: 0 }, /max_tokens must be at least 1, got 0 \(0 only scores the prompt/, 'max_tokens'],
    [{ prompt: 'x', temperature: 2.5 }, /temperature must be <= 2 \(got 2.5\)/, 'temperature'],
    [{ prompt: 'x', top_p: 0 }, /top_p must be > 0/, 'top_p'],
    [{ prompt: 'x', logprobs: 21 }, /logprobs must be <= 20/, 'logprobs'],
    [{ prompt: 'x', n: 1.5 }, /n must be an integer/, 'n'],
    [{ prompt: 'x', seed: 1e300 }, /seed must be <=/, 'seed'],
    [{ prompt: 'x', stop: ['a', 3] }, /stop/, 'stop[1]'],
    [{ prompt: [] }, /prompt/, 'prompt'],
    [{ prompt: 'x', prompt_logprobs: 1, stream: true }, /prompt_logprobs is not available with stream/, 'prompt_logprobs'],
    [{ prompt: 'x', prompt_logprobs: 21 }, /prompt_logprobs must be <= 20/, 'prompt_logprobs'],
    [{ prompt: ['a', 'b', 'c', 'd', 'e'], n: 16, max_tokens: 1 }, /5 prompts x n=16 is more than 64 choices/, 'n'],
  ];
  for (const [body, message, param] of cases) {
    const res = await post('/v1/completions', body);
    assert.is(res.status, 400, `${JSON.stringify(body)} -> 400`);
    const error = await errorOf(res);
    assert.match(error.message, message);
    assert.is(error.type, 'invalid_request_error');
    assert.is(error.param, param, `param of ${error.message}`);
  }
  const chat = await post('/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], top_logprobs: 2 });
  assert.match((await errorOf(chat)).message, /top_logprobs needs logprobs/);
  const role = await post('/v1/chat/completions', { messages: [{ role: 'robot', content: 'x' }] });
  assert.match((await errorOf(role)).message, /messages\[0\]\.role must be one of "system"/);
});

test('401 without or with a wrong key; the open routes stay open', async () => {
  const none = await post('/v1/completions', { prompt: 'x' }, { 'content-type': 'application/json' });
  assert.is(none.status, 401);
  const e1 = await errorOf(none);
  assert.is(e1.code, 'invalid_api_key');
  assert.is(e1.type, 'invalid_request_error');
  assert.match(e1.message, /Authorization: Bearer/);
  const wrong = await fetch(`${server.url}/v1/models`, { headers: { authorization: 'Bearer k3' } });
  assert.is(wrong.status, 401);
  assert.is((await fetch(`${server.url}/v1/models`, { headers: { authorization: 'Bearer k1' } })).status, 200);
  for (const path of ['/health', '/metrics', '/openapi.json', '/docs']) {
    assert.is((await fetch(`${server.url}${path}`)).status, 200, `${path} needs no key`);
  }
});

test('404 unknown model and unknown route; 405 wrong method', async () => {
  const model = await post('/v1/chat/completions', { model: 'llama-70b', messages: [{ role: 'user', content: 'x' }] });
  assert.is(model.status, 404);
  const e = await errorOf(model);
  assert.is(e.param, 'model');
  assert.is(e.code, 'model_not_found');
  const route = await fetch(`${server.url}/v2/nothing`);
  assert.is(route.status, 404);
  assert.match((await errorOf(route)).message, /no route for GET \/v2\/nothing/);
  const method = await fetch(`${server.url}/v1/completions`, { headers: AUTH });
  assert.is(method.status, 405);
  await errorOf(method);
  // Names inherited from Object.prototype are not docs assets either.
  for (const name of ['constructor', 'toString', '__proto__', 'nope.js']) {
    const asset = await fetch(`${server.url}/docs/${name}`);
    assert.is(asset.status, 404, `/docs/${name}`);
    await errorOf(asset);
  }
});

test('413 when the body is larger than maxBodyBytes', async () => {
  const res = await post('/v1/completions', { prompt: 'x'.repeat(5000) });
  assert.is(res.status, 413);
  assert.match((await errorOf(res)).message, /larger than 4096 bytes/);
  // Chunked upload without Content-Length is cut off at the limit too.
  const stream = new ReadableStream({
    start(c) {
      c.enqueue(new TextEncoder().encode(`{"prompt":"${'y'.repeat(6000)}"}`));
      c.close();
    },
  });
  const chunked = await fetch(`${server.url}/v1/completions`, { method: 'POST', headers: AUTH, body: stream, duplex: 'half' } as RequestInit);
  assert.is(chunked.status, 413);
});

test('429, 503 and engine 400s map from the engine errors', async () => {
  server.engine.failWith = new EngineOverloadedError(8, 8);
  const busy = await post('/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], stream: true });
  assert.is(busy.status, 429);
  assert.is(busy.headers.get('retry-after'), '1');
  assert.is((await errorOf(busy)).type, 'rate_limit_error');
  server.engine.failWith = new EngineUnavailableError('the GPU was lost');
  const down = await post('/v1/completions', { prompt: 'x', n: 3 });
  assert.is(down.status, 503);
  assert.match((await errorOf(down)).message, /GPU was lost/);
  server.engine.failWith = new InvalidRequestError('token id 99999 is outside the vocabulary', 'prompt');
  const invalid = await post('/v1/completions', { prompt: [99999] });
  assert.is(invalid.status, 400);
  assert.is((await errorOf(invalid)).param, 'prompt');
});

test('session length: a full prompt is a 400 naming both numbers; otherwise max_tokens is capped', async () => {
  const full = await post('/v1/completions', { prompt: 'z'.repeat(63) });
  assert.is(full.status, 400);
  const e = await errorOf(full);
  assert.is(e.message, "the prompt has 64 tokens; this model's session length is 64 tokens, leaving no room to generate; shorten the prompt");
  assert.is(e.param, 'prompt');
  const chatFull = await post('/v1/chat/completions', { messages: [{ role: 'user', content: 'z'.repeat(80) }] });
  const chatError = await errorOf(chatFull);
  assert.is(chatError.param, 'messages');
  assert.match(chatError.message, /shorten the messages$/);
  const outside = await post('/v1/completions', { prompt: [BOS_ID, VOCAB_SIZE] });
  assert.is(outside.status, 400);
  assert.equal(await errorOf(outside), {
    message: `prompt token id ${VOCAB_SIZE} is outside the vocabulary [0, ${VOCAB_SIZE})`,
    type: 'invalid_request_error',
    param: 'prompt',
    code: null,
  });

  const capped = await post('/v1/completions', { prompt: 'z'.repeat(59), max_tokens: 1000, temperature: 0 });
  const body = (await capped.json()) as { choices: Array<{ text: string; finish_reason: string }>; usage: { completion_tokens: number } };
  assert.is(server.engine.requests.at(-1)!.maxTokens, 1000, 'the server passes max_tokens on; the engine caps it');
  assert.is(body.choices[0]!.finish_reason, 'length');
  assert.is(body.usage.completion_tokens, 4);
});

test('return_token_ids and cached_tokens', async () => {
  await post('/v1/completions', { prompt: 'abcdefghij', max_tokens: 2 });
  const res = await post('/v1/completions', { prompt: 'abcdefghij', max_tokens: 2, return_token_ids: true, temperature: 0 });
  const body = (await res.json()) as {
    prompt_token_ids: number[];
    choices: Array<{ token_ids: number[] }>;
    usage: { prompt_tokens_details: { cached_tokens: number } };
  };
  assert.is(body.prompt_token_ids.length, 11);
  assert.is(body.prompt_token_ids[0], BOS_ID);
  assert.is(body.choices[0]!.token_ids.length, 2);
  assert.is(body.usage.prompt_tokens_details.cached_tokens, 8, "the engine's cachedTokens");
});

test('/v1/encode: string and list, with and without BOS', async () => {
  const one = (await (await post('/v1/encode', { input: 'ab' })).json()) as { input_ids: number[]; length: number };
  assert.equal(one, { input_ids: [BOS_ID, 100, 101], length: 3 });
  const list = (await (await post('/v1/encode', { input: ['a', 'bc'], add_bos: false })).json()) as { input_ids: number[][]; length: number[] };
  assert.equal(list, { input_ids: [[100], [101, 102]], length: [1, 2] });
  assert.is((await post('/v1/encode', { input: 3 })).status, 400);
});

test('/health: 200 when ready, 503 with the reason otherwise', async () => {
  assert.is((await fetch(`${server.url}/health`)).status, 200);
  server.engine.healthState = { ready: false, reason: 'loading' };
  const res = await fetch(`${server.url}/health`);
  assert.is(res.status, 503);
  assert.equal(await res.json(), { status: 'unavailable', reason: 'loading' });
});

test('/metrics: vLLM names labelled with model_name, and counters move', async () => {
  const scrape = async () => {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    const value = (sample: string) => {
      const line = text.split('\n').find((l) => l.startsWith(sample));
      assert.ok(line, `metric ${sample} present`);
      return Number(line!.split(' ').at(-1));
    };
    return { text, value };
  };
  const before = await scrape();
  for (const name of [
    'vllm:num_requests_running',
    'vllm:num_requests_waiting',
    'vllm:gpu_cache_usage_perc',
    'vllm:kv_cache_usage_perc',
    'vllm:prefix_cache_queries_total',
    'vllm:prefix_cache_hits_total',
    'vllm:prompt_tokens_total',
    'vllm:generation_tokens_total',
    'vllm:time_to_first_token_seconds_bucket',
    'vllm:time_per_output_token_seconds_bucket',
    'vllm:e2e_request_latency_seconds_bucket',
    'vllm:request_success_total',
    'lmdeploy:num_requests_running',
  ])
    assert.match(before.text, new RegExp(`^${name}\\{(.+,)?model_name="fake-model"`, 'm'), `${name} labelled`);
  assert.match(before.text, /# TYPE vllm:time_to_first_token_seconds histogram/);
  // prom-client writes a series' own labels (le, finished_reason) before the app-wide model_name.
  assert.match(before.text, /vllm:time_to_first_token_seconds_bucket\{le="0.001",model_name="fake-model"\}/);
  const lengthSample = 'vllm:request_success_total{finished_reason="length",model_name="fake-model"}';
  await post('/v1/completions', { prompt: 'abc', max_tokens: 3, temperature: 0 });
  const after = await scrape();
  assert.is(after.value('vllm:prompt_tokens_total') - before.value('vllm:prompt_tokens_total'), 4);
  assert.is(after.value('vllm:generation_tokens_total') - before.value('vllm:generation_tokens_total'), 3);
  assert.is(after.value(lengthSample) - before.value(lengthSample), 1);
  assert.is(after.value('vllm:time_to_first_token_seconds_count') - before.value('vllm:time_to_first_token_seconds_count'), 1);
  assert.is(after.value('vllm:e2e_request_latency_seconds_count') - before.value('vllm:e2e_request_latency_seconds_count'), 1);
  assert.is(after.value('vllm:time_per_output_token_seconds_count') - before.value('vllm:time_per_output_token_seconds_count'), 1);
});

test('/openapi.json: OpenAPI 3.1 with every path, built from the validating schemas', async () => {
  const doc = (await (await fetch(`${server.url}/openapi.json`)).json()) as {
    openapi: string;
    paths: Record<string, Record<string, unknown>>;
    components: { schemas: Record<string, unknown>; securitySchemes: unknown };
  };
  assert.is(doc.openapi, '3.1.0');
  for (const path of ['/v1/models', '/v1/completions', '/v1/chat/completions', '/v1/chat/interactive', '/v1/encode', '/health', '/metrics']) {
    assert.ok(doc.paths[path], `path ${path}`);
  }
  assert.ok(doc.paths['/v1/chat/completions']!.post);
  assert.equal(doc.components.schemas.CompletionRequest, JSON.parse(JSON.stringify(completionRequestSchema)));
  assert.ok(doc.components.securitySchemes, 'bearer auth declared when keys are set');
});

test('CORS: preflight for an allowed origin, nothing for others', async () => {
  const pre = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'OPTIONS',
    headers: { origin: 'http://ui.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
  });
  assert.is(pre.status, 204);
  assert.is(pre.headers.get('access-control-allow-origin'), 'http://ui.example');
  assert.match(pre.headers.get('access-control-allow-methods')!, /POST/);
  assert.match(pre.headers.get('access-control-allow-headers')!, /authorization/);
  const real = await fetch(`${server.url}/v1/models`, { headers: { origin: 'http://ui.example', authorization: 'Bearer k1' } });
  assert.is(real.headers.get('access-control-allow-origin'), 'http://ui.example');
  const denied = await fetch(`${server.url}/v1/models`, { headers: { origin: 'http://evil.example', authorization: 'Bearer k1' } });
  assert.is(denied.headers.get('access-control-allow-origin'), null);
  const errorWithCors = await fetch(`${server.url}/v1/models`, { headers: { origin: 'http://ui.example' } });
  assert.is(errorWithCors.status, 401);
  assert.is(errorWithCors.headers.get('access-control-allow-origin'), 'http://ui.example', 'errors keep CORS headers');
});

test('log lines are JSON with the component, request id, status and duration', async () => {
  const res = await post('/v1/completions', { prompt: 'x', max_tokens: 1 }, { ...AUTH, 'x-request-id': 'trace-42' });
  assert.is(res.headers.get('x-request-id'), 'trace-42');
  await res.text();
  const entries = server.logLines.map((l) => JSON.parse(l) as Record<string, unknown>);
  const line = entries.find((e) => e.req === 'trace-42');
  assert.ok(line, server.logLines.slice(-3).join('\n'));
  assert.is(line!.component, 'http');
  assert.is(line!.level, 'info');
  assert.is(line!.msg, 'POST /v1/completions 200');
  assert.is(line!.status, 200);
  assert.type(line!.seconds, 'number');
  const quiet = await startFakeServer({}, { logLevel: 'warn' });
  await fetch(`${quiet.url}/v1/models`);
  await quiet.close();
  assert.equal(quiet.logLines, [], 'info lines suppressed at logLevel warn');
});

test.run();
