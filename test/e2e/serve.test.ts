// The real `serve` command on stories260K, called through the official openai client and raw HTTP:
// exact greedy text, streaming, concurrency with disconnects (the KV pool returns to empty), interactive
// sessions against the chat endpoint, tensor parallelism with --devices 0,0, and SIGTERM drain.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import OpenAI from 'openai';
import { startServe, type ServeProcess } from '../helpers/cli.js';
import { PUBLISHED_GREEDY_TEXT, STORIES } from '../helpers/engine.js';

let server: ServeProcess;
let client: OpenAI;

test.before(async () => {
  server = await startServe([STORIES, '--dtype', 'f32', '--kv-cache-blocks', '64', '--block-size', '16', '--max-batch-size', '16', '--model-name', 'stories']);
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});

test.after(async () => {
  const code = await server.stop();
  assert.is(code, 0, server.logs());
});

async function gauge(name: string): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
  if (!line) throw new Error(`metric ${name} missing`);
  return Number(line.trim().split(/\s+/).pop());
}

test('models.list names the served model', async () => {
  const models = await client.models.list();
  assert.is(models.data[0]!.id, 'stories');
});

test('completions: greedy from an empty prompt is the published text; usage is reported', async () => {
  const res = await client.completions.create({ model: 'stories', prompt: '', max_tokens: 64, temperature: 0 });
  assert.ok(res.choices[0]!.text.startsWith(PUBLISHED_GREEDY_TEXT), res.choices[0]!.text);
  assert.is(res.usage!.prompt_tokens, 1);
  assert.is(res.usage!.completion_tokens, 64);
  assert.is(res.choices[0]!.finish_reason, 'length');
});

test('chat.completions with and without stream agree', async () => {
  const messages = [{ role: 'user' as const, content: 'Once upon a time' }];
  const full = await client.chat.completions.create({ model: 'stories', messages, max_tokens: 24, temperature: 0 });
  const stream = await client.chat.completions.create({
    model: 'stories',
    messages,
    max_tokens: 24,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let usageSeen = false;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? '';
    if (chunk.usage) usageSeen = true;
  }
  assert.ok(full.choices[0]!.message.content!.length > 0);
  assert.is(text, full.choices[0]!.message.content);
  assert.ok(usageSeen);
});

test("errors arrive as the client's error classes", async () => {
  try {
    await client.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'x' }] });
    assert.unreachable();
  } catch (err) {
    assert.instance(err, OpenAI.NotFoundError);
  }
  try {
    await client.completions.create({ model: 'stories', prompt: 'x', temperature: -3 });
    assert.unreachable();
  } catch (err) {
    assert.instance(err, OpenAI.BadRequestError);
  }
  const long = 'Once upon a time '.repeat(200);
  try {
    await client.completions.create({ model: 'stories', prompt: long, max_tokens: 4 });
    assert.unreachable();
  } catch (err) {
    assert.instance(err, OpenAI.BadRequestError);
    assert.match((err as Error).message, /session length is 512/);
  }
});

test('32 concurrent streams with 8 clients disconnecting: the rest complete and the KV pool empties', async () => {
  const prompts = Array.from({ length: 32 }, (_, i) => `Once upon a time, number ${i}`);
  const results = await Promise.all(
    prompts.map(async (prompt, i) => {
      const controller = new AbortController();
      const stream = await client.completions.create({ model: 'stories', prompt, max_tokens: 24, temperature: 0, stream: true }, { signal: controller.signal });
      let text = '';
      let chunks = 0;
      let finish: string | null = null;
      let aborted = false;
      try {
        for await (const chunk of stream) {
          text += chunk.choices[0]?.text ?? '';
          finish = chunk.choices[0]?.finish_reason ?? finish;
          if (i % 4 === 0 && ++chunks === 3) {
            aborted = true;
            controller.abort();
          }
        }
      } catch (err) {
        if (!aborted) throw err;
      }
      return { i, aborted, text, finish };
    }),
  );
  for (const r of results.filter((r) => !r.aborted)) {
    assert.is(r.finish, 'length', `stream ${r.i}`);
    assert.ok(r.text.length > 0);
  }
  assert.is(results.filter((r) => r.aborted).length, 8);
  // The aborted requests' blocks are freed as soon as the server notices the disconnect.
  for (let i = 0; i < 50 && (await gauge('vllm:num_requests_running')) > 0; i++) await new Promise((r) => setTimeout(r, 100));
  assert.is(await gauge('vllm:num_requests_running'), 0);
  assert.is(await gauge('vllm:gpu_cache_usage_perc'), 0);
});

test('interactive sessions keep history server-side: same text as sending the whole history', async () => {
  const post = async (body: object) =>
    (
      await fetch(`${server.url}/v1/chat/interactive`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    ).json() as Promise<{
      text: string;
      history_tokens: number;
      finish_reason: string;
    }>;
  const first = await post({ session_id: 77, prompt: 'Once upon a time', interactive_mode: true, request_output_len: 12, temperature: 0 });
  const second = await post({ session_id: 77, prompt: 'The end', interactive_mode: true, request_output_len: 12, temperature: 0 });
  assert.ok(second.history_tokens > 0);
  const chat = await client.chat.completions.create({
    model: 'stories',
    max_tokens: 12,
    temperature: 0,
    messages: [
      { role: 'user', content: 'Once upon a time' },
      { role: 'assistant', content: first.text },
      { role: 'user', content: 'The end' },
    ],
  });
  assert.is(second.text, chat.choices[0]!.message.content);
  const end = await post({ session_id: 77, prompt: '', interactive_mode: false, request_output_len: 0 });
  assert.ok(end);
});

test.run();
