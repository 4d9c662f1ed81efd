// Chat templates with tools: the hermes-style fixture renders tools, an assistant's tool_calls
// (arguments as objects) and tool results; InternLM2, whose own template renders no tools, gets the
// tool template LMDeploy and vLLM use, only for requests with tools.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ChatTemplate, INTERNLM2_TOOL_CHAT_TEMPLATE, toolChatTemplateFor, type ChatTemplateTokens } from '../../src/tokenizer/chat-template.js';
import { toChatMessages } from '../../src/server/generation.js';
import type { ChatRequestMessage } from '../../src/protocol/types.js';

const tokens: ChatTemplateTokens = { bosToken: '<s>', eosToken: '</s>', unkToken: null, padToken: null };
const tools = [
  { type: 'function', function: { name: 'get_weather', description: 'Weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } },
];
const wire: ChatRequestMessage[] = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'Weather in Paris?' },
  { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris"}' } }] },
  { role: 'tool', tool_call_id: 'call_1', name: 'get_weather', content: 'Sunny, 18 C' },
];
const messages = toChatMessages(wire);

test('wire messages keep tool_calls (arguments parsed), tool_call_id and name for the template', () => {
  assert.equal(messages[2]!.tool_calls, [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: { city: 'Paris' } } }]);
  assert.is(messages[2]!.content, '');
  assert.is(messages[3]!.tool_call_id, 'call_1');
  assert.is(messages[3]!.name, 'get_weather');
});

test('the hermes fixture renders tools, calls and tool results', () => {
  const source = readFileSync(join(process.cwd(), 'test/fixtures/chat-templates/hermes-tools.jinja'), 'utf8');
  const text = new ChatTemplate(source, true).render(messages, tokens, { kwargs: { tools } });
  assert.ok(text.startsWith('<|im_start|>system\nBe brief.\n<tools>\n{"name": "get_weather"'), text);
  assert.ok(text.includes('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'), text);
  assert.ok(text.includes('<|im_start|>user\n<tool_response>\nSunny, 18 C\n</tool_response><|im_end|>'), text);
  assert.ok(text.endsWith('<|im_start|>assistant\n'), text);
});

test("InternLM2 gets LMDeploy's tool template for requests with tools; its own otherwise", () => {
  const own =
    "{{ bos_token }}{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
  assert.is(toolChatTemplateFor(own, 'InternLM2Tokenizer'), INTERNLM2_TOOL_CHAT_TEMPLATE);
  assert.is(toolChatTemplateFor(own, 'LlamaTokenizer'), null);
  assert.is(toolChatTemplateFor('{% if tools %}{% endif %}', 'InternLM2Tokenizer'), null, 'a template that renders tools itself is kept');
  const template = new ChatTemplate(own, true, toolChatTemplateFor(own, 'InternLM2TokenizerFast'));
  const plain = template.render([{ role: 'user', content: 'hi' }], tokens);
  assert.is(plain, '<s><|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n');
  const text = template.render(messages, tokens, { kwargs: { tools } });
  assert.is(
    text,
    '<s><|im_start|>system\nBe brief.<|im_end|>\n' +
      '<|im_start|>system name=<|plugin|>\n[{"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]<|im_end|>\n' +
      '<|im_start|>user\nWeather in Paris?<|im_end|>\n' +
      '<|im_start|>assistant\n<|action_start|><|plugin|>\n{"name": "get_weather", "parameters": {"city": "Paris"}}<|action_end|><|im_end|>\n' +
      '<|im_start|>environment name=<|plugin|>\nSunny, 18 C<|im_end|>\n' +
      '<|im_start|>assistant\n',
  );
});

test.run();
