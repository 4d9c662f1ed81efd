// strict: true tools in tool_choice "auto" (structural tags, src/server/tools/structural-tag.ts) through
// the real server and engine. stories260K spells <tool_call> as 8 tokens, which no static logit_bias can
// make it write in order, so the model here is a small random one (test/support/synthetic-model.ts) with
// stories260K's tokenizer plus <tool_call> / </tool_call> as added tokens (as in Qwen's tokenizer) and
// the hermes chat-template fixture: a +100 logit_bias on <tool_call> makes it open a call at once, and
// from there only the grammar can make a random model write a call that parses and validates.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import type { ChatCompletionFunctionTool, ChatCompletionMessageFunctionToolCall } from 'openai/resources/chat/completions';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { Engine } from '../../src/engine/engine.js';
import { startServer, type RunningServer } from '../../src/server/listen.js';
import { STORIES260K_DIR, writeSyntheticModel } from '../support/synthetic-model.js';
import { ROOT } from '../helpers/cli.js';
import { openEngine } from '../helpers/engine.js';

const TOOL_CALL = 512;
/**
 * A random model would fill the JSON's free whitespace until max_tokens (a trained one writes compact
 * JSON): -100 on the whitespace-only pieces of the stories260K vocabulary (\t \n \r, byte 0x20, "▁").
 */
const NO_WHITESPACE = Object.fromEntries([12, 13, 16, 35, 410].map((id) => [id, -100]));
const MODEL = 'strict-tools';
const weather = {
  type: 'object',
  properties: { city: { enum: ['Paris', 'Oslo'] }, days: { type: 'integer', minimum: 1, maximum: 7 } },
  required: ['city', 'days'],
  additionalProperties: false,
};
const time = { type: 'object', properties: { tz: { enum: ['UTC', 'CET'] } }, required: ['tz'], additionalProperties: false };
// Schemas without free strings: inside one the +100 bias would write <tool_call> until max_tokens.
const tools = (strict: boolean): ChatCompletionFunctionTool[] => [
  { type: 'function', function: { name: 'get_weather', strict, parameters: weather } },
  { type: 'function', function: { name: 'get_time', strict, parameters: time } },
];
const messages = [{ role: 'user' as const, content: 'Weather?' }];
const ajv = new Ajv2020({ strict: false });
const validators = new Map([
  ['get_weather', ajv.compile(weather)],
  ['get_time', ajv.compile(time)],
]);

function assertValid(call: ChatCompletionMessageFunctionToolCall): void {
  const validate = validators.get(call.function.name);
  assert.ok(validate, `unknown tool ${call.function.name}`);
  assert.ok(validate!(JSON.parse(call.function.arguments)), `${call.function.name} ${call.function.arguments}`);
}

let dir: string;
let engine: Engine;
let server: RunningServer;
let client: OpenAI;

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'strict-tools-'));
  await writeSyntheticModel(dir, {
    architecture: 'llama',
    hiddenSize: 64,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    intermediateSize: 128,
    vocabSize: 514,
    seed: 5,
  });
  const tokenizer = JSON.parse(await readFile(join(STORIES260K_DIR, 'tokenizer.json'), 'utf8')) as { added_tokens: object[] };
  const added = { single_word: false, lstrip: false, rstrip: false, normalized: false, special: false };
  tokenizer.added_tokens.push({ id: TOOL_CALL, content: '<tool_call>', ...added }, { id: TOOL_CALL + 1, content: '</tool_call>', ...added });
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
  await copyFile(join(STORIES260K_DIR, 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
  await copyFile(join(ROOT, 'test/fixtures/chat-templates/hermes-tools.jinja'), join(dir, 'chat_template.jinja'));
  engine = await openEngine({ modelDir: dir, kvCacheBlocks: 64 });
  server = await startServer(engine, {
    modelName: MODEL,
    apiKeys: [],
    allowOrigins: [],
    logLevel: 'warn',
    host: '127.0.0.1',
    port: 0,
    toolCallParser: () => 'hermes',
  });
  client = new OpenAI({ apiKey: 'none', baseURL: `${server.url}/v1`, maxRetries: 0 });
});

test.after(async () => {
  await server?.close();
  await engine?.shutdown();
  await rm(dir, { recursive: true, force: true });
});

const ask = (strict: boolean, seed: number, extra: Record<string, unknown> = {}) =>
  client.chat.completions.create({
    model: MODEL,
    messages,
    tools: tools(strict),
    tool_choice: 'auto',
    logit_bias: { ...NO_WHITESPACE, [TOOL_CALL]: 100 },
    temperature: 1,
    seed,
    max_tokens: 120,
    ...extra,
  });

test('strict in auto: the biased model opens a call and the grammar makes it parse and validate', async () => {
  // With get_weather alone the grammar also has to keep its integer in range.
  for (const only of [null, 'get_weather']) {
    for (const seed of [1, 2, 3]) {
      const res = await ask(true, seed, { parallel_tool_calls: false, ...(only ? { tools: tools(true).filter((t) => t.function.name === only) } : {}) });
      const choice = res.choices[0]!;
      assert.is(choice.finish_reason, 'tool_calls', JSON.stringify(choice.message));
      const calls = choice.message.tool_calls as ChatCompletionMessageFunctionToolCall[];
      assert.is(calls.length, 1, JSON.stringify(calls));
      assertValid(calls[0]!);
      if (only) assert.is(calls[0]!.function.name, only);
    }
  }
});

test('strict in auto with parallel calls: every call of the answer validates, streamed the same', async () => {
  const res = await ask(true, 7);
  const calls = (res.choices[0]!.message.tool_calls ?? []) as ChatCompletionMessageFunctionToolCall[];
  assert.ok(calls.length >= 1, JSON.stringify(res.choices[0]));
  for (const call of calls) assertValid(call);
  const stream = await client.chat.completions.create({ ...(await streamBody(7)), stream: true });
  const args: string[] = [];
  for await (const chunk of stream)
    for (const d of chunk.choices[0]?.delta.tool_calls ?? []) args[d.index] = (args[d.index] ?? '') + (d.function?.arguments ?? '');
  assert.equal(
    args,
    calls.map((c) => c.function.arguments),
  );
});

async function streamBody(seed: number) {
  return {
    model: MODEL,
    messages,
    tools: tools(true),
    tool_choice: 'auto' as const,
    logit_bias: { ...NO_WHITESPACE, [TOOL_CALL]: 100 },
    temperature: 1,
    seed,
    max_tokens: 120,
  };
}

test('without strict the same request is free: no grammar, the bias repeats the tag', async () => {
  const res = await ask(false, 1);
  const text = JSON.stringify(res.choices[0]!.message);
  // Unconstrained, the +100 bias makes the model write <tool_call> again and again: no call ever closes.
  assert.is(res.choices[0]!.message.tool_calls, undefined, text);
  assert.match(res.choices[0]!.message.content ?? '', /^\s*<tool_call>\s*<tool_call>/, text);
  assert.is(engine.grammarEngine.numMatchers, 0);
});

test.run();
