// Load and faults against the fake engine: concurrent streams with clients vanishing midway, and
// a barrage of malformed and hostile bodies; the server must answer 4xx and keep serving.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { STORY, startFakeServer } from '../helpers/fake-engine.js';

let server: Awaited<ReturnType<typeof startFakeServer>>;

test.before(async () => {
  server = await startFakeServer({ tokenDelayMs: 3, sessionLen: 512 }, { maxBodyBytes: 256 * 1024 });
});
test.after(async () => {
  await server.close();
});

async function readSse(res: Response, stopAfterChunks: number | null, controller: AbortController): Promise<{ text: string; done: boolean }> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let raw = '';
  let chunks = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    raw += decoder.decode(value, { stream: true });
    if (stopAfterChunks !== null && ++chunks >= stopAfterChunks) {
      controller.abort();
      return { text: '', done: false };
    }
  }
  let text = '';
  for (const frame of raw.split('\n\n').filter(Boolean)) {
    if (frame === 'data: [DONE]') continue;
    const chunk = JSON.parse(frame.slice(6)) as { choices: Array<{ text?: string; delta?: { content?: string } }> };
    for (const c of chunk.choices) text += c.text ?? c.delta?.content ?? '';
  }
  return { text, done: raw.endsWith('data: [DONE]\n\n') };
}

test('32 concurrent streams, 8 clients disconnect midway: the rest complete, nothing leaks', async () => {
  const numTokens = 80;
  const started = Date.now();
  const results = await Promise.all(
    Array.from({ length: 32 }, async (_, i) => {
      const controller = new AbortController();
      const chat = i % 2 === 0;
      const disconnects = i % 4 === 1;
      // A leaver asks for far more tokens than it will wait for: only an abort can end it in time.
      const maxTokens = disconnects ? 5000 : numTokens;
      const body = chat
        ? { messages: [{ role: 'user', content: `client ${i}` }], max_tokens: maxTokens, temperature: 0, ignore_eos: true, stream: true }
        : { prompt: `client ${i}`, max_tokens: maxTokens, temperature: 0, ignore_eos: true, stream: true };
      const res = await fetch(`${server.url}${chat ? '/v1/chat/completions' : '/v1/completions'}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      assert.is(res.status, 200);
      try {
        return { i, disconnects, ...(await readSse(res, disconnects ? 5 : null, controller)) };
      } catch (err) {
        if (disconnects) return { i, disconnects, text: '', done: false };
        throw err;
      }
    }),
  );
  const expected = STORY.repeat(2).slice(0, numTokens);
  for (const r of results) {
    if (r.disconnects) continue;
    assert.ok(r.done, `client ${r.i} got [DONE]`);
    assert.is(r.text, expected, `client ${r.i} text`);
  }
  const deadline = Date.now() + 2000;
  while (server.engine.numLive > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.is(server.engine.numLive, 0, 'no engine request left running');
  assert.is(server.engine.numAborted, 8, 'each disconnected stream was aborted in the engine (not run to the end)');
  assert.ok(Date.now() - started < 20_000);
});

/** 200 bodies that are malformed, mistyped, out of range, huge, deep, or trying prototype pollution. */
function hostileBodies(): Array<{ path: string; body: string | Uint8Array }> {
  const out: Array<{ path: string; body: string | Uint8Array }> = [];
  const paths = ['/v1/completions', '/v1/chat/completions', '/v1/chat/interactive', '/v1/encode'];
  const numeric = (...extra: unknown[]) => ['x', 1e308, -1e308, true, [], {}, '1', ...extra];
  const badByField: Record<string, unknown[]> = {
    max_tokens: numeric(0, -1, 1.5, 2 ** 60),
    temperature: numeric(-0.1, 2.01),
    top_p: numeric(0, 1.01),
    top_k: numeric(-2, 1.5),
    min_p: numeric(-0.1, 1.5),
    n: numeric(0, 17, 1.5),
    seed: numeric(1.5, 2 ** 60),
    presence_penalty: numeric(-2.5, 2.5),
    frequency_penalty: numeric(-2.5, 2.5),
    repetition_penalty: numeric(0, -1),
    logprobs: numeric(-1, 21),
    stop: [1, true, {}, [1], [''], [null], Array(17).fill('a'), '', [[]]],
  };
  for (const [field, values] of Object.entries(badByField)) {
    for (const value of values) out.push({ path: '/v1/completions', body: JSON.stringify({ prompt: 'x', [field]: value }) });
  }
  const deepArray = `${'['.repeat(10_000)}${']'.repeat(10_000)}`;
  const deepObject = `${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}`;
  const raw = [
    '',
    ' ',
    'null',
    '0',
    '"prompt"',
    '[]',
    '{',
    '{"prompt": "x"',
    '{"prompt": "x",}',
    "{'prompt': 'x'}",
    '{"prompt": NaN}',
    '{"prompt": 1e400}',
    '{"prompt": "x", "max_tokens": 1e400}',
    '\u0000\u0001',
    '<xml/>',
    'prompt=x',
    `{"prompt": ${deepArray}}`,
    `{"prompt": "x", "extra": ${deepObject}}`,
    `{"messages": ${deepArray}}`,
    deepObject,
    '{"__proto__": {"polluted": true}}',
    '{"prompt": "x", "__proto__": {"polluted": true}}',
    '{"messages": [{"role": "user", "content": "x", "__proto__": {"polluted": true}}], "max_tokens": "1"}',
    '{"constructor": {"prototype": {"polluted": true}}}',
    '{"prompt": {"constructor": {"prototype": {"polluted": true}}}}',
    `{"prompt": "x", "user": "${'u'.repeat(100_000)}"}`,
    `{"prompt": "${'p'.repeat(300_000)}"}`,
    `{"messages": [${Array(5000).fill('{"role":"user","content":"x"}').join(',')}]}`,
    '{"prompt": [-1]}',
    '{"prompt": [1.5]}',
    '{"prompt": [[]]}',
    '{"prompt": [1, "a"]}',
    '{"prompt": ["a", [1]]}',
    '{"messages": []}',
    '{"messages": [{"role": "user"}], "n": 0}',
    '{"messages": [{"content": "x"}]}',
    '{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]}',
    '{"messages": "hello"}',
    '{"messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 21}',
    '{"prompt": "x", "session_id": "one"}',
    '{"prompt": 5, "session_id": 1}',
    '{"prompt": "x", "session_id": -5}',
    '{"prompt": "x", "request_output_len": -1}',
    '{"input": 5}',
    '{"input": [1, 2]}',
    '{"input": "x", "add_bos": "yes"}',
  ];
  raw.forEach((body, k) => out.push({ path: paths[k % paths.length]!, body }));
  out.push({ path: '/v1/completions', body: new Uint8Array([0x7b, 0x22, 0x70, 0x22, 0x3a, 0x22, 0xc3, 0x28, 0x22, 0x7d]) });
  out.push({ path: '/v1/chat/completions', body: new Uint8Array([0xef, 0xbb, 0xbf, 0x7b, 0x7d]) });
  out.push({ path: '/v1/encode', body: new Uint8Array([0x7b, 0x22, 0x69, 0x6e, 0x70, 0x75, 0x74, 0x22, 0x3a, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x7d]) });
  let k = 0;
  while (out.length < 200) {
    const path = paths[k % paths.length]!;
    out.push({ path, body: JSON.stringify({ prompt: 'x', messages: [{ role: 'user', content: 'x' }], input: k, temperature: -1 - k, model: 'fake-model' }) });
    k++;
  }
  return out.slice(0, 200);
}

test('200 malformed or hostile bodies each get a 4xx, and the server keeps serving', async () => {
  const bodies = hostileBodies();
  assert.is(bodies.length, 200);
  const statuses = new Map<number, number>();
  for (let start = 0; start < bodies.length; start += 8) {
    await Promise.all(
      bodies.slice(start, start + 8).map(async ({ path, body }, j) => {
        const res = await fetch(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
        const text = await res.text();
        assert.ok(res.status >= 400 && res.status < 500, `#${start + j} ${path} ${String(body).slice(0, 80)} -> ${res.status} ${text.slice(0, 200)}`);
        const parsed = JSON.parse(text) as { error: { message: string } };
        assert.type(parsed.error.message, 'string');
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      }),
    );
  }
  assert.ok((statuses.get(400) ?? 0) > 150, `mostly 400s: ${JSON.stringify([...statuses])}`);
  assert.is(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype untouched');
  assert.is(server.engine.numLive, 0);
  const ok = await fetch(`${server.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: 'still here', max_tokens: 3, temperature: 0 }),
  });
  assert.is(ok.status, 200);
  assert.is(((await ok.json()) as { choices: Array<{ text: string }> }).choices[0]!.text, STORY.slice(0, 3));
});

test.run();
