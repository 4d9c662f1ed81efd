// Tool calling through the real `serve` on stories260K with a hermes-style chat template
// (test/fixtures/chat-templates/hermes-tools.jinja): the parser chosen from the template and logged,
// an agent round trip rendered by the template (tools, the assistant's tool_calls, the tool result),
// tool_choice auto on a model that knows no tools (plain content), and tool_choice required / named,
// where only the grammar can make stories260K comply: every answer's calls validate against the tool,
// and a streamed required call (name first, then argument fragments) equals the non-streamed one.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import OpenAI from 'openai';
import type { ChatCompletionFunctionTool, ChatCompletionMessageFunctionToolCall } from 'openai/resources/chat/completions';
import { ROOT, startServe, type ServeProcess } from '../helpers/cli.js';
import { STORIES } from '../helpers/engine.js';

const TEMPLATE = join(ROOT, 'test/fixtures/chat-templates/hermes-tools.jinja');
const tools: ChatCompletionFunctionTool[] = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      parameters: {
        type: 'object',
        properties: { city: { enum: ['Paris', 'Oslo'] } },
        required: ['city'],
        additionalProperties: false,
      },
    },
  },
  {
    type: 'function',
    function: {
      name: 'get_time',
      parameters: { type: 'object', properties: { tz: { enum: ['UTC', 'CET'] } }, required: ['tz'], additionalProperties: false },
    },
  },
];
const messages = [{ role: 'user' as const, content: 'Weather?' }];

let serve: ServeProcess;
let client: OpenAI;

test.before(async () => {
  serve = await startServe([STORIES, '--dtype', 'f32', '--kv-cache-blocks', '32', '--model-name', 'stories', '--no-warmup', '--chat-template', TEMPLATE]);
  client = new OpenAI({ apiKey: 'x', baseURL: `${serve.url}/v1`, maxRetries: 0 });
});
test.after(async () => {
  await serve?.stop();
});

test('the tool call parser is chosen from the chat template and logged', async () => {
  // The log line (stderr) may arrive after "serving ..." (stdout), which startServe waits for.
  const wanted = /tool call parser hermes \(chosen from the model's chat template\)/;
  for (let i = 0; i < 50 && !wanted.test(serve.logs()); i++) await new Promise((r) => setTimeout(r, 100));
  assert.match(serve.logs(), wanted);
});

test('an agent round trip: tools, the assistant tool_calls and the tool result are rendered by the template', async () => {
  // The history after one call: the assistant's tool_calls turn and the tool's answer.
  const afterToolCall = [
    ...messages,
    {
      role: 'assistant' as const,
      content: null,
      tool_calls: [{ id: 'call_1', type: 'function' as const, function: { name: 'get_weather', arguments: '{"city": "Paris"}' } }],
    },
    { role: 'tool' as const, tool_call_id: 'call_1', content: 'Sunny' },
  ];
  const res = await fetch(`${serve.url}/tokenize`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      tools,
      messages: afterToolCall,
    }),
  });
  assert.is(res.status, 200);
  const { tokens } = (await res.json()) as { tokens: number[] };
  const det = await fetch(`${serve.url}/detokenize`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ tokens }) });
  const { prompt } = (await det.json()) as { prompt: string };
  assert.ok(prompt.includes('<tools>\n{"name": "get_weather"'), prompt);
  // arguments reached the template as an object (tojson re-serializes it, Python-style), not as a string.
  assert.ok(prompt.includes('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'), prompt);
  assert.ok(prompt.includes('<tool_response>\nSunny\n</tool_response>'), prompt);
  assert.ok(prompt.endsWith('<|im_start|>assistant\n'), prompt);

  // The next turn generates from that prompt (one tool, so it fits stories260K's 512 tokens).
  const next = await client.chat.completions.create({
    model: 'stories',
    tools: [tools[1]!],
    max_tokens: 8,
    messages: afterToolCall,
  });
  assert.is(next.choices[0]!.message.role, 'assistant');
});

test('tool_choice auto on a model without tool knowledge: plain content, no calls', async () => {
  const res = await client.chat.completions.create({ model: 'stories', messages, tools, max_tokens: 12, temperature: 0 });
  const choice = res.choices[0]!;
  assert.type(choice.message.content, 'string');
  assert.is(choice.message.tool_calls, undefined);
  assert.ok(choice.finish_reason === 'stop' || choice.finish_reason === 'length');
});

const ajv = new Ajv2020({ strict: false });
const validators = new Map(tools.map((t) => [t.function.name, ajv.compile(t.function.parameters!)]));

// parallel_tool_calls false bounds the array to one call, so every answer fits the 512-token session
// (with parallel calls the grammar lets a model that knows no tools go on adding calls until the limit).
test('tool_choice required: every answer has one tool call whose arguments validate', async () => {
  for (const seed of [1, 2, 3, 4]) {
    const res = await client.chat.completions.create({ model: 'stories', messages, tools, tool_choice: 'required', parallel_tool_calls: false, seed });
    const choice = res.choices[0]!;
    assert.is(choice.finish_reason, 'tool_calls', JSON.stringify(choice));
    assert.is(choice.message.content, null);
    const calls = (choice.message.tool_calls ?? []) as ChatCompletionMessageFunctionToolCall[];
    assert.is(calls.length, 1);
    for (const call of calls) {
      assert.ok(call.type === 'function' && call.id.startsWith('call_'));
      const validate = validators.get(call.function.name);
      assert.ok(validate, `unknown tool ${call.function.name}`);
      assert.ok(validate!(JSON.parse(call.function.arguments)), `${call.function.arguments}: ${ajv.errorsText(validate!.errors)}`);
    }
  }
});

test('tool_choice required, streamed: the call arrives as OpenAI deltas in several argument fragments and equals the non-streamed one', async () => {
  for (const seed of [1, 2]) {
    const body = { model: 'stories', messages, tools, tool_choice: 'required' as const, parallel_tool_calls: false, seed };
    const res = await client.chat.completions.create(body);
    const whole = res.choices[0]!.message.tool_calls![0]! as ChatCompletionMessageFunctionToolCall;
    const stream = await client.chat.completions.create({ ...body, stream: true });
    let name: string | undefined;
    const fragments: string[] = [];
    let finish: string | null = null;
    let content = '';
    for await (const chunk of stream) {
      const choice = chunk.choices[0];
      if (!choice) continue;
      content += choice.delta.content ?? '';
      if (choice.finish_reason) finish = choice.finish_reason;
      for (const d of choice.delta.tool_calls ?? []) {
        assert.is(d.index, 0);
        if (name === undefined) {
          assert.ok(d.id?.startsWith('call_') && d.type === 'function' && d.function?.arguments === '', JSON.stringify(d));
          name = d.function?.name;
        } else fragments.push(d.function?.arguments ?? '');
      }
    }
    assert.is(name, whole.function.name);
    assert.ok(fragments.length > 1, `${fragments.length} argument fragments`);
    assert.is(fragments.join(''), whole.function.arguments, 'the same seed streams the same arguments');
    assert.is(content, '');
    assert.is(finish, 'tool_calls');
    assert.is(res.choices[0]!.finish_reason, 'tool_calls');
  }
});

test('a named tool_choice: every answer calls that tool with valid arguments (streamed too), finish_reason stop as OpenAI', async () => {
  const choiceParam = { type: 'function' as const, function: { name: 'get_weather' } };
  for (const seed of [1, 2, 3]) {
    const res = await client.chat.completions.create({ model: 'stories', messages, tools, tool_choice: choiceParam, seed });
    const choice = res.choices[0]!;
    assert.is(choice.finish_reason, 'stop');
    const call = choice.message.tool_calls![0]! as ChatCompletionMessageFunctionToolCall;
    assert.is(call.function.name, 'get_weather');
    assert.ok(validators.get('get_weather')!(JSON.parse(call.function.arguments)), call.function.arguments);

    const stream = await client.chat.completions.create({ model: 'stories', messages, tools, tool_choice: choiceParam, seed, stream: true });
    let args = '';
    let finish: string | null = null;
    for await (const chunk of stream) {
      for (const d of chunk.choices[0]?.delta.tool_calls ?? []) args += d.function?.arguments ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assert.is(args, call.function.arguments, 'the same seed streams the same arguments');
    assert.is(finish, 'stop');
  }
});

test.run();
