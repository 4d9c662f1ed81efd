// `api_client <url>` against a real `serve` on stories260K with --api-keys: one-shot --prompt and the
// stdin-driven chat print the same greedy text as /v1/chat/completions (the chat keeping its history
// client-side), and a missing key or an unreachable server is a clear error with exit 1.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createServer } from 'node:net';
import { runCli, startServe, type ServeProcess } from '../helpers/cli.js';
import { STORIES } from '../helpers/engine.js';

const KEY = 'sk-api-client-test';
const MAX_TOKENS = 16;
let server: ServeProcess;

test.before(async () => {
  server = await startServe([STORIES, '--dtype', 'f32', '--kv-cache-blocks', '64', '--model-name', 'stories260K', '--api-keys', KEY]);
});

test.after(async () => {
  const code = await server.stop();
  assert.is(code, 0, server.logs());
});

/** The reference: the server's own greedy answer to this conversation. */
async function greedyChat(messages: { role: 'user' | 'assistant'; content: string }[]): Promise<string> {
  const res = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'stories260K', messages, max_tokens: MAX_TOKENS, temperature: 0 }),
  });
  assert.is(res.status, 200, await res.clone().text());
  const body = (await res.json()) as { choices: { message: { content: string } }[] };
  return body.choices[0]!.message.content;
}

/** A port nothing listens on: bind one, then let it go. */
async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as { port: number };
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

const common = () => ['--api-key', KEY, '--max-tokens', String(MAX_TOKENS), '--temperature', '0'];

test('--prompt prints the greedy answer of /v1/chat/completions and exits 0 (URL with or without /v1)', async () => {
  const expected = await greedyChat([{ role: 'user', content: 'Once upon a time' }]);
  assert.ok(expected.trim().length > 0, 'the reference answer is empty');
  for (const url of [server.url, `${server.url}/v1/`]) {
    const r = await runCli(['api_client', url, '--prompt', 'Once upon a time', ...common()], { timeoutMs: 60_000 });
    assert.is(r.code, 0, r.stderr);
    assert.is(r.stdout, `${expected}\n`);
  }
});

test('interactive: a line from stdin gets the streamed answer, an empty line quits with exit 0', async () => {
  const r = await runCli(['api_client', server.url, ...common()], { input: 'Once upon a time\n\n', timeoutMs: 60_000 });
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stderr, /connected to .* \(model stories260K\)/);
  const answers = [...r.stdout.matchAll(/assistant> (.*)\n/g)].map((m) => m[1]!);
  assert.equal(answers, [await greedyChat([{ role: 'user', content: 'Once upon a time' }])], r.stdout);
});

test('interactive: every piped line is answered in turn, with the earlier turns as history', async () => {
  const r = await runCli(['api_client', server.url, ...common()], { input: 'Once upon a time\nThe end\n\n', timeoutMs: 60_000 });
  assert.is(r.code, 0, r.stderr);
  const answers = [...r.stdout.matchAll(/assistant> (.*)\n/g)].map((m) => m[1]!);
  assert.is(answers.length, 2, `lines that arrive while an answer streams must not be dropped:\n${r.stdout}`);
  const first = await greedyChat([{ role: 'user', content: 'Once upon a time' }]);
  const second = await greedyChat([
    { role: 'user', content: 'Once upon a time' },
    { role: 'assistant', content: first },
    { role: 'user', content: 'The end' },
  ]);
  assert.is(answers[0], first);
  assert.is(answers[1], second, 'the second turn must be answered with the first turn in its history');
  assert.ok(second.length > 0);
});

test("a missing or wrong key is the server's 401 message and exit 1", async () => {
  const missing = await runCli(['api_client', server.url, '--prompt', 'hi']);
  assert.is(missing.code, 1);
  assert.match(missing.stderr, /^error: .*401.*missing API key/m);
  const wrong = await runCli(['api_client', server.url, '--prompt', 'hi', '--api-key', 'sk-wrong']);
  assert.is(wrong.code, 1);
  assert.match(wrong.stderr, /^error: .*401.*API key is not valid/m);
  assert.is(wrong.stdout, '');
});

test('an unreachable server is a clear error naming the URL, and exit 1', async () => {
  const url = `http://127.0.0.1:${await closedPort()}`;
  const r = await runCli(['api_client', url, '--prompt', 'hi'], { timeoutMs: 30_000 });
  assert.is(r.code, 1, r.stderr);
  assert.match(r.stderr, /^error: /m);
  assert.ok(r.stderr.includes(url), `the error should name ${url}, got: ${r.stderr.trim()}`);
  assert.not.match(r.stderr, /^\s+at /m, 'no stack trace');
});

test.run();
