// LMDeploy's /v1/chat/interactive against the fake engine: history kept across turns, NDJSON
// streaming, busy refusal, cancel, ending sessions, the session-length answer, LRU and idle reaping.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { continuationText } from '../../src/server/routes/interactive.js';
import { EOS_ID, STORY, ToyCodec, startFakeServer } from '../helpers/fake-engine.js';

type Reply = { text: string; tokens: number; input_tokens: number; history_tokens: number; finish_reason: string | null };
let server: Awaited<ReturnType<typeof startFakeServer>>;

test.before(async () => {
  server = await startFakeServer({ sessionLen: 128 }, { maxSessions: 4 });
});
test.after(async () => {
  await server.close();
});
test.after.each(() => {
  server.engine.tokenDelayMs = 1;
});

const turn = (body: Record<string, unknown>) =>
  fetch(`${server.url}/v1/chat/interactive`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
const reply = async (body: Record<string, unknown>) => {
  const res = await turn(body);
  assert.is(res.status, 200, `status of ${JSON.stringify(body)}`);
  return (await res.json()) as Reply;
};
/** What lmdeploy's APIClient.chat_interactive_v1 sends: every parameter, nulls included. */
const clientPayload = (prompt: string, sessionId: number, extra: Record<string, unknown> = {}) => ({
  prompt,
  image_url: null,
  session_id: sessionId,
  interactive_mode: true,
  stream: false,
  stop: null,
  request_output_len: 8,
  top_p: 0.8,
  top_k: 40,
  temperature: 0,
  repetition_penalty: 1.0,
  ignore_eos: false,
  skip_special_tokens: true,
  adapter_name: null,
  ...extra,
});
async function waitFor(cond: () => boolean, what: string, ms = 2000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.unreachable(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('turns keep the history: history_tokens grows, only the new prompt is added', async () => {
  const codec = new ToyCodec();
  const first = await reply(clientPayload('hi', 7));
  const firstPrompt = codec.encode('<s><|user|>hi</s><|assistant|>', { addSpecialTokens: false });
  assert.equal(first, { text: STORY.slice(0, 8), tokens: 8, input_tokens: firstPrompt.length, history_tokens: 0, finish_reason: 'length' });
  const second = await reply(clientPayload('more', 7));
  assert.is(second.history_tokens, firstPrompt.length + 8);
  const added = codec.encode('</s><|user|>more</s><|assistant|>', { addSpecialTokens: false });
  assert.is(second.input_tokens, added.length, "the template's continuation: close the assistant turn, the new user turn");
  const sent = server.engine.requests.at(-1)!.promptTokenIds;
  assert.equal(sent, [...firstPrompt, ...codec.encode(STORY.slice(0, 8), { addSpecialTokens: false }), ...added]);
  const third = await reply(clientPayload('again', 7));
  assert.is(third.history_tokens, second.history_tokens + second.input_tokens + second.tokens);
});

test('stream: newline-delimited JSON (not SSE) with cumulative token counts', async () => {
  const res = await turn(clientPayload('hey', 8, { stream: true, request_output_len: 5 }));
  assert.match(res.headers.get('content-type')!, /application\/x-ndjson/);
  const text = await res.text();
  assert.not.match(text, /data:/);
  const lines = text
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as Reply);
  assert.is(lines.length, 5);
  assert.equal(
    lines.map((l) => l.tokens),
    [1, 2, 3, 4, 5],
  );
  assert.is(lines.map((l) => l.text).join(''), STORY.slice(0, 5));
  assert.is(lines.at(-1)!.finish_reason, 'length');
  assert.ok(lines.slice(0, -1).every((l) => l.finish_reason === null));
  assert.ok(lines.every((l) => l.history_tokens === 0 && l.input_tokens > 0));
});

test('a second request on a busy session is refused; cancel aborts the running turn', async () => {
  server.engine.tokenDelayMs = 10;
  const running = turn(clientPayload('long', 9, { stream: true, request_output_len: 100 }));
  await waitFor(() => server.engine.numLive === 1, 'the turn to start');
  const second = await turn(clientPayload('me too', 9));
  assert.is(second.status, 400);
  const error = ((await second.json()) as { error: { message: string; code: string; param: string } }).error;
  assert.is(error.code, 'session_busy');
  assert.is(error.param, 'session_id');
  assert.match(error.message, /session 9 is busy.*"cancel": true/);
  const cancel = await reply({ prompt: '', session_id: 9, cancel: true });
  assert.is(cancel.text, '');
  const lines = (await (await running).text())
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as Reply);
  assert.ok(lines.length < 100, 'stopped early');
  await waitFor(() => server.engine.numLive === 0, 'the engine request to be released');
  const after = await reply(clientPayload('ok', 9));
  assert.ok(after.history_tokens > 0, 'the cancelled turn stays in the history');
});

test('ending a session; interactive_mode false does not keep history', async () => {
  await reply(clientPayload('one', 10));
  assert.ok((await reply(clientPayload('two', 10))).history_tokens > 0);
  const end = await reply({ prompt: '', session_id: 10, interactive_mode: false, request_output_len: 0 });
  assert.equal(end, { text: '', tokens: 0, input_tokens: 0, history_tokens: 0, finish_reason: 'stop' });
  assert.is((await reply(clientPayload('three', 10))).history_tokens, 0, 'a fresh session');
  await reply(clientPayload('last', 10, { interactive_mode: false }));
  assert.is((await reply(clientPayload('fresh', 10))).history_tokens, 0, 'the non-interactive turn ended the session');
});

test('session_id -1 opens a new session whose id comes back in X-Session-Id', async () => {
  const res = await turn(clientPayload('new', -1));
  const id = Number(res.headers.get('x-session-id'));
  assert.ok(Number.isInteger(id) && id > 0);
  await res.json();
  assert.ok((await reply(clientPayload('next', id))).history_tokens > 0);
});

test('the session length: output capped with finish_reason length, a full session answers length', async () => {
  const first = await reply(clientPayload('x'.repeat(60), 11, { request_output_len: 1000, ignore_eos: true }));
  assert.is(first.finish_reason, 'length');
  assert.is(first.input_tokens + first.tokens, 128, 'generated up to the session length');
  const full = await reply(clientPayload('more', 11));
  assert.equal({ ...full, input_tokens: 0 }, { text: '', tokens: 0, input_tokens: 0, history_tokens: 128, finish_reason: 'length' });
});

test('sessions are bounded: the least recently used idle one is evicted', async () => {
  await reply({ prompt: '', session_id: 7, interactive_mode: false, request_output_len: 0 });
  for (const id of [21, 22, 23, 24]) await reply(clientPayload('s', id, { request_output_len: 1 }));
  await reply(clientPayload('s', 21, { request_output_len: 1 })); // 21 is now the most recent
  await reply(clientPayload('s', 25, { request_output_len: 1 })); // evicts 22
  assert.ok((await reply(clientPayload('s', 21, { request_output_len: 1 }))).history_tokens > 0, '21 kept');
  assert.is((await reply(clientPayload('s', 22, { request_output_len: 1 }))).history_tokens, 0, '22 evicted');
});

test('a client that disconnects mid-turn frees the session and the engine request', async () => {
  server.engine.tokenDelayMs = 10;
  const res = await turn(clientPayload('bye', 30, { stream: true, request_output_len: 100 }));
  const reader = res.body!.getReader();
  await reader.read();
  await reader.cancel();
  await waitFor(() => server.engine.numLive === 0, 'the engine request to be aborted');
  const next = await reply(clientPayload('back', 30, { request_output_len: 1 })); // waits for the aborted turn, no 'busy'
  assert.ok(next.history_tokens > 0, 'the session is usable again');
});

test('idle sessions are reaped', async () => {
  const quick = await startFakeServer({}, { sessionIdleSeconds: 1 });
  try {
    const post = (body: Record<string, unknown>) =>
      fetch(`${quick.url}/v1/chat/interactive`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }).then(
        (r) => r.json() as Promise<Reply>,
      );
    await post(clientPayload('a', 5, { request_output_len: 1 }));
    assert.ok((await post(clientPayload('b', 5, { request_output_len: 1 }))).history_tokens > 0);
    await new Promise((r) => setTimeout(r, 2300));
    assert.is((await post(clientPayload('c', 5, { request_output_len: 1 }))).history_tokens, 0);
  } finally {
    await quick.close();
  }
});

test('continuationText: the template delta, or the new turn alone without BOS', () => {
  const codec = new ToyCodec();
  const history = [
    { role: 'user' as const, content: 'hi' },
    { role: 'assistant' as const, content: 'yo' },
  ];
  assert.is(continuationText(codec, history, [{ role: 'user', content: 'q' }]), '</s><|user|>q</s><|assistant|>');
  const rewriting = Object.assign(Object.create(codec) as ToyCodec, {
    applyChatTemplate: (msgs: readonly { role: string; content: string }[]) => `<s>[${msgs.length}]` + msgs.map((m) => m.content).join('|'),
  });
  assert.is(continuationText(rewriting, history, [{ role: 'user', content: 'q' }]), '[1]q');
  assert.is(EOS_ID, 2);
});

test.run();
