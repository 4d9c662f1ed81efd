// The protocol layer alone: validators accept real client payloads, reject with readable
// messages naming the field, and the OpenAPI document's references all resolve.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { completionLogprobs } from '../../src/server/logprobs.js';
import {
  buildOpenApiDocument,
  fieldName,
  validateChatCompletionRequest,
  validateCompletionRequest,
  validateInteractiveRequest,
} from '../../src/protocol/index.js';

test('fieldName turns JSON pointers into client spelling', () => {
  assert.is(fieldName(''), '');
  assert.is(fieldName('/messages/0/content/2/type'), 'messages[0].content[2].type');
  assert.is(fieldName('/stream_options/include_usage'), 'stream_options.include_usage');
});

test('full client payloads validate (nulls where clients send them)', () => {
  const chat = validateChatCompletionRequest({
    model: 'm',
    messages: [
      { role: 'developer', content: 'x' },
      { role: 'user', content: [{ type: 'text', text: 'y' }] },
      { role: 'assistant', content: null },
    ],
    temperature: null,
    top_p: 1,
    n: 2,
    stream: true,
    stream_options: { include_usage: true },
    stop: ['a'],
    max_completion_tokens: 5,
    logprobs: true,
    top_logprobs: 0,
    seed: -3,
    user: 'u',
    response_format: { type: 'text' },
  });
  assert.ok(chat.ok, JSON.stringify(chat));
  assert.ok(validateCompletionRequest({ prompt: [[1, 2], [3]], echo: false, logprobs: 0, top_k: -1 }).ok);
  assert.ok(validateInteractiveRequest({ prompt: 'hi', session_id: 1, image_url: null, adapter_name: null, stop: null, request_output_len: null }).ok);
});

test('errors name the field and say what it must be', () => {
  const cases: Array<[ReturnType<typeof validateCompletionRequest>, string]> = [
    [validateCompletionRequest({}), "missing required field 'prompt'"],
    [validateCompletionRequest({ prompt: 'x', stream_options: { include_usage: 1 } }), 'stream_options.include_usage must be a boolean or null (got 1)'],
    [validateCompletionRequest({ prompt: 'x', top_k: -5 }), 'top_k must be >= -1 (got -5)'],
    [validateCompletionRequest({ prompt: 'x', stop: 7 }), 'stop must be a string, an array of strings or null (got 7)'],
    [validateCompletionRequest([] as unknown), 'the request body must be a JSON object'],
  ];
  for (const [result, message] of cases) {
    assert.not.ok(result.ok);
    if (!result.ok) assert.is(result.error.message, message);
  }
  const chat = validateChatCompletionRequest({ messages: [{ role: 'user', content: [{ type: 'image_url' }] }] });
  assert.not.ok(chat.ok);
  if (!chat.ok) assert.equal(chat.error, { message: 'messages[0].content[0].type must be "text" (got "image_url")', param: 'messages[0].content[0].type' });
});

test('every $ref in the OpenAPI document resolves', () => {
  const doc = buildOpenApiDocument({ modelName: 'm', version: '1', authRequired: false });
  const text = JSON.stringify(doc);
  const refs = [...text.matchAll(/"\$ref":"#\/components\/schemas\/(\w+)"/g)].map((m) => m[1]!);
  assert.ok(refs.length >= 10);
  const schemas = (doc.components as { schemas: Record<string, unknown> }).schemas;
  for (const ref of refs) assert.ok(schemas[ref], `schema ${ref}`);
});

test('completion top_logprobs keep tokens that are Object.prototype names', () => {
  const entry = (token: string, logprob: number) => ({ tokenId: 0, token, logprob });
  const out = completionLogprobs([{ ...entry('constructor', -0.5), top: [entry('constructor', -0.5), entry('__proto__', -1), entry('toString', -2)] }], 2, 0);
  const top = out.top_logprobs[0]!;
  assert.equal(Object.keys(top), ['constructor', '__proto__']);
  assert.equal(JSON.parse(JSON.stringify(top)), JSON.parse('{"constructor": -0.5, "__proto__": -1}'));
});

test.run();
