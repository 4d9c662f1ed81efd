// Tool calling through the server with a fake engine that writes recorded model outputs: tool_choice
// auto with a parser (message.tool_calls, finish_reason tool_calls, streamed deltas that assemble to
// exactly the non-streamed message), named and required choices (the grammar request the engine gets,
// the output read as arguments / as a call array streamed call by call, finish_reason stop for a named
// function and tool_calls for required), none, and the 400s.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import OpenAI from 'openai';
import type { ChatCompletionFunctionTool } from 'openai/resources/chat/completions';
import { startFakeServer } from '../helpers/fake-engine.js';
import type { ToolCallParserName } from '../../src/server/tools/parsers.js';

const tools: ChatCompletionFunctionTool[] = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'Current weather in a city',
      parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
    },
  },
  { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: { tz: { type: 'string' } } } } },
];
const messages = [{ role: 'user' as const, content: 'Weather in Paris and Oslo?' }];

const HERMES =
  'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>';

async function withServer(
  story: string,
  parser: ToolCallParserName | null,
  fn: (client: OpenAI, url: string, server: Awaited<ReturnType<typeof startFakeServer>>) => Promise<void>,
) {
  const server = await startFakeServer({ story, sessionLen: 4096 }, { toolCallParser: () => parser });
  try {
    await fn(new OpenAI({ apiKey: 'x', baseURL: `${server.url}/v1`, maxRetries: 0 }), server.url, server);
  } finally {
    await server.close();
  }
}

interface Assembled {
  content: string | null;
  tool_calls: { id: string; type: string; function: { name: string; arguments: string } }[];
  finish_reason: string | null;
}

async function streamed(client: OpenAI, extra: Record<string, unknown>, checkLeaks = true): Promise<Assembled> {
  const stream = await client.chat.completions.create({ model: 'fake-model', messages, tools, temperature: 0, max_tokens: 500, stream: true, ...extra });
  let content = '';
  let finish: string | null = null;
  const calls: Assembled['tool_calls'] = [];
  for await (const chunk of stream) {
    const choice = chunk.choices[0];
    if (!choice) continue;
    content += choice.delta.content ?? '';
    if (checkLeaks) assert.not.ok(/<tool|<\/tool|<\|action|\[TOOL/.test(choice.delta.content ?? ''), `a tag leaked into content: ${choice.delta.content}`);
    for (const d of choice.delta.tool_calls ?? []) {
      if (!calls[d.index]) {
        // OpenAI's first delta of a call: index, id, type, name and empty arguments.
        assert.ok(d.id?.startsWith('call_'), 'first delta has the id');
        assert.is(d.type, 'function');
        assert.ok(d.function?.name);
        assert.is(d.function?.arguments, '');
        calls[d.index] = { id: d.id!, type: 'function', function: { name: d.function!.name!, arguments: '' } };
      } else {
        assert.is(d.id, undefined, 'later deltas carry only arguments');
        calls[d.index]!.function.arguments += d.function?.arguments ?? '';
      }
    }
    if (choice.finish_reason) finish = choice.finish_reason;
  }
  return { content: content === '' ? null : content, tool_calls: calls, finish_reason: finish };
}

async function whole(client: OpenAI, extra: Record<string, unknown>): Promise<Assembled> {
  const res = await client.chat.completions.create({ model: 'fake-model', messages, tools, temperature: 0, max_tokens: 500, ...extra });
  const choice = res.choices[0]!;
  return { content: choice.message.content, tool_calls: (choice.message.tool_calls ?? []) as Assembled['tool_calls'], finish_reason: choice.finish_reason };
}

const withoutIds = (a: Assembled) => ({ ...a, tool_calls: a.tool_calls.map((c) => ({ ...c, id: c.id.startsWith('call_') ? 'call_*' : c.id })) });

test('auto with the hermes parser: tool_calls, text outside stays content, finish_reason tool_calls; stream assembles to the same', async () => {
  await withServer(HERMES, 'hermes', async (client, _url, server) => {
    const res = await whole(client, {});
    assert.is(res.content, 'Let me check.');
    assert.equal(
      res.tool_calls.map((c) => [c.type, c.function.name, JSON.parse(c.function.arguments)]),
      [
        ['function', 'get_weather', { city: 'Paris' }],
        ['function', 'get_weather', { city: 'Oslo' }],
      ],
    );
    assert.ok(res.tool_calls.every((c) => /^call_[0-9a-f]{24}$/.test(c.id)));
    assert.is.not(res.tool_calls[0]!.id, res.tool_calls[1]!.id);
    assert.is(res.finish_reason, 'tool_calls');
    assert.is(server.engine.requests.at(-1)!.guided ?? null, null, 'auto is not constrained');
    assert.equal(withoutIds(await streamed(client, {})), withoutIds(res));
  });
});

test('auto with other parsers (llama3_json, internlm, mistral): streamed equals non-streamed', async () => {
  const outputs: [ToolCallParserName, string][] = [
    ['llama3_json', '{"name": "get_weather", "parameters": {"city": "Paris"}}; {"name": "get_time", "parameters": {"tz": "CET"}}'],
    ['internlm', 'Looking.<|action_start|><|plugin|>\n{"name": "get_weather", "parameters": {"city": "Paris"}}<|action_end|>'],
    ['mistral', '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}]'],
  ];
  for (const [parser, story] of outputs) {
    await withServer(story, parser, async (client, _url, server) => {
      const res = await whole(client, {});
      assert.is(res.finish_reason, 'tool_calls', parser);
      assert.ok(res.tool_calls.length >= 1, parser);
      assert.equal(withoutIds(await streamed(client, {})), withoutIds(res), parser);
      // Formats made of special tokens keep them in the text (vLLM does the same).
      assert.is(server.engine.requests.at(-1)!.skipSpecialTokens, !(parser === 'internlm' || parser === 'mistral'), parser);
    });
  }
});

test('auto: malformed JSON stays content with finish_reason stop; without a parser tools give plain content', async () => {
  // Malformed before the arguments open (a missing comma): never streamed as a call, so content.
  const bad = 'Hmm <tool_call>\n{"name": "get_weather" "arguments": {"city": "Paris"}}\n</tool_call>';
  await withServer(bad, 'hermes', async (client) => {
    const res = await whole(client, {});
    assert.equal(res, { content: bad, tool_calls: [], finish_reason: 'stop' });
    assert.equal(await streamed(client, {}, false), res);
  });
  await withServer(HERMES, null, async (client) => {
    const res = await whole(client, {});
    assert.equal(res, { content: HERMES, tool_calls: [], finish_reason: 'stop' });
  });
});

test('auto: a long call streams its name first, then its arguments in many fragments, assembling to the whole answer', async () => {
  const args = { city: 'Paris', days: 5, units: 'metric', note: 'bring an umbrella, "just in case"' };
  const story = `One moment.\n<tool_call>\n{"name": "get_weather", "arguments": ${JSON.stringify(args, null, 2)}}\n</tool_call>`;
  await withServer(story, 'hermes', async (client) => {
    const res = await whole(client, {});
    assert.equal(
      res.tool_calls.map((c) => [c.function.name, c.function.arguments]),
      [['get_weather', JSON.stringify(args)]],
    );
    const stream = await client.chat.completions.create({ model: 'fake-model', messages, tools, temperature: 0, max_tokens: 500, stream: true });
    const fragments: string[] = [];
    for await (const chunk of stream) {
      for (const d of chunk.choices[0]?.delta.tool_calls ?? []) {
        if (d.function?.name) assert.is(fragments.length, 0, 'the name comes before any argument text');
        else fragments.push(d.function?.arguments ?? '');
      }
    }
    assert.ok(fragments.length > 20, `${fragments.length} argument fragments`);
    assert.is(fragments.join(''), res.tool_calls[0]!.function.arguments);
    assert.equal(withoutIds(await streamed(client, {})), withoutIds(res));
  });
});

test('tool_choice none: the calls are not parsed', async () => {
  await withServer(HERMES, 'hermes', async (client) => {
    assert.equal(await whole(client, { tool_choice: 'none' }), { content: HERMES, tool_calls: [], finish_reason: 'stop' });
  });
});

test("a named function: the engine gets its parameters' json_schema; the output is that call's arguments", async () => {
  const args = '{"city": "Paris"}';
  await withServer(args, null, async (client, _url, server) => {
    const choice = { type: 'function', function: { name: 'get_weather' } };
    const res = await whole(client, { tool_choice: choice });
    assert.equal(server.engine.requests.at(-1)!.guided, { type: 'json_schema', schema: tools[0]!.function.parameters });
    assert.is(res.content, null);
    assert.is(res.tool_calls.length, 1);
    assert.is(res.tool_calls[0]!.function.name, 'get_weather');
    assert.is(res.tool_calls[0]!.function.arguments, args);
    // OpenAI (and vLLM since #25054): a named function keeps finish_reason "stop".
    assert.is(res.finish_reason, 'stop');
    assert.equal(withoutIds(await streamed(client, { tool_choice: choice })), withoutIds(res));
  });
});

test('required: the engine gets an array-of-calls schema; the array becomes tool_calls', async () => {
  const out = '[{"name": "get_weather", "parameters": {"city": "Paris"}}, {"name": "get_time", "parameters": {"tz": "CET"}}]';
  await withServer(out, null, async (client, _url, server) => {
    const res = await whole(client, { tool_choice: 'required' });
    const guided = server.engine.requests.at(-1)!.guided as { type: string; schema: Record<string, unknown> };
    assert.is(guided.type, 'json_schema');
    assert.is(guided.schema.type, 'array');
    assert.is(guided.schema.minItems, 1);
    assert.is(guided.schema.maxItems, undefined);
    assert.equal(
      res.tool_calls.map((c) => [c.function.name, c.function.arguments]),
      [
        ['get_weather', '{"city":"Paris"}'],
        ['get_time', '{"tz":"CET"}'],
      ],
    );
    assert.is(res.content, null);
    assert.is(res.finish_reason, 'tool_calls');
    assert.equal(withoutIds(await streamed(client, { tool_choice: 'required' })), withoutIds(res));
    await whole(client, { tool_choice: 'required', parallel_tool_calls: false });
    assert.is((server.engine.requests.at(-1)!.guided as { schema: Record<string, unknown> }).schema.maxItems, 1);
  });
});

test('required: each call streams as it is written (name first, then argument fragments); the stream assembles to the whole answer', async () => {
  const note = 'bring an umbrella, "just in case", and a map of the old town';
  const out = `[{"name": "get_weather", "parameters": {"city": "Paris", "note": ${JSON.stringify(note)}}}, {"name": "get_time", "parameters": {"tz": "CET"}}, {"name": "get_weather", "parameters": {"city": "Oslo"}}]`;
  await withServer(out, null, async (client) => {
    const res = await whole(client, { tool_choice: 'required' });
    assert.equal(
      res.tool_calls.map((c) => [c.function.name, c.function.arguments]),
      [
        ['get_weather', JSON.stringify({ city: 'Paris', note })],
        ['get_time', '{"tz":"CET"}'],
        ['get_weather', '{"city":"Oslo"}'],
      ],
    );
    assert.is(res.finish_reason, 'tool_calls');
    const stream = await client.chat.completions.create({
      model: 'fake-model',
      messages,
      tools,
      temperature: 0,
      max_tokens: 500,
      stream: true,
      tool_choice: 'required',
    });
    const fragments: string[][] = [];
    const finishes: (string | null)[] = [];
    for await (const chunk of stream) {
      const choice = chunk.choices[0];
      if (!choice) continue;
      finishes.push(choice.finish_reason);
      for (const d of choice.delta.tool_calls ?? []) {
        if (d.function?.name) {
          assert.is(d.index, fragments.length, 'calls start in order');
          fragments.push([]);
        } else {
          assert.is(d.index, fragments.length - 1, 'arguments belong to the latest call');
          fragments[d.index]!.push(d.function?.arguments ?? '');
        }
      }
    }
    assert.is(fragments.length, 3);
    assert.ok(fragments[0]!.length > 20, `${fragments[0]!.length} argument fragments for the long call`);
    assert.equal(
      fragments.map((f) => f.join('')),
      res.tool_calls.map((c) => c.function.arguments),
    );
    assert.equal(
      finishes.filter((f) => f !== null),
      ['tool_calls'],
      'only the last chunk finishes',
    );
    assert.is(finishes.at(-1), 'tool_calls');
    assert.equal(withoutIds(await streamed(client, { tool_choice: 'required' })), withoutIds(res));
  });
});

test('required cut by max_tokens: the committed calls stay calls (arguments as written), finish_reason length; streamed equals whole', async () => {
  const out = '[{"name": "get_time", "parameters": {"tz": "CET"}}, {"name": "get_weather", "parameters": {"city": "Paris"}}]';
  await withServer(out, null, async (client) => {
    const res = await whole(client, { tool_choice: 'required', max_tokens: 102 });
    assert.equal(
      res.tool_calls.map((c) => [c.function.name, c.function.arguments]),
      [
        ['get_time', '{"tz":"CET"}'],
        ['get_weather', '{"city":"Pa'],
      ],
    );
    assert.is(res.finish_reason, 'length');
    assert.equal(withoutIds(await streamed(client, { tool_choice: 'required', max_tokens: 102 })), withoutIds(res));
  });
});

test('400s: a named tool not in tools, tool_choice without tools, a malformed tool, an unenforceable schema', async () => {
  await withServer(HERMES, 'hermes', async (_client, url) => {
    const post = async (body: Record<string, unknown>) => {
      const res = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ messages, max_tokens: 5, ...body }),
      });
      return { status: res.status, body: (await res.json()) as { error: { message: string; param: string | null } } };
    };
    const named = await post({ tools, tool_choice: { type: 'function', function: { name: 'nope' } } });
    assert.is(named.status, 400);
    assert.is(named.body.error.param, 'tool_choice');
    assert.match(named.body.error.message, /nope/);
    const noTools = await post({ tool_choice: 'required' });
    assert.is(noTools.status, 400);
    assert.is(noTools.body.error.param, 'tool_choice');
    const bad = await post({ tools: [{ type: 'function', function: { description: 'no name' } }] });
    assert.is(bad.status, 400);
    const badChoice = await post({ tools, tool_choice: 'sometimes' });
    assert.is(badChoice.status, 400);
    // A parameters schema the grammar cannot enforce is refused, naming tools, before anything runs.
    const unenforceable = [
      { type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { x: { type: 'string', format: 'email' } } } } },
    ];
    const strictCall = await post({ tools: unenforceable, tool_choice: 'required' });
    assert.is(strictCall.status, 400);
    assert.is(strictCall.body.error.param, 'tools');
    assert.match(strictCall.body.error.message, /format/);
  });
});

test('tools, tool_calls and tool messages reach the chat template (arguments as objects)', async () => {
  await withServer('ok', 'hermes', async (_client, url) => {
    const res = await fetch(`${url}/tokenize`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        tools,
        messages: [
          ...messages,
          {
            role: 'assistant',
            content: null,
            tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris"}' } }],
          },
          { role: 'tool', tool_call_id: 'call_1', name: 'get_weather', content: '18 C' },
        ],
      }),
    });
    assert.is(res.status, 200);
    const { tokens } = (await res.json()) as { tokens: number[] };
    // The fake codec is one token per character (offset 3) and renders kwargs (here: tools) after the prompt.
    const text = String.fromCodePoint(...tokens.filter((t) => t > 2).map((t) => t - 3));
    assert.ok(text.includes('{tools='), text);
    assert.ok(text.includes('"get_weather"'), text);
    assert.ok(text.includes('<|tool|>18 C'), text);
  });
});

test.run();
