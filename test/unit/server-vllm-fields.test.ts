// vLLM's extra request/response fields and endpoints, against the fake engine: GET /v1/models/{id},
// POST /tokenize and /detokenize, stop_reason, include_stop_str_in_output, skip_special_tokens and
// spaces_between_special_tokens reaching the engine, generation_config defaults, the chat template
// fields (add_generation_prompt, continue_final_message, chat_template_kwargs), and /openapi.json.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import OpenAI, { NotFoundError } from 'openai';
import { FakeEngine, STORY, startFakeServer } from '../helpers/fake-engine.js';

// biome-ignore lint/suspicious/noExplicitAny: response bodies are walked freely in assertions
type Json = any;

let server: Awaited<ReturnType<typeof startFakeServer>>;
let client: OpenAI;

test.before(async () => {
  server = await startFakeServer();
  client = new OpenAI({ apiKey: 'x', baseURL: `${server.url}/v1`, maxRetries: 0 });
});
test.after(async () => {
  await server.close();
});
test.after.each(() => {
  server.engine.generationDefaults = {};
});

async function post(path: string, body: unknown): Promise<{ status: number; body: Json }> {
  const res = await fetch(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Json };
}

test('models.retrieve: the served model; another id is an OpenAI 404 model_not_found', async () => {
  const model = await client.models.retrieve('fake-model');
  assert.is(model.id, 'fake-model');
  assert.is(model.object, 'model');
  try {
    await client.models.retrieve('org/other-model');
    assert.unreachable('should 404');
  } catch (err) {
    assert.instance(err, NotFoundError);
    assert.is((err as NotFoundError).code, 'model_not_found');
  }
  const raw = await fetch(`${server.url}/v1/models/nope`);
  assert.is(raw.status, 404);
  assert.is(((await raw.json()) as { error: { type: string } }).error.type, 'invalid_request_error');
});

test('POST /tokenize with a prompt and with messages; POST /detokenize', async () => {
  const codec = new FakeEngine().codec;
  const text = await post('/tokenize', { prompt: 'Hi' });
  assert.is(text.status, 200);
  assert.equal(text.body, { count: 3, max_model_len: 256, tokens: codec.encode('Hi') });
  const bare = await post('/tokenize', { model: 'fake-model', prompt: 'Hi', add_special_tokens: false });
  assert.equal(bare.body.tokens, codec.encode('Hi', { addSpecialTokens: false }));

  const messages = [{ role: 'user', content: 'Hi' }];
  const chat = await post('/tokenize', { messages });
  const rendered = codec.applyChatTemplate([{ role: 'user', content: 'Hi' }]);
  assert.equal(chat.body.tokens, codec.encode(rendered, { addSpecialTokens: false }), 'what /v1/chat/completions would prefill');
  const noPrompt = await post('/tokenize', { messages, add_generation_prompt: false });
  assert.equal(
    noPrompt.body.tokens,
    codec.encode(codec.applyChatTemplate([{ role: 'user', content: 'Hi' }], { addGenerationPrompt: false }), { addSpecialTokens: false }),
  );

  const back = await post('/detokenize', { tokens: text.body.tokens });
  assert.equal(back.body, { prompt: '<s>Hi' });

  assert.is((await post('/tokenize', {})).status, 400);
  assert.is((await post('/tokenize', { prompt: 'a', messages })).status, 400);
  assert.is((await post('/detokenize', { tokens: ['a'] })).status, 400);
  assert.is((await post('/tokenize', { model: 'other', prompt: 'a' })).status, 404);
});

test('stop_reason: the stop string, a stop_token_ids id, null for eos and length', async () => {
  const byString = await post('/v1/completions', { prompt: 'x', temperature: 0, max_tokens: 50, stop: ['time'] });
  assert.is(byString.body.choices[0].text, 'Once upon a ');
  assert.is(byString.body.choices[0].finish_reason, 'stop');
  assert.is(byString.body.choices[0].stop_reason, 'time');

  const codec = new FakeEngine().codec;
  const comma = codec.encode(',', { addSpecialTokens: false })[0]!;
  const byToken = await post('/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], temperature: 0, stop_token_ids: [comma] });
  assert.is(byToken.body.choices[0].message.content, 'Once upon a time');
  assert.is(byToken.body.choices[0].stop_reason, comma);

  const byLength = await post('/v1/completions', { prompt: 'x', temperature: 0, max_tokens: 3 });
  assert.is(byLength.body.choices[0].stop_reason, null);
  const byEos = await post('/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], temperature: 0, max_tokens: 250 });
  assert.is(byEos.body.choices[0].finish_reason, 'stop');
  assert.is(byEos.body.choices[0].stop_reason, null);
  assert.is(byEos.body.choices[0].message.content, STORY);

  // Streaming: the finishing chunk carries it.
  const stream = await client.completions.create({ model: 'fake-model', prompt: 'x', temperature: 0, max_tokens: 50, stop: ['upon'], stream: true });
  let last: Record<string, unknown> | undefined;
  for await (const chunk of stream) if (chunk.choices[0]?.finish_reason) last = chunk.choices[0] as unknown as Record<string, unknown>;
  assert.is(last?.stop_reason, 'upon');
});

test('include_stop_str_in_output keeps the stop string; the flags reach the engine with vLLM defaults', async () => {
  const res = await post('/v1/completions', { prompt: 'x', temperature: 0, max_tokens: 50, stop: ['time'], include_stop_str_in_output: true });
  assert.is(res.body.choices[0].text, 'Once upon a time');
  let sent = server.engine.requests.at(-1)!;
  assert.is(sent.includeStopStrInOutput, true);
  assert.is(sent.skipSpecialTokens, true);
  assert.is(sent.spacesBetweenSpecialTokens, true);
  await post('/v1/chat/completions', {
    messages: [{ role: 'user', content: 'x' }],
    max_tokens: 2,
    skip_special_tokens: false,
    spaces_between_special_tokens: false,
  });
  sent = server.engine.requests.at(-1)!;
  assert.is(sent.skipSpecialTokens, false);
  assert.is(sent.spacesBetweenSpecialTokens, false);
  assert.is(sent.includeStopStrInOutput, false);
});

test("generation_config defaults fill what a request omits; the request's own values win", async () => {
  server.engine.generationDefaults = { temperature: 0.25, topP: 0.5, topK: 7, minP: 0.05, repetitionPenalty: 1.3 };
  await post('/v1/completions', { prompt: 'x', max_tokens: 1 });
  assert.equal(
    (({ temperature, topP, topK, minP, repetitionPenalty }) => ({ temperature, topP, topK, minP, repetitionPenalty }))(server.engine.requests.at(-1)!.sampling),
    { temperature: 0.25, topP: 0.5, topK: 7, minP: 0.05, repetitionPenalty: 1.3 },
  );
  await post('/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], max_tokens: 1, temperature: 0.9, top_k: -1 });
  const s = server.engine.requests.at(-1)!.sampling;
  assert.is(s.temperature, 0.9);
  assert.is(s.topK, 0);
  assert.is(s.topP, 0.5);
});

test('chat_template_kwargs, add_generation_prompt and continue_final_message reach the template', async () => {
  const codec = new FakeEngine().codec;
  const decodeLast = () => codec.decode(server.engine.requests.at(-1)!.promptTokenIds);
  await post('/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], max_tokens: 1, chat_template_kwargs: { enable_thinking: false, n: 2 } });
  assert.is(decodeLast(), '<s><|user|>x</s><|assistant|>{enable_thinking=false}{n=2}');
  await post('/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], max_tokens: 1, add_generation_prompt: false });
  assert.is(decodeLast(), '<s><|user|>x</s>');
  // continue_final_message: rendered without the generation prompt, the final turn's end cut off.
  const prefill = [
    { role: 'user', content: 'x' },
    { role: 'assistant', content: 'Once upon' },
  ];
  await post('/v1/chat/completions', { messages: prefill, max_tokens: 1, add_generation_prompt: false, continue_final_message: true });
  assert.is(decodeLast(), '<s><|user|>x</s><|assistant|>Once upon');
  const both = await post('/v1/chat/completions', { messages: prefill, max_tokens: 1, continue_final_message: true });
  assert.is(both.status, 400);
  assert.is(both.body.error.param, 'continue_final_message');
});

test('completions logprobs: partial-character tokens keep their bytes and never collide in top_logprobs', async () => {
  const { completionLogprobs, chatLogprobs } = await import('../../src/server/logprobs.js');
  // "€" = e2 82 ac, as three byte-fallback tokens; the engine spells each "bytes:\xNN".
  const item = (tokenId: number, byte: number, logprob: number) => ({ tokenId, token: `bytes:\\x${byte.toString(16)}`, bytes: [byte], logprob });
  const items = [
    { ...item(10, 0xe2, -0.1), top: [item(10, 0xe2, -0.1), item(11, 0xe3, -2), item(12, 0xe4, -3)] },
    { ...item(20, 0x82, -0.2), top: [] },
    { ...item(30, 0xac, -0.3), top: [] },
    { tokenId: 40, token: '!', logprob: -0.4, top: [] },
  ];
  const lp = completionLogprobs(items, 3, 0);
  assert.equal(Object.keys(lp.top_logprobs[0]!), ['bytes:\\xe2', 'bytes:\\xe3', 'bytes:\\xe4']);
  assert.equal(lp.text_offset, [0, 0, 0, 1], 'a character counts once, at the token that completes it');
  // Two different tokens with the same text (byte-fallback <0x21> and the piece "!") both stay.
  const same = completionLogprobs(
    [
      {
        tokenId: 40,
        token: '!',
        logprob: -0.4,
        top: [
          { tokenId: 40, token: '!', logprob: -0.4 },
          { tokenId: 36, token: '!', bytes: [0x21], logprob: -5 },
        ],
      },
    ],
    2,
    0,
  );
  assert.equal(same.top_logprobs[0], Object.assign(Object.create(null), { '!': -0.4, 'token_id:36': -5 }));
  const chat = chatLogprobs(items, 3);
  assert.equal(chat[0]!.bytes, [0xe2]);
  assert.equal(
    chat.flatMap((c) => c.bytes),
    [0xe2, 0x82, 0xac, 0x21],
  );
  assert.equal(
    chat[0]!.top_logprobs.map((t) => t.bytes),
    [[0xe2], [0xe3], [0xe4]],
  );
});

test('/openapi.json documents the new fields and endpoints', async () => {
  const doc = (await (await fetch(`${server.url}/openapi.json`)).json()) as Json;
  for (const path of ['/v1/models/{model}', '/tokenize', '/detokenize']) assert.ok(doc.paths[path], path);
  const chat = doc.components.schemas.ChatCompletionRequest.properties;
  for (const field of [
    'chat_template_kwargs',
    'add_generation_prompt',
    'continue_final_message',
    'include_stop_str_in_output',
    'spaces_between_special_tokens',
    'skip_special_tokens',
  ]) {
    assert.ok(chat[field], field);
  }
  const completion = doc.components.schemas.CompletionRequest.properties;
  for (const field of ['include_stop_str_in_output', 'spaces_between_special_tokens', 'skip_special_tokens']) assert.ok(completion[field], field);
  assert.ok(doc.components.schemas.CompletionResponse.properties.choices.items.properties.stop_reason);
  assert.ok(doc.components.schemas.ChatCompletionResponse.properties.choices.items.properties.stop_reason);
  assert.ok(doc.components.schemas.ChatCompletionResponse.properties.choices.items.properties.message.properties.reasoning_content);
});

test.run();
