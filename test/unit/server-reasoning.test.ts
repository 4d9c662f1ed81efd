// Reasoning parsers (serve --reasoning-parser): recorded answers split whole and in every chunking
// (tags split across chunks), and through the server with a fake engine that writes <think>..</think>.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import OpenAI from 'openai';
import { ReasoningParser, reasoningParserFor, splitReasoning, type ReasoningParserName } from '../../src/server/reasoning/parser.js';
import { startFakeServer } from '../helpers/fake-engine.js';

// Recorded outputs: Qwen3-0.6B with enable_thinking (output opens <think> itself), DeepSeek-R1-Distill
// (the template opened <think>: output starts inside the reasoning), and answers without any reasoning.
const QWEN3 = '<think>\nThe user says hi. I should greet back.\n</think>\n\nHello! How can I help you today?';
const R1 = 'Okay, the user greets me. Keep it short.\n</think>\n\nHi there! What can I do for you?';
const R1_WITH_OPEN_TAG = '<think>\nShort.\n</think>\n\nHi.';
const PLAIN = 'Hello! <think> is just text here.';

const cases: [ReasoningParserName, string, string, string][] = [
  ['qwen3', QWEN3, '\nThe user says hi. I should greet back.\n', '\n\nHello! How can I help you today?'],
  ['qwen3', PLAIN, '', PLAIN],
  ['qwen3', '<think>never closed', 'never closed', ''],
  ['deepseek_r1', R1, 'Okay, the user greets me. Keep it short.\n', '\n\nHi there! What can I do for you?'],
  ['deepseek_r1', R1_WITH_OPEN_TAG, '\nShort.\n', '\n\nHi.'],
  ['deepseek_r1', 'all reasoning, cut off by max_tokens', 'all reasoning, cut off by max_tokens', ''],
  ['qwen3', '', '', ''],
  ['deepseek_r1', '<thi', '<thi', ''],
];

test('whole answers split into reasoning and content', () => {
  for (const [name, text, reasoning, content] of cases) {
    assert.equal(splitReasoning(new ReasoningParser(name), text), { reasoning, content }, `${name}: ${JSON.stringify(text)}`);
  }
});

test('every split into two chunks, and one character at a time, gives the same split (tags across chunks)', () => {
  for (const [name, text, reasoning, content] of cases) {
    for (let cut = 0; cut <= text.length; cut++) {
      const parser = new ReasoningParser(name);
      const parts = [parser.push(text.slice(0, cut)), parser.push(text.slice(cut)), parser.flush()];
      assert.equal(
        { reasoning: parts.map((p) => p.reasoning).join(''), content: parts.map((p) => p.content).join('') },
        { reasoning, content },
        `${name} cut at ${cut}: ${JSON.stringify(text)}`,
      );
    }
    const parser = new ReasoningParser(name);
    const parts = [...text].map((ch) => parser.push(ch));
    parts.push(parser.flush());
    assert.is(parts.map((p) => p.reasoning).join(''), reasoning);
    assert.is(parts.map((p) => p.content).join(''), content);
  }
});

test('a partial closing tag is held back, never shown as reasoning', () => {
  const parser = new ReasoningParser('qwen3');
  assert.equal(parser.push('<think>abc</th'), { reasoning: 'abc', content: '' });
  assert.equal(parser.push('ink>x'), { reasoning: '', content: 'x' });
});

test('enable_thinking false (or thinking false) turns the parser off; no parser configured: none', () => {
  assert.is(reasoningParserFor('qwen3', { enable_thinking: false }), null);
  assert.is(reasoningParserFor('deepseek_r1', { thinking: false }), null);
  assert.is(reasoningParserFor(null, {}), null);
  assert.ok(reasoningParserFor('qwen3', { enable_thinking: true }));
  assert.ok(reasoningParserFor('deepseek_r1', null));
});

const ANSWER = '<think>Pip counts stars.</think>The end.';

test('through the server: message.reasoning_content and content; streamed as delta.reasoning_content', async () => {
  const server = await startFakeServer({ story: ANSWER }, { reasoningParser: 'qwen3' });
  try {
    const client = new OpenAI({ apiKey: 'x', baseURL: `${server.url}/v1`, maxRetries: 0 });
    const res = await client.chat.completions.create({ model: 'fake-model', messages: [{ role: 'user', content: 'hi' }], temperature: 0, max_tokens: 100 });
    const message = res.choices[0]!.message as unknown as { content: string | null; reasoning_content: string | null };
    assert.is(message.reasoning_content, 'Pip counts stars.');
    assert.is(message.content, 'The end.');
    assert.is(res.choices[0]!.finish_reason, 'stop');

    const stream = await client.chat.completions.create({
      model: 'fake-model',
      messages: [{ role: 'user', content: 'hi' }],
      temperature: 0,
      max_tokens: 100,
      stream: true,
    });
    let reasoning = '';
    let content = '';
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta as { content?: string; reasoning_content?: string } | undefined;
      reasoning += delta?.reasoning_content ?? '';
      content += delta?.content ?? '';
      assert.not.ok((delta?.content ?? '').includes('<'), 'no tag leaks into content');
      assert.not.ok((delta?.reasoning_content ?? '').includes('<'), 'no tag leaks into reasoning');
    }
    assert.is(reasoning, 'Pip counts stars.');
    assert.is(content, 'The end.');

    // enable_thinking false: no parsing, the text is all content (the template would not have thought).
    const off = await client.chat.completions.create({
      model: 'fake-model',
      messages: [{ role: 'user', content: 'hi' }],
      temperature: 0,
      max_tokens: 100,
      // @ts-expect-error vLLM extension
      chat_template_kwargs: { enable_thinking: false },
    });
    assert.is(off.choices[0]!.message.content, ANSWER);
    assert.is((off.choices[0]!.message as unknown as { reasoning_content?: unknown }).reasoning_content, undefined);
  } finally {
    await server.close();
  }
});

test('deepseek_r1 through the server: the answer starts inside the reasoning', async () => {
  const server = await startFakeServer({ story: 'Think hard.</think>Done.' }, { reasoningParser: 'deepseek_r1' });
  try {
    const res = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], temperature: 0, max_tokens: 100 }),
    });
    const body = (await res.json()) as { choices: { message: { content: string; reasoning_content: string } }[] };
    assert.is(body.choices[0]!.message.reasoning_content, 'Think hard.');
    assert.is(body.choices[0]!.message.content, 'Done.');
  } finally {
    await server.close();
  }
});

test('without --reasoning-parser the think tags are plain content', async () => {
  const server = await startFakeServer({ story: ANSWER });
  try {
    const client = new OpenAI({ apiKey: 'x', baseURL: `${server.url}/v1`, maxRetries: 0 });
    const res = await client.chat.completions.create({ model: 'fake-model', messages: [{ role: 'user', content: 'hi' }], temperature: 0, max_tokens: 100 });
    assert.is(res.choices[0]!.message.content, ANSWER);
  } finally {
    await server.close();
  }
});

test.run();
