// startServer's drain: close() stops accepting, lets in-flight streams finish, then resolves.
// Also the multi-choice stream merge (n > 1) seen over the wire.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { EngineUnavailableError } from '../../src/common/errors.js';
import { STORY, startFakeServer } from '../helpers/fake-engine.js';

test('close() waits for an in-flight stream, which completes intact; new connections are refused', async () => {
  const server = await startFakeServer({ tokenDelayMs: 10 });
  const res = await fetch(`${server.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: 'x', max_tokens: 30, temperature: 0, stream: true }),
  });
  const body = res.text();
  await new Promise((r) => setTimeout(r, 50));
  let closed = false;
  const closing = server.close().then(() => {
    closed = true;
  });
  await new Promise((r) => setTimeout(r, 20));
  assert.not.ok(closed, 'still draining while the stream runs');
  const refused = await fetch(`${server.url}/health`).then(
    () => false,
    () => true,
  );
  assert.ok(refused, 'no new connections while draining');
  const text = await body;
  await closing;
  assert.ok(text.endsWith('data: [DONE]\n\n'));
  const joined = text
    .split('\n\n')
    .filter((f) => f.startsWith('data: {'))
    .map((f) => (JSON.parse(f.slice(6)) as { choices: Array<{ text: string }> }).choices[0]!.text)
    .join('');
  assert.is(joined, STORY.slice(0, 30));
  assert.is(server.engine.numLive, 0);
});

test('n = 3 chat stream: each choice opens with role, deltas interleave, seeds are seed + i', async () => {
  const server = await startFakeServer({ tokenDelayMs: 2 });
  try {
    const res = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'x' }], n: 3, seed: 10, max_tokens: 6, stream: true, stop_token_ids: [] }),
    });
    const frames = (await res.text()).split('\n\n').filter((f) => f.startsWith('data: {'));
    const chunks = frames.map(
      (f) => JSON.parse(f.slice(6)) as { choices: Array<{ index: number; delta: { role?: string; content?: string }; finish_reason: string | null }> },
    );
    const texts = ['', '', ''];
    const sawRole = [false, false, false];
    for (const c of chunks) {
      const choice = c.choices[0]!;
      if (choice.delta.role) {
        assert.not.ok(texts[choice.index], 'role comes before any content');
        sawRole[choice.index] = true;
      }
      texts[choice.index] += choice.delta.content ?? '';
    }
    assert.equal(sawRole, [true, true, true]);
    assert.equal(texts, [STORY.slice(10, 16), STORY.slice(11, 17), STORY.slice(12, 18)]);
    assert.equal(
      server.engine.requests.map((r) => r.sampling.seed),
      [10, 11, 12],
    );
  } finally {
    await server.close();
  }
});

test('stop_token_ids end generation on that token', async () => {
  const server = await startFakeServer();
  try {
    const stopId = 'u'.codePointAt(0)! + 3; // the toy codec's id for 'u' ("Once upon")
    const res = await fetch(`${server.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'x', max_tokens: 30, temperature: 0, stop_token_ids: [stopId] }),
    });
    const body = (await res.json()) as { choices: Array<{ text: string; finish_reason: string }> };
    assert.is(body.choices[0]!.text, 'Once ');
    assert.is(body.choices[0]!.finish_reason, 'stop');
  } finally {
    await server.close();
  }
});

test('an engine failure mid-stream is reported in-band, then [DONE]; the HTTP status was already 200', async () => {
  const server = await startFakeServer();
  try {
    server.engine.failMidStream = new EngineUnavailableError('the GPU was lost');
    const res = await fetch(`${server.url}/v1/chat/completions`, {
      // Greedy: a random seed could start the fake story near its end and finish before the failure.
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'x' }], max_tokens: 10, stream: true, temperature: 0 }),
    });
    assert.is(res.status, 200);
    const frames = (await res.text()).split('\n\n').filter(Boolean);
    assert.is(frames.at(-1), 'data: [DONE]');
    const error = JSON.parse(frames.at(-2)!.slice(6)) as { error: { message: string; type: string } };
    assert.match(error.error.message, /GPU was lost/);
    assert.is(error.error.type, 'service_unavailable_error');
    assert.is(server.engine.numLive, 0);
  } finally {
    await server.close();
  }
});

test('a non-streaming client that disconnects aborts its engine requests', async () => {
  const server = await startFakeServer({ tokenDelayMs: 5 });
  try {
    const controller = new AbortController();
    const pending = fetch(`${server.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'x', n: 2, max_tokens: 200, ignore_eos: true }),
      signal: controller.signal,
    }).catch(() => null);
    await new Promise((r) => setTimeout(r, 60));
    assert.is(server.engine.numLive, 2);
    controller.abort();
    await pending;
    const deadline = Date.now() + 1000;
    while (server.engine.numLive > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    assert.is(server.engine.numLive, 0);
    assert.is(server.engine.numAborted, 2);
  } finally {
    await server.close();
  }
});

test.run();
