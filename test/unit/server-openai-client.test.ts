// The server through the official `openai` npm client, against the fake engine (no GPU).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import OpenAI, { AuthenticationError, BadRequestError, NotFoundError, RateLimitError } from 'openai';
import { EngineOverloadedError } from '../../src/common/errors.js';
import { FakeEngine, STORY, startFakeServer, BOS_ID } from '../helpers/fake-engine.js';

let server: Awaited<ReturnType<typeof startFakeServer>>;
let client: OpenAI;

test.before(async () => {
  server = await startFakeServer({}, { apiKeys: ['sk-test'] });
  client = new OpenAI({ apiKey: 'sk-test', baseURL: `${server.url}/v1`, maxRetries: 0 });
});
test.after(async () => {
  await server.close();
});
test.after.each(() => {
  server.engine.failWith = null;
});

test('models.list returns the served model', async () => {
  const models = [];
  for await (const m of client.models.list()) models.push(m);
  assert.is(models.length, 1);
  assert.is(models[0]!.id, 'fake-model');
  assert.is(models[0]!.owned_by, 'webgpu-llm');
  assert.is((models[0] as unknown as { max_model_len: number }).max_model_len, 256);
});

test('chat.completions.create (greedy) continues the story from its start', async () => {
  const res = await client.chat.completions.create({
    model: 'fake-model',
    messages: [
      { role: 'system', content: 'be brief' },
      { role: 'user', content: 'tell me' },
    ],
    max_tokens: 12,
    temperature: 0,
  });
  assert.is(res.object, 'chat.completion');
  assert.is(res.choices[0]!.message.role, 'assistant');
  assert.is(res.choices[0]!.message.content, STORY.slice(0, 12));
  assert.is(res.choices[0]!.finish_reason, 'length');
  const codec = new FakeEngine().codec;
  const prompt = codec.applyChatTemplate([
    { role: 'system', content: 'be brief' },
    { role: 'user', content: 'tell me' },
  ]);
  assert.is(res.usage!.prompt_tokens, codec.encode(prompt, { addSpecialTokens: false }).length, 'the template brings its own BOS');
  assert.is(res.usage!.completion_tokens, 12);
  assert.is(res.usage!.total_tokens, res.usage!.prompt_tokens + 12);
  const sent = server.engine.requests.at(-1)!;
  assert.is(sent.promptTokenIds[0], BOS_ID);
  assert.is(sent.promptTokenIds.filter((id) => id === BOS_ID).length, 1);
});

test('chat.completions.create with stream: role first, deltas, finish_reason, usage', async () => {
  const stream = await client.chat.completions.create({
    model: 'fake-model',
    messages: [
      {
        role: 'user',
        content: [
          { type: 'text', text: 'a' },
          { type: 'text', text: 'b' },
        ],
      },
    ],
    max_completion_tokens: 40,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
    stop: ['robot'],
  });
  let text = '';
  let role: string | undefined;
  let finish: string | null = null;
  let usage: OpenAI.CompletionUsage | null | undefined;
  for await (const chunk of stream) {
    if (chunk.choices[0]?.delta.role) role ??= chunk.choices[0].delta.role;
    text += chunk.choices[0]?.delta.content ?? '';
    finish = chunk.choices[0]?.finish_reason ?? finish;
    if (chunk.usage) usage = chunk.usage;
  }
  assert.is(role, 'assistant');
  assert.is(text, 'Once upon a time, a little ', 'stopped before the stop string, which is not returned');
  assert.is(finish, 'stop');
  assert.ok(usage);
  assert.is(usage!.completion_tokens, 'Once upon a time, a little robot'.length);
  const sent = server.engine.requests.at(-1)!;
  assert.ok(new FakeEngine().codec.decode(sent.promptTokenIds).includes('<|user|>a\nb</s>'), 'text parts joined with a newline');
});

test('completions.create: string, token ids, list of prompts with n, echo, logprobs', async () => {
  const one = await client.completions.create({ model: 'fake-model', prompt: 'Hi', max_tokens: 4, temperature: 0 });
  assert.is(one.choices.length, 1);
  assert.is(one.choices[0]!.text, 'Once');
  assert.is(one.usage!.prompt_tokens, 3, 'BOS + 2 characters');

  const ids = await client.completions.create({ model: 'fake-model', prompt: [BOS_ID, 50, 51, 52], max_tokens: 3, temperature: 0 });
  assert.is(ids.usage!.prompt_tokens, 4);
  assert.equal(server.engine.requests.at(-1)!.promptTokenIds, [BOS_ID, 50, 51, 52]);

  const many = await client.completions.create({ model: 'fake-model', prompt: ['a', 'bb'], n: 2, max_tokens: 5, seed: 40, temperature: 1 });
  assert.equal(
    many.choices.map((c) => c.index),
    [0, 1, 2, 3],
  );
  assert.equal(
    many.choices.map((c) => c.text),
    [STORY.slice(40, 45), STORY.slice(41, 46), STORY.slice(40, 45), STORY.slice(41, 46)],
    'choice i uses seed + i',
  );
  assert.is(many.usage!.prompt_tokens, 2 + 3, 'each prompt counted once');
  assert.is(many.usage!.completion_tokens, 20);

  const echo = await client.completions.create({ model: 'fake-model', prompt: 'Say: ', echo: true, max_tokens: 4, temperature: 0 });
  assert.is(echo.choices[0]!.text, 'Say: Once');

  const lp = await client.completions.create({ model: 'fake-model', prompt: 'x', logprobs: 2, max_tokens: 3, temperature: 0 });
  const logprobs = lp.choices[0]!.logprobs!;
  assert.equal(logprobs.tokens, ['O', 'n', 'c']);
  assert.equal(logprobs.token_logprobs, [-0.25, -0.5, -0.75]);
  assert.equal(logprobs.text_offset, [0, 1, 2]);
  assert.is(Object.keys(logprobs.top_logprobs![0]!).length, 2, 'the sampled token plus one distinct alternative');
  assert.is(logprobs.top_logprobs![0]!['O'], -0.25);
});

test('chat logprobs: content list with bytes and top_logprobs', async () => {
  const res = await client.chat.completions.create({
    model: 'fake-model',
    messages: [{ role: 'user', content: 'x' }],
    max_tokens: 2,
    temperature: 0,
    logprobs: true,
    top_logprobs: 3,
  });
  const content = res.choices[0]!.logprobs!.content!;
  assert.is(content.length, 2);
  assert.is(content[0]!.token, 'O');
  assert.equal(content[0]!.bytes, [79]);
  assert.is(content[0]!.top_logprobs.length, 3);
  assert.is(server.engine.requests.at(-1)!.sampling.logprobs, 3);
});

test('error classes: BadRequestError, AuthenticationError, NotFoundError, RateLimitError', async () => {
  const bad = await client.chat.completions.create({ model: 'fake-model', messages: [], max_tokens: 2 }).catch((e: unknown) => e);
  assert.instance(bad, BadRequestError);
  assert.match((bad as BadRequestError).message, /messages/);

  const wrongKey = new OpenAI({ apiKey: 'sk-wrong', baseURL: `${server.url}/v1`, maxRetries: 0 });
  const auth = await wrongKey.models.list().catch((e: unknown) => e);
  assert.instance(auth, AuthenticationError);
  assert.is((auth as AuthenticationError).code, 'invalid_api_key');

  const missing = await client.completions.create({ model: 'gpt-4', prompt: 'x' }).catch((e: unknown) => e);
  assert.instance(missing, NotFoundError);
  assert.match((missing as NotFoundError).message, /fake-model/);

  server.engine.failWith = new EngineOverloadedError(10, 10);
  const busy = await client.completions.create({ model: 'fake-model', prompt: 'x', stream: true }).catch((e: unknown) => e);
  assert.instance(busy, RateLimitError);
  assert.is(server.engine.numLive, 0);
});

test.run();
