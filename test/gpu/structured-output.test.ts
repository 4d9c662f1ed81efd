// Structured output through the real server and the official `openai` client on stories260K, a
// model with no idea of JSON: only the grammar (xgrammar, src/structured/) makes it comply.
// response_format json_schema / json_object, vLLM's guided_regex / guided_choice / guided_grammar,
// logit_bias, min_tokens (the grammar wins when it can only end), ignore_eos (ends with the grammar), the 400s for what cannot be enforced, and a grammar-engine abort that
// fails one request while the others go on.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import OpenAI from 'openai';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { Engine } from '../../src/engine/engine.js';
import { startServer, type RunningServer } from '../../src/server/listen.js';
import { openEngine } from '../helpers/engine.js';

let engine: Engine;
let server: RunningServer;
let client: OpenAI;
const EOS = 2;
const MODEL = 'stories260K';

test.before(async () => {
  engine = await openEngine();
  server = await startServer(engine, { modelName: MODEL, apiKeys: [], allowOrigins: [], logLevel: 'warn', host: '127.0.0.1', port: 0 });
  client = new OpenAI({ apiKey: 'none', baseURL: `${server.url}/v1`, maxRetries: 0 });
});

test.after(async () => {
  await server.close();
  await engine.shutdown();
});

const SCHEMA = {
  type: 'object',
  properties: {
    name: { type: 'string', pattern: '^[a-z]{1,6}$' },
    mood: { enum: ['happy', 'sad'] },
    pet: {
      type: 'object',
      properties: { kind: { enum: ['cat', 'dog'] }, age: { type: 'integer', minimum: 0, maximum: 20 } },
      required: ['kind', 'age'],
    },
    tags: { type: 'array', items: { enum: ['a', 'b', 'c'] }, maxItems: 3 },
  },
  required: ['name', 'mood', 'pet', 'tags'],
};

/** vLLM / LMDeploy fields the SDK's types do not know: spread into the body as they are. */
const extra = (o: Record<string, unknown>) => o as Record<string, never>;

async function post(path: string, body: unknown): Promise<{ status: number; json: { error?: { param: string | null; message: string; code: unknown } } }> {
  const res = await fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, ...(body as object) }),
  });
  return { status: res.status, json: (await res.json()) as never };
}

test('response_format json_schema: 20 seeded samples at temperature 1 all parse and validate', async () => {
  const validate = new Ajv2020().compile(SCHEMA);
  const outs = await Promise.all(
    [1, 2].map((seed) =>
      client.chat.completions.create({
        model: MODEL,
        messages: [{ role: 'user', content: 'Once upon a time' }],
        temperature: 1,
        seed,
        n: 10,
        max_tokens: 200,
        response_format: { type: 'json_schema', json_schema: { name: 'story', schema: SCHEMA, strict: true } },
      }),
    ),
  );
  const choices = outs.flatMap((o) => o.choices);
  assert.is(choices.length, 20);
  for (const c of choices) {
    assert.is(c.finish_reason, 'stop', `ended by the grammar, not max_tokens: ${c.message.content}`);
    const value = JSON.parse(c.message.content!);
    assert.ok(validate(value), `${c.message.content}: ${JSON.stringify(validate.errors)}`);
  }
  assert.ok(new Set(choices.map((c) => c.message.content)).size > 1, 'samples differ');
});

test('response_format json_object and vLLM guided_regex / guided_choice / guided_json on completions', async () => {
  const obj = await client.chat.completions.create({
    model: MODEL,
    messages: [{ role: 'user', content: 'Tell me' }],
    seed: 3,
    max_tokens: 60,
    response_format: { type: 'json_object' },
  });
  if (obj.choices[0]!.finish_reason === 'stop') {
    const v = JSON.parse(obj.choices[0]!.message.content!);
    assert.ok(v !== null && typeof v === 'object' && !Array.isArray(v), obj.choices[0]!.message.content!);
  } else assert.ok(obj.choices[0]!.message.content!.startsWith('{'), obj.choices[0]!.message.content!);

  const re = await client.completions.create({
    model: MODEL,
    prompt: 'The number is',
    max_tokens: 20,
    seed: 1,
    n: 4,
    ...extra({ guided_regex: '[0-9]{3}-[a-z]{2}' }),
  });
  for (const c of re.choices) assert.match(c.text, /^[0-9]{3}-[a-z]{2}$/);
  const choice = await client.completions.create({
    model: MODEL,
    prompt: 'The cat was',
    max_tokens: 10,
    n: 4,
    seed: 5,
    ...extra({ guided_choice: ['happy', 'very sad', 'ok'] }),
  });
  for (const c of choice.choices) assert.ok(['happy', 'very sad', 'ok'].includes(c.text), c.text);
  const lmdeploy = await client.chat.completions.create({
    model: MODEL,
    messages: [{ role: 'user', content: 'x' }],
    max_tokens: 10,
    ...extra({ response_format: { type: 'regex_schema', regex_schema: '(yes|no)!' } }),
  });
  assert.match(lmdeploy.choices[0]!.message.content!, /^(yes|no)!$/);
  const gj = await client.completions.create({
    model: MODEL,
    prompt: 'x',
    max_tokens: 30,
    ...extra({ guided_json: JSON.stringify({ type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] }) }),
  });
  assert.is(typeof JSON.parse(gj.choices[0]!.text).ok, 'boolean');
  const g = await client.completions.create({ model: MODEL, prompt: 'x', max_tokens: 10, ...extra({ guided_grammar: 'root ::= "a" ("b" | "c")+ "."' }) });
  assert.match(g.choices[0]!.text, /^a[bc]+\.$/);
});

test('logit_bias -100 on the greedy token changes it; +100 forces one; logprobs see the bias', async () => {
  const ask = (bias?: Record<string, number>) =>
    client.completions.create({
      model: MODEL,
      prompt: 'Once upon a time',
      max_tokens: 1,
      temperature: 0,
      logprobs: 1,
      ...(bias ? { logit_bias: bias } : {}),
      ...extra({ return_token_ids: true }),
    });
  const plain = await ask();
  const greedy = (plain.choices[0] as unknown as { token_ids: number[] }).token_ids[0]!;
  const banned = await ask({ [greedy]: -100 });
  assert.is.not((banned.choices[0] as unknown as { token_ids: number[] }).token_ids[0], greedy);
  const forced = await ask({ 300: 100 });
  assert.is((forced.choices[0] as unknown as { token_ids: number[] }).token_ids[0], 300);
  assert.ok(forced.choices[0]!.logprobs!.token_logprobs![0]! > -0.01, 'the logprob is of the biased distribution');
});

test('min_tokens (and min_new_tokens) hold off EOS', async () => {
  const eosFirst = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 20, temperature: 0, logit_bias: { [EOS]: 100 } });
  assert.is(eosFirst.usage!.completion_tokens, 1);
  for (const field of ['min_tokens', 'min_new_tokens']) {
    const held = await client.completions.create({
      model: MODEL,
      prompt: 'Once upon a time',
      max_tokens: 20,
      temperature: 0,
      logit_bias: { [EOS]: 100 },
      ...extra({ [field]: 6 }),
    });
    assert.is(held.usage!.completion_tokens, 7, field);
    assert.is(held.choices[0]!.finish_reason, 'stop');
  }
});

test('ignore_eos with a grammar: the request ends when the grammar does (finish_reason stop), as vLLM ends it when the matcher terminates', async () => {
  const restarts = engine.grammarEngine.restarts;
  for (const seed of [1, 2, 3]) {
    const res = await client.completions.create({
      model: MODEL,
      prompt: 'Once upon a time',
      max_tokens: 40,
      temperature: 1,
      seed,
      ...extra({ ignore_eos: true, guided_choice: ['yes', 'no'] }),
    });
    assert.is(res.choices[0]!.finish_reason, 'stop');
    assert.ok(['yes', 'no'].includes(res.choices[0]!.text), res.choices[0]!.text);
  }
  const chat = await client.chat.completions.create({
    model: MODEL,
    messages: [{ role: 'user', content: 'Once upon a time' }],
    max_tokens: 200,
    seed: 4,
    response_format: { type: 'json_schema', json_schema: { name: 'story', schema: SCHEMA } },
    ...extra({ ignore_eos: true }),
  });
  assert.is(chat.choices[0]!.finish_reason, 'stop');
  assert.ok(new Ajv2020().compile(SCHEMA)(JSON.parse(chat.choices[0]!.message.content!)), chat.choices[0]!.message.content!);
  // The grammar engine was never asked past its end (that would abort its WebAssembly instance).
  assert.is(engine.grammarEngine.restarts, restarts);
});

test('min_tokens with a grammar that can only end: the grammar wins, the request stops when it does (vLLM #54218)', async () => {
  const restarts = engine.grammarEngine.restarts;
  for (const seed of [1, 2]) {
    const res = await client.completions.create({
      model: MODEL,
      prompt: 'Once upon a time',
      max_tokens: 40,
      temperature: 1,
      seed,
      ...extra({ min_tokens: 10, guided_choice: ['yes', 'no'] }),
    });
    const choice = res.choices[0]!;
    assert.is(choice.finish_reason, 'stop', choice.text);
    assert.ok(['yes', 'no'].includes(choice.text), choice.text);
    assert.ok(res.usage!.completion_tokens < 10, `ended before min_tokens: ${res.usage!.completion_tokens}`);
  }
  // Where the grammar allows more than its end, min_tokens still holds EOS off: a free-form string runs past it.
  const open = await client.completions.create({
    model: MODEL,
    prompt: 'Once upon a time',
    max_tokens: 40,
    temperature: 0,
    logit_bias: { [EOS]: 100 },
    ...extra({ min_tokens: 6, guided_regex: '[a-z ]{1,200}' }),
  });
  assert.is(open.choices[0]!.finish_reason, 'stop');
  assert.is(open.usage!.completion_tokens, 7);
  assert.is(engine.grammarEngine.restarts, restarts);
});

test('what cannot be enforced or is not implemented is a 400 naming the field', async () => {
  const messages = [{ role: 'user', content: 'x' }];
  const rf = (schema: unknown) => ({ messages, response_format: { type: 'json_schema', json_schema: { name: 'x', schema } } });
  for (const [body, param, what] of [
    [rf({ type: 'array', items: { type: 'integer' }, uniqueItems: true }), 'response_format.json_schema.schema', /"uniqueItems" at #/],
    [rf({ type: 'string', format: 'email' }), 'response_format.json_schema.schema', /"format"/],
    [rf({ type: 'object', properties: { a: { not: {} } } }), 'response_format.json_schema.schema', /"not" at #\/properties\/a/],
    [rf({ type: 'nope' }), 'response_format.json_schema.schema', /invalid/],
    [{ messages, response_format: { type: 'xml' } }, 'response_format.type', /xml/],
    [{ messages, response_format: { type: 'json_object' }, guided_regex: 'a' }, 'guided_regex', /only one/],
    [{ messages, prediction: { type: 'content', content: 'x' } }, 'prediction', /not supported/],
    [{ messages, audio: { voice: 'x' } }, 'audio', /not supported/],
    [{ messages, logit_bias: { 1: 101 } }, 'logit_bias[1]', /<= 100/],
  ] as const) {
    const r = await post('/v1/chat/completions', body);
    assert.is(r.status, 400, JSON.stringify(body));
    assert.is(r.json.error!.param, param, JSON.stringify(r.json));
    assert.match(r.json.error!.message, what);
    assert.is(r.json.error!.code, null);
  }
  for (const [body, param] of [
    [{ prompt: 'x', suffix: 'y' }, 'suffix'],
    [{ prompt: 'x', best_of: 3 }, 'best_of'],
    [{ prompt: 'x', guided_json: { type: 'integer', multipleOf: 3 } }, 'guided_json'],
  ] as const) {
    const r = await post('/v1/completions', body);
    assert.is(r.status, 400, JSON.stringify(body));
    assert.is(r.json.error!.param, param);
  }
  const unknown = await post('/v1/completions', { prompt: 'x', max_tokens: 1, some_future_field: 1, best_of: 1 });
  assert.is(unknown.status, 200, 'unknown fields are ignored');
});

test('a grammar engine abort fails only that request; the next ones and the running ones go on', async () => {
  const bad = await post('/v1/completions', { prompt: 'x', max_tokens: 5, guided_grammar: 'root ::= undefined_rule' });
  assert.is(bad.status, 400);
  assert.match(bad.json.error!.message, /undefined_rule/);
  const restarts = engine.grammarEngine.restarts;
  assert.ok(restarts >= 1);
  // A guided request in flight while the worker aborts: its matcher is rebuilt in the new worker.
  const running = client.completions.create({
    model: MODEL,
    prompt: 'x',
    max_tokens: 60,
    seed: 4,
    ...extra({
      guided_json: {
        type: 'object',
        properties: { a: { type: 'string', maxLength: 30 }, b: { type: 'array', items: { type: 'integer', minimum: 0, maximum: 9 }, maxItems: 5 } },
        required: ['a', 'b'],
      },
    }),
  });
  await new Promise((r) => setTimeout(r, 30));
  await engine.grammarEngine.crashForTest();
  const out = await running;
  assert.ok(engine.grammarEngine.restarts > restarts);
  if (out.choices[0]!.finish_reason === 'stop') JSON.parse(out.choices[0]!.text);
  const after = await client.completions.create({ model: MODEL, prompt: 'x', max_tokens: 10, ...extra({ guided_choice: ['yes', 'no'] }) });
  assert.ok(['yes', 'no'].includes(after.choices[0]!.text));
  const plain = await client.completions.create({ model: MODEL, prompt: 'x', max_tokens: 3, temperature: 0 });
  assert.ok(plain.choices[0]!.text.length >= 0);
  assert.is(engine.grammarEngine.numMatchers, 0, 'finished requests release their matchers');
});

test('preempted guided requests resume with valid matchers (outputs are kept and recomputed)', async () => {
  // 6 blocks of 16 tokens for 4 requests of up to ~70 tokens each: the scheduler must preempt.
  const small = await openEngine({ kvCacheBlocks: 6 });
  try {
    const schema = {
      type: 'object',
      properties: { a: { type: 'string', maxLength: 20 }, b: { type: 'array', items: { type: 'integer', minimum: 0, maximum: 99 }, maxItems: 6 } },
      required: ['a', 'b'],
    };
    const validate = new Ajv2020().compile(schema);
    const texts = await Promise.all(
      [1, 2, 3, 4].map(async (seed) => {
        let text = '';
        let finish: string | null = null;
        for await (const d of small.generate({
          promptTokenIds: [1, 300 + seed, 301, 302],
          sampling: { temperature: 1, topP: 1, topK: 0, minP: 0, repetitionPenalty: 1, presencePenalty: 0, frequencyPenalty: 0, seed, logprobs: null },
          maxTokens: 80,
          stop: [],
          stopTokenIds: [],
          ignoreEos: false,
          skipSpecialTokens: true,
          guided: { type: 'json_schema', schema },
        })) {
          text += d.text;
          finish = d.finishReason;
        }
        return { text, finish };
      }),
    );
    assert.ok(small.stats().numPreemptionsTotal > 0, 'the test preempted');
    for (const t of texts) {
      if (t.finish !== 'stop') continue; // cut by max_tokens: still a prefix
      assert.ok(validate(JSON.parse(t.text)), t.text);
    }
    assert.ok(texts.some((t) => t.finish === 'stop'));
  } finally {
    await small.shutdown();
  }
});

test.run();
