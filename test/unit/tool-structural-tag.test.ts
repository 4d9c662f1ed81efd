// The structural tag for strict tools in tool_choice auto (src/server/tools/structural-tag.ts), per
// parser: triggers and tags, strict vs non-strict arguments, when the answer ends after one call, and
// that the call the grammar spells is one the same parser reads back. Through the server (fake engine):
// the grammar request the engine gets with and without strict, and the 400 for an unenforceable schema.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { StructuralTagFormat } from '../../src/engine/types.js';
import type { ToolDefinition } from '../../src/protocol/types.js';
import { extractToolCalls, TOOL_CALL_PARSERS } from '../../src/server/tools/parsers.js';
import { hasStrictTool, strictToolsFormat } from '../../src/server/tools/structural-tag.js';
import { GrammarService } from '../../src/structured/grammar-service.js';
import { grammarKey } from '../../src/structured/grammar-source.js';
import { grammarVocab } from '../../src/structured/vocab.js';
import { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { startFakeServer } from '../helpers/fake-engine.js';
import { STORIES } from '../helpers/engine.js';

const weather = { type: 'object', properties: { city: { enum: ['Paris', 'Oslo'] } }, required: ['city'], additionalProperties: false };
const tools: ToolDefinition[] = [
  { type: 'function', function: { name: 'get_weather', strict: true, parameters: weather } },
  { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: { tz: { type: 'string' } } } } },
];
const schemaOf = (t: ToolDefinition) => t.function.parameters as Record<string, unknown>;
type Triggered = Extract<StructuralTagFormat, { type: 'triggered_tags' }>;

test('hasStrictTool: only strict: true counts', () => {
  assert.ok(hasStrictTool(tools));
  assert.not.ok(hasStrictTool([tools[1]!, { type: 'function', function: { name: 'x', strict: false } }]));
});

test('per parser: tags start with a trigger, strict tools get their schema, others any object, and the parser reads the call back', () => {
  const expected: Record<string, { triggers: string[]; first: string; end: string; runsToEnd: boolean }> = {
    hermes: { triggers: ['<tool_call>'], first: '<tool_call>\n{"name": "get_weather", "arguments": ', end: '}\n</tool_call>', runsToEnd: false },
    internlm: {
      triggers: ['<|action_start|><|plugin|>'],
      first: '<|action_start|><|plugin|>\n{"name": "get_weather", "parameters": ',
      end: '}<|action_end|>',
      runsToEnd: false,
    },
    llama3_json: { triggers: ['{"name": ', '<|python_tag|>'], first: '{"name": "get_weather", "parameters": ', end: '}', runsToEnd: true },
    mistral: { triggers: ['[TOOL_CALLS]'], first: '[TOOL_CALLS][{"name": "get_weather", "arguments": ', end: '}]', runsToEnd: true },
  };
  for (const parser of TOOL_CALL_PARSERS) {
    const want = expected[parser]!;
    const format = strictToolsFormat(parser, tools, true, schemaOf) as Triggered;
    assert.is(format.type, 'triggered_tags', parser);
    assert.equal(format.triggers, want.triggers, parser);
    assert.is(format.stop_after_first, want.runsToEnd, `${parser}: one call when the region runs to the end`);
    assert.is(format.tags[0]!.begin, want.first, parser);
    for (const tag of format.tags) {
      assert.ok(
        format.triggers.some((t) => tag.begin.startsWith(t)),
        `${parser}: ${tag.begin}`,
      );
      assert.is(tag.end, want.end, parser);
      const strict = tag.begin.includes('"get_weather"');
      assert.equal(tag.content, { type: 'json_schema', json_schema: strict ? weather : { type: 'object' } }, `${parser} ${tag.begin}`);
      // The text the grammar forces, with compact or spaced arguments, is a call for the same parser.
      for (const args of ['{"city":"Oslo"}', '{"city": "Oslo"}']) {
        const text = `${tag.begin}${args}${tag.end}`;
        const read = extractToolCalls(parser, text);
        assert.is(read.content, null, `${parser}: ${text}`);
        assert.equal(
          read.calls.map((c) => [c.name, JSON.parse(c.arguments)]),
          [[strict ? 'get_weather' : 'get_time', { city: 'Oslo' }]],
          text,
        );
      }
    }
    assert.is(format.tags.length, want.triggers.length * tools.length, parser);
  }
});

test("xgrammar compiles every parser's tag: free text, then only the spelled calls, and EOS only outside a call", async () => {
  const tokenizer = await Tokenizer.fromModelDir(STORIES);
  const eos = 2;
  const service = new GrammarService(grammarVocab(STORIES, 512, [eos]));
  /** Feeds `text` token by token; 'ok' when every token and then EOS are allowed, else what was refused. */
  const walk = async (matcher: number, text: string): Promise<string> => {
    const ids = tokenizer.encode(text, { addSpecialTokens: false });
    let accept: number[] = [];
    for (const [k, id] of [...ids, eos].entries()) {
      const [r] = await service.step([{ matcher, accept }]);
      if (!r?.mask) return `error ${r?.error}`;
      if (((r.mask[id >> 5]! >>> (id & 31)) & 1) === 0)
        return `refused ${JSON.stringify(tokenizer.decode(ids.slice(0, k)))} + ${JSON.stringify(tokenizer.decode([id]))}`;
      accept = [id];
    }
    return 'ok';
  };
  try {
    for (const parser of TOOL_CALL_PARSERS) {
      const format = strictToolsFormat(parser, tools, true, schemaOf) as Triggered;
      const tag = format.tags[0]!;
      const cases: [string, boolean][] = [
        ['Just text.', true],
        [`Sure. ${tag.begin}{"city": "Oslo"}${tag.end}`, true],
        [`Sure. ${tag.begin}{"city": "Rome"}${tag.end}`, false], // not in the strict tool's enum
        [`${tag.begin}{"city": "Oslo"`, false], // EOS inside the call
        [`${tag.begin.replace('get_weather', 'get_wind')}{}${tag.end}`, false], // not a tool
      ];
      for (const [text, valid] of cases) {
        const matcher = await service.open({ type: 'structural_tag', format });
        const result = await walk(matcher, text);
        service.close(matcher);
        if (valid) assert.is(result, 'ok', `${parser}: ${text}`);
        else assert.match(result, /^refused/, `${parser}: ${text}`);
      }
    }
  } finally {
    service.destroy();
  }
});

test('the compiled grammar is cached by its text: the same tools give the same key, other tools another', () => {
  const key = (t: ToolDefinition[]) => grammarKey({ type: 'structural_tag', format: strictToolsFormat('hermes', t, true, schemaOf) });
  assert.is(key(tools), key(structuredClone(tools)));
  assert.is.not(key(tools), key([tools[0]!]));
});

test('parallel_tool_calls false: the answer ends after the first call in every format', () => {
  for (const parser of TOOL_CALL_PARSERS) assert.is((strictToolsFormat(parser, tools, false, schemaOf) as Triggered).stop_after_first, true, parser);
});

test('through the server: strict in auto sends a structural tag, non-strict sends no grammar, an unenforceable strict schema is a 400', async () => {
  const server = await startFakeServer({ story: 'Hello.', sessionLen: 4096 }, { toolCallParser: () => 'hermes' });
  try {
    const post = (body: Record<string, unknown>) =>
      fetch(`${server.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'fake-model', messages: [{ role: 'user', content: 'hi' }], max_tokens: 5, ...body }),
      });
    assert.is((await post({ tools })).status, 200);
    const guided = server.engine.requests.at(-1)!.guided as { type: string; format: Triggered };
    assert.is(guided.type, 'structural_tag');
    assert.equal(guided.format.triggers, ['<tool_call>']);
    assert.is(guided.format.stop_after_first, false);

    assert.is((await post({ tools: [tools[1]] })).status, 200);
    assert.is(server.engine.requests.at(-1)!.guided ?? null, null, 'no strict tool: free');

    const loose = { type: 'object', properties: { when: { type: 'string', format: 'date' } } };
    assert.is((await post({ tools: [{ type: 'function', function: { name: 'f', parameters: loose } }] })).status, 200, 'not strict: not checked');
    const res = await post({ tools: [{ type: 'function', function: { name: 'f', strict: true, parameters: loose } }] });
    assert.is(res.status, 400);
    const err = ((await res.json()) as { error: { param: string; message: string } }).error;
    assert.is(err.param, 'tools');
    assert.match(err.message, /"format"/);

    const both = await post({ tools, response_format: { type: 'json_object' } });
    assert.is(both.status, 400, 'one output constraint per request');
  } finally {
    await server.close();
  }
});

test.run();
