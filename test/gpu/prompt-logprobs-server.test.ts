// Prompt scoring through the real server on stories260K: an lm-evaluation-harness loglikelihood request
// (context + continuation as one prompt, echo, logprobs 1, max_tokens 0, temperature 0) through the
// official `openai` client, whose summed continuation logprobs and is_greedy must match the CPU
// reference; vLLM's prompt_logprobs on completions and chat; echo with logprobs while streaming.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import OpenAI from 'openai';
import type { Engine } from '../../src/engine/engine.js';
import { startServer, type RunningServer } from '../../src/server/listen.js';
import { ReferenceModel } from '../support/reference-model.js';
import { openEngine, STORIES } from '../helpers/engine.js';

const BOS = 1;
let engine: Engine;
let server: RunningServer;
let client: OpenAI;
let reference: ReferenceModel;

test.before(async () => {
  // A 16-token prefill chunk: the scored prompts below span several chunks.
  engine = await openEngine({ maxNumBatchedTokens: 16 });
  server = await startServer(engine, { modelName: 'stories260K', apiKeys: [], allowOrigins: [], logLevel: 'warn', host: '127.0.0.1', port: 0 });
  client = new OpenAI({ apiKey: 'none', baseURL: `${server.url}/v1`, maxRetries: 0 });
  reference = await ReferenceModel.load(STORIES);
});

test.after(async () => {
  await server.close();
  await engine.shutdown();
});

/** Reference log_softmax rows of the whole prompt (row r predicts token r + 1). */
function referenceLogprobs(prompt: number[]): Float64Array[] {
  reference.reset();
  const V = reference.config.vocabSize;
  const logits = reference.forward(prompt);
  return prompt.map((_, r) => {
    const row = logits.subarray(r * V, (r + 1) * V);
    const m = row.reduce((a, b) => Math.max(a, b), -Infinity);
    const lse = m + Math.log(row.reduce((s, x) => s + Math.exp(x - m), 0));
    return Float64Array.from(row, (x) => x - lse);
  });
}

async function post(path: string, body: unknown): Promise<Response> {
  return fetch(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
}

test('lm-eval loglikelihood: echo + logprobs 1 + max_tokens 0 sums the continuation like the reference, is_greedy works', async () => {
  const encode = (text: string) => engine.tokenizer.encode(text, { addSpecialTokens: false });
  // The first continuation is the reference's own greedy one (is_greedy true), the second an unlikely one.
  const greedyCtx = [BOS, ...encode('Once upon a time, there was a little girl named Lily. She loved to')];
  const greedyCont: number[] = [];
  for (let i = 0; i < 6; i++) {
    const rows = referenceLogprobs([...greedyCtx, ...greedyCont]);
    const last = rows[rows.length - 1]!;
    greedyCont.push(last.indexOf(Math.max(...last)));
  }
  const cases = [
    { ctx: greedyCtx, cont: greedyCont },
    { ctx: [BOS, ...encode('Tom had a big red ball. He')], cont: encode(' ate a purple elephant on the moon.') },
  ];
  let maxErr = 0;
  const greedyFlags: boolean[] = [];
  for (const { ctx, cont } of cases) {
    const prompt = [...ctx, ...cont];
    const res = await client.completions.create({ model: 'stories260K', prompt, echo: true, logprobs: 1, max_tokens: 0, temperature: 0 });
    const choice = res.choices[0]!;
    assert.is(choice.finish_reason, 'length');
    assert.is(res.usage?.completion_tokens, 0);
    assert.is(choice.text, engine.tokenizer.decode(prompt, { skipSpecialTokens: true }));
    const lp = choice.logprobs!;
    assert.is(lp.tokens!.length, prompt.length);
    assert.is(lp.token_logprobs![0], null);
    assert.is(lp.top_logprobs![0], null);
    assert.is(lp.text_offset![0], 0);
    // lm-eval's parse_logprobs: the last len(continuation) entries.
    const n = cont.length;
    const sum = lp.token_logprobs!.slice(-n).reduce((s: number, x) => s + x!, 0);
    const tops = lp.top_logprobs!.slice(-n) as Record<string, number>[];
    const isGreedy = lp.tokens!.slice(-n).every((token, i) => {
      const top = tops[i]!;
      const best = Object.keys(top).reduce((a, b) => (top[b]! > top[a]! ? b : a));
      return best === token;
    });
    const ref = referenceLogprobs(prompt);
    const refSum = cont.reduce((s, id, i) => s + ref[ctx.length - 1 + i]![id]!, 0);
    const refGreedy = cont.every((id, i) => {
      const row = ref[ctx.length - 1 + i]!;
      return row.every((x) => x <= row[id]!);
    });
    maxErr = Math.max(maxErr, Math.abs(sum - refSum));
    assert.ok(Math.abs(sum - refSum) < 1e-3, `sum ${sum} vs reference ${refSum}`);
    assert.is(isGreedy, refGreedy, `is_greedy of ${JSON.stringify(cont)}`);
    greedyFlags.push(isGreedy);
  }
  // The model's own continuation is greedy; the absurd one is not.
  assert.equal(greedyFlags, [true, false]);
  console.log(`  lm-eval loglikelihood: max |sum error| vs reference ${maxErr.toExponential(2)}`);
});

test("prompt_logprobs (vLLM's shape) on completions, with generation, and on chat", async () => {
  const res = await post('/v1/completions', {
    model: 'stories260K',
    prompt: 'Once upon a time, there was a little girl',
    prompt_logprobs: 2,
    max_tokens: 3,
    temperature: 0,
  });
  assert.is(res.status, 200, await res.clone().text());
  const body = (await res.json()) as {
    choices: { text: string; logprobs: unknown; prompt_logprobs: (Record<string, { logprob: number; rank: number; decoded_token: string }> | null)[] }[];
  };
  const choice = body.choices[0]!;
  assert.is(choice.logprobs, null);
  const prompt = engine.tokenizer.encode('Once upon a time, there was a little girl', { addSpecialTokens: true });
  const ref = referenceLogprobs(prompt);
  assert.is(choice.prompt_logprobs.length, prompt.length);
  assert.is(choice.prompt_logprobs[0], null);
  for (let i = 1; i < prompt.length; i++) {
    const entry = choice.prompt_logprobs[i]!;
    const own = entry[String(prompt[i])]!;
    assert.ok(Math.abs(own.logprob - ref[i - 1]![prompt[i]!]!) < 1e-3, `token ${i}`);
    assert.ok(own.rank >= 1);
    const ranks = Object.values(entry).map((e) => e.rank);
    assert.ok(ranks.includes(1) && ranks.includes(2), `top-2 ranks of ${JSON.stringify(entry)}`);
    assert.ok(Object.keys(entry).length <= 3);
  }
  assert.ok(choice.text.length > 0);

  const chat = await post('/v1/chat/completions', {
    model: 'stories260K',
    messages: [{ role: 'user', content: 'Once upon a time' }],
    prompt_logprobs: 0,
    max_tokens: 2,
  });
  assert.is(chat.status, 200, await chat.clone().text());
  const chatBody = (await chat.json()) as { prompt_logprobs: unknown[]; usage: { prompt_tokens: number } };
  assert.is(chatBody.prompt_logprobs.length, chatBody.usage.prompt_tokens);
  assert.is(chatBody.prompt_logprobs[0], null);
  assert.is(Object.keys(chatBody.prompt_logprobs[1] as object).length, 1);
});

test('echo + logprobs while streaming: the first chunk leads with the prompt tokens', async () => {
  const prompt = 'The cat sat on the mat and';
  const stream = await client.completions.create({ model: 'stories260K', prompt, echo: true, logprobs: 0, max_tokens: 3, temperature: 0, stream: true });
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  const first = chunks.find((c) => c.choices.length > 0)!.choices[0]!;
  const ids = engine.tokenizer.encode(prompt, { addSpecialTokens: true });
  assert.ok(first.text.startsWith(prompt));
  assert.is(first.logprobs!.tokens!.length, ids.length + 1);
  assert.is(first.logprobs!.token_logprobs![0], null);
  const whole = await client.completions.create({ model: 'stories260K', prompt, echo: true, logprobs: 0, max_tokens: 3, temperature: 0 });
  const streamedLogprobs = chunks.flatMap((c) => c.choices.flatMap((ch) => ch.logprobs?.token_logprobs ?? []));
  assert.equal(streamedLogprobs, whole.choices[0]!.logprobs!.token_logprobs);
  assert.equal(
    chunks.flatMap((c) => c.choices.flatMap((ch) => ch.logprobs?.text_offset ?? [])),
    whole.choices[0]!.logprobs!.text_offset,
  );
});

test('refusals: max_tokens 0 without scoring, prompt_logprobs with stream', async () => {
  const zero = await post('/v1/completions', { model: 'stories260K', prompt: 'Hi', max_tokens: 0 });
  assert.is(zero.status, 400);
  assert.match(((await zero.json()) as { error: { message: string } }).error.message, /max_tokens must be at least 1/);
  const streamed = await post('/v1/chat/completions', { model: 'stories260K', messages: [{ role: 'user', content: 'x' }], prompt_logprobs: 1, stream: true });
  assert.is(streamed.status, 400);
});

test.run();
