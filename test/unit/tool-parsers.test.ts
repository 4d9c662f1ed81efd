// Tool-call parsers (serve --tool-call-parser): recorded model-format answers parsed whole and in every
// chunking (tags split across stream chunks never leak into content), several calls, text around them,
// malformed JSON left as content; calls streamed as name then argument fragments once their JSON reads
// `{"name": ..., "arguments": {`; aliases and detection from chat templates. The same machine reads
// tool_choice "required"'s grammar-forced array (required_array), streamed call by call.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  assembleCalls,
  detectToolCallParser,
  extractToolCalls,
  resolveToolCallParser,
  ToolCallParser,
  type ParsedToolCall,
  type ToolCallFormatName,
  type ToolCallParserName,
} from '../../src/server/tools/parsers.js';

const weather = (city: string): ParsedToolCall => ({ name: 'get_weather', arguments: JSON.stringify({ city }) });

// Recorded answers in each model family's format (Qwen2.5-7B-Instruct, Llama-3.1-8B-Instruct,
// internlm2_5-7b-chat, Mistral-7B-Instruct-v0.3), with and without text around the calls.
const cases: [ToolCallParserName, string, string | null, ParsedToolCall[]][] = [
  ['hermes', '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>', null, [weather('Paris')]],
  [
    'hermes',
    'Let me check both cities.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>',
    'Let me check both cities.',
    [weather('Paris'), weather('Oslo')],
  ],
  ['hermes', 'Sure.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\nDone.', 'Sure.\nDone.', [weather('Paris')]],
  // Malformed JSON inside the tags before the arguments open: left as content, tags included.
  [
    'hermes',
    'A <tool_call>\n{"name": "get_weather" "arguments": {"city": "Paris"}}\n</tool_call>',
    'A <tool_call>\n{"name": "get_weather" "arguments": {"city": "Paris"}}\n</tool_call>',
    [],
  ],
  // Once `"arguments": {` is read the call is streamed, so it stays a call: a missing final brace is forgiven,
  // invalid arguments are kept as the model wrote them.
  ['hermes', 'A <tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}\n</tool_call>', 'A', [weather('Paris')]],
  ['hermes', '<tool_call>\n{"name": "get_weather", "arguments": {"city": }\n</tool_call>', null, [{ name: 'get_weather', arguments: '{"city":}' }]],
  // Arguments before the name, or as a string: not streamable, parsed whole at the end tag.
  ['hermes', '<tool_call>{"arguments": {"city": "Paris"}, "name": "get_weather"}</tool_call>', null, [weather('Paris')]],
  ['hermes', '<tool_call>{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}</tool_call>', null, [weather('Paris')]],
  // Other keys after the arguments are ignored; numbers, literals, nesting and escapes are kept as written.
  [
    'hermes',
    '<tool_call>{"name": "f", "arguments": {"n": -1.5e3, "ok": true, "x": null, "l": [1, {"a": "\\u00e9\\n"}]}, "id": 7}</tool_call>',
    null,
    [{ name: 'f', arguments: '{"n":-1.5e3,"ok":true,"x":null,"l":[1,{"a":"\\u00e9\\n"}]}' }],
  ],
  // Cut off by max_tokens before the arguments open: not a call.
  ['hermes', 'x<tool_call>\n{"name": "get_wea', 'x<tool_call>\n{"name": "get_wea', []],
  ['hermes', 'The capital of France is Paris. <tool_ is not a tag.', 'The capital of France is Paris. <tool_ is not a tag.', []],
  ['hermes', '', null, []],
  ['llama3_json', '{"name": "get_weather", "parameters": {"city": "Paris"}}', null, [weather('Paris')]],
  [
    'llama3_json',
    '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}; {"name": "get_weather", "parameters": {"city": "Oslo"}}',
    null,
    [weather('Paris'), weather('Oslo')],
  ],
  ['llama3_json', 'It is sunny in Paris {usually}.', 'It is sunny in Paris {usually}.', []],
  ['llama3_json', '  {"name": "get_weather", "parameters": ', '  {"name": "get_weather", "parameters": ', []],
  [
    'internlm',
    'I will look it up.<|action_start|><|plugin|>\n{"name": "get_weather", "parameters": {"city": "Paris"}}<|action_end|>\n',
    'I will look it up.',
    [weather('Paris')],
  ],
  ['internlm', '<|action_start|><|plugin|>\n{"name": get_weather}<|action_end|>', '<|action_start|><|plugin|>\n{"name": get_weather}<|action_end|>', []],
  [
    'mistral',
    '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_weather", "arguments": {"city": "Oslo"}}]',
    null,
    [weather('Paris'), weather('Oslo')],
  ],
  ['mistral', 'Checking. [TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}', 'Checking.', [weather('Paris')]],
  // Cut off inside the arguments: a call whose arguments are what was written (finish_reason says "length").
  ['mistral', '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": ', null, [{ name: 'get_weather', arguments: '{"city":' }]],
  ['mistral', '[TOOL_CALLS]{"name": "get_weather", "arguments": {"city": "Paris"}}', null, [weather('Paris')]],
  [
    'llama3_json',
    '{"name": "get_weather", "parameters": {"city": "Paris"}}; {"parameters": {"city": "Oslo"}, "name": "get_weather"}',
    null,
    [weather('Paris'), weather('Oslo')],
  ],
  ['mistral', 'No tools needed: 2 + 2 = 4.', 'No tools needed: 2 + 2 = 4.', []],
];

function runChunks(name: ToolCallFormatName, chunks: readonly string[]): { content: string | null; calls: ParsedToolCall[] } {
  const parser = new ToolCallParser(name);
  const parts = chunks.map((c) => parser.push(c));
  parts.push(parser.flush());
  const content = parts.map((p) => p.content).join('');
  return { content: content === '' ? null : content, calls: assembleCalls(parts.flatMap((p) => p.events)) };
}

test('whole answers: calls, content around them, malformed JSON as content', () => {
  for (const [name, text, content, calls] of cases) {
    assert.equal(extractToolCalls(name, text), { content, calls }, `${name}: ${JSON.stringify(text)}`);
  }
});

test('every split into two and three chunks, and one character at a time, gives the same answer', () => {
  for (const [name, text, content, calls] of cases) {
    const expected = { content, calls };
    for (let cut = 0; cut <= text.length; cut++) {
      assert.equal(runChunks(name, [text.slice(0, cut), text.slice(cut)]), expected, `${name} cut at ${cut}: ${JSON.stringify(text)}`);
      for (let cut2 = cut; cut2 <= text.length; cut2 += 3) {
        assert.equal(runChunks(name, [text.slice(0, cut), text.slice(cut, cut2), text.slice(cut2)]), expected, `${name} cuts ${cut},${cut2}`);
      }
    }
    assert.equal(runChunks(name, [...text]), expected, `${name} char by char: ${JSON.stringify(text)}`);
  }
});

test('a tag split across chunks never reaches content before the call is known', () => {
  for (const [name, text, , calls] of cases) {
    if (calls.length === 0) continue;
    const parser = new ToolCallParser(name);
    for (const ch of text) {
      const out = parser.push(ch);
      assert.not.ok(/<tool|<\||\[TOOL|\{"name/.test(out.content), `${name}: leaked ${JSON.stringify(out.content)}`);
    }
  }
});

test('a call streamed token by token: the name first, then its arguments in many fragments that add up', () => {
  const args = { city: 'Paris', days: 5, units: 'metric', note: 'a long note, "quoted", with \\ and unicode é' };
  for (const [name, text] of [
    ['hermes', `Checking.\n<tool_call>\n{"name": "get_weather", "arguments": ${JSON.stringify(args, null, 1)}}\n</tool_call>`],
    ['llama3_json', `{"name": "get_weather", "parameters": ${JSON.stringify(args)}}`],
    ['internlm', `<|action_start|><|plugin|>\n{"name": "get_weather", "parameters": ${JSON.stringify(args)}}<|action_end|>`],
    ['mistral', `[TOOL_CALLS][{"name": "get_weather", "arguments": ${JSON.stringify(args)}}]`],
  ] as [ToolCallParserName, string][]) {
    const parser = new ToolCallParser(name);
    const pushes = [...text.match(/[\s\S]{1,3}/g)!].map((piece) => parser.push(piece));
    pushes.push(parser.flush());
    const events = pushes.flatMap((p) => p.events);
    assert.equal(events[0], { type: 'start', name: 'get_weather' }, name);
    // The name is known before the arguments are complete: it comes out in an earlier push.
    const startPush = pushes.findIndex((p) => p.events.length > 0);
    const fragments = events.slice(1).map((e) => (e.type === 'arguments' ? e.text : assert.unreachable(name)));
    assert.ok(fragments.length > 10, `${name}: ${fragments.length} fragments`);
    assert.ok(startPush < pushes.length - 10, name);
    assert.is(fragments.join(''), JSON.stringify(args), name);
    assert.equal(extractToolCalls(name, text).calls, [{ name: 'get_weather', arguments: JSON.stringify(args) }], name);
  }
});

// Recorded: stories260K under vLLM's required-mode schema (get_weather {city, units} / get_time {tz},
// parallel calls, seeds 1 and 2 at temperature 1), as the grammar made it write them (no whitespace);
// then the same with whitespace a looser grammar allows, and one cut off by max_tokens.
const RECORDED_REQUIRED = [
  '[{"name":"get_weather","parameters":{"city":". Doggand. Badrewally was so plantey are","units":"imperial"}},{"name":"get_time","parameters":{"tz":"CET"}},{"name":"get_time","parameters":{"tz":"UTC"}}]',
  '[{"name":"get_weather","parameters":{"city":" said Lily. Her mom asked, ","units":"imperial"}},{"name":"get_weather","parameters":{"city":". Lily\'s mom packed and cut a flopper en","units":"imperial"}},{"name":"get_weather","parameters":{"city":". Lily and her mom splacked her hand on.","units":"imperial"}}]',
];
const requiredCases: [string, string | null, ParsedToolCall[]][] = [
  ...RECORDED_REQUIRED.map((text): [string, null, ParsedToolCall[]] => [
    text,
    null,
    (JSON.parse(text) as { name: string; parameters: unknown }[]).map((c) => ({ name: c.name, arguments: JSON.stringify(c.parameters) })),
  ]),
  [
    ' [\n  {"name": "get_weather", "parameters": {"city": "Paris", "units": "metric"}},\n  {"name": "get_time", "parameters": {"tz": "UTC"}}\n]\n',
    null,
    [
      { name: 'get_weather', arguments: '{"city":"Paris","units":"metric"}' },
      { name: 'get_time', arguments: '{"tz":"UTC"}' },
    ],
  ],
  // Cut by max_tokens: a committed call stays a call, its arguments as far as written (as the auto parsers do).
  [
    '[{"name":"get_time","parameters":{"tz":"UTC"}},{"name":"get_weather","parameters":{"city":"Par',
    null,
    [
      { name: 'get_time', arguments: '{"tz":"UTC"}' },
      { name: 'get_weather', arguments: '{"city":"Par' },
    ],
  ],
  // No call committed (no grammar): the text is the content.
  ['I will not call anything.', 'I will not call anything.', []],
];

test('required_array: recorded answers in every chunking (two, three, one character) give the whole answer', () => {
  for (const [text, content, calls] of requiredCases) {
    const expected = { content, calls };
    assert.equal(runChunks('required_array', [text]), expected, JSON.stringify(text));
    for (let cut = 0; cut <= text.length; cut++) {
      assert.equal(runChunks('required_array', [text.slice(0, cut), text.slice(cut)]), expected, `cut at ${cut}: ${JSON.stringify(text)}`);
      for (let cut2 = cut; cut2 <= text.length; cut2 += 7) {
        assert.equal(runChunks('required_array', [text.slice(0, cut), text.slice(cut, cut2), text.slice(cut2)]), expected, `cuts ${cut},${cut2}`);
      }
    }
    assert.equal(runChunks('required_array', [...text]), expected, `char by char: ${JSON.stringify(text)}`);
  }
});

test('required_array: each call streams its name, then its arguments in fragments, before the array closes', () => {
  const text = RECORDED_REQUIRED[1]!;
  const parser = new ToolCallParser('required_array');
  const pushes = [...text.match(/[\s\S]{1,4}/g)!].map((piece) => parser.push(piece));
  const closing = parser.flush();
  assert.equal(closing, { content: '', events: [] }, 'nothing is left for the end');
  const events = pushes.flatMap((p) => p.events);
  assert.equal(
    events.filter((e) => e.type === 'start'),
    [1, 2, 3].map(() => ({ type: 'start', name: 'get_weather' })),
  );
  const fragmentsPerCall: number[] = [];
  for (const e of events) {
    if (e.type === 'start') fragmentsPerCall.push(0);
    else fragmentsPerCall[fragmentsPerCall.length - 1]! += 1;
  }
  for (const n of fragmentsPerCall) assert.ok(n > 5, `${fragmentsPerCall} fragments per call`);
  assert.ok(pushes.findIndex((p) => p.events.length > 0) < 10, 'the first call starts within the first pushes');
});

test('LMDeploy names are aliases of vLLM parsers; unknown names are refused', () => {
  assert.is(resolveToolCallParser('qwen'), 'hermes');
  assert.is(resolveToolCallParser('qwen2d5'), 'hermes');
  assert.is(resolveToolCallParser('qwen3'), 'hermes');
  assert.is(resolveToolCallParser('llama3'), 'llama3_json');
  assert.is(resolveToolCallParser('internlm'), 'internlm');
  assert.is(resolveToolCallParser('mistral'), 'mistral');
  assert.throws(() => resolveToolCallParser('pythonic'), /unknown tool call parser/);
});

test('the parser is chosen from the chat template and architecture', () => {
  assert.is(detectToolCallParser('{% if tools %}<tool_call>{{ tools | tojson }}</tool_call>{% endif %}'), 'hermes');
  assert.is(detectToolCallParser("{{ '<|start_header_id|>ipython<|end_header_id|>' }}{% if tools %}<|python_tag|>{% endif %}"), 'llama3_json');
  assert.is(detectToolCallParser('{{ "[AVAILABLE_TOOLS]" }}[TOOL_CALLS]'), 'mistral');
  assert.is(detectToolCallParser('<|im_start|>{{ message.content }}', 'internlm2'), 'internlm');
  assert.is(detectToolCallParser('<|im_start|>{{ message.content }}'), null);
  assert.is(detectToolCallParser(null), null);
});

test.run();
