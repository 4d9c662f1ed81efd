// /v1/chat/interactive takes the session id from the X-Session-Id request header too (what a load
// balancer hashes to keep a session on one replica, k8s/ingress.yaml): used when the body has none, a
// 400 when both are given and differ. An id the server does not know starts an empty session, which is
// what a client sees after its replica went away: history_tokens back to 0.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startFakeServer } from '../helpers/fake-engine.js';

type Reply = { text: string; tokens: number; input_tokens: number; history_tokens: number; finish_reason: string | null };
let server: Awaited<ReturnType<typeof startFakeServer>>;

test.before(async () => {
  server = await startFakeServer({ sessionLen: 256 });
});
test.after(async () => {
  await server.close();
});
test.after.each(() => {
  assert.is(server.engine.numLive, 0, 'no engine request left running');
});

const turn = (body: Record<string, unknown>, sessionHeader?: string) =>
  fetch(`${server.url}/v1/chat/interactive`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(sessionHeader === undefined ? {} : { 'x-session-id': sessionHeader }) },
    body: JSON.stringify(body),
  });
const errorOf = async (res: Response) => ((await res.json()) as { error: { message: string; type: string; param: string | null; code: string } }).error;

test('the header alone names the session: turns keep their history', async () => {
  const first = await turn({ prompt: 'Hello', interactive_mode: true, request_output_len: 4, temperature: 0 }, '7001');
  assert.is(first.status, 200);
  assert.is(first.headers.get('x-session-id'), '7001');
  const one = (await first.json()) as Reply;
  assert.is(one.history_tokens, 0);
  const second = await turn({ prompt: 'More', interactive_mode: true, request_output_len: 4, temperature: 0 }, ' 7001 ');
  const two = (await second.json()) as Reply;
  assert.is(two.history_tokens, one.input_tokens + one.tokens, 'the second turn sees the first');
  // The same id in body and header is fine.
  const third = await turn({ prompt: 'Again', session_id: 7001, interactive_mode: true, request_output_len: 2, temperature: 0 }, '7001');
  assert.is(third.status, 200);
  assert.is(((await third.json()) as Reply).history_tokens, two.history_tokens + two.input_tokens + two.tokens);
  // Ending it through the header only.
  const end = await turn({ prompt: '', interactive_mode: false, request_output_len: 0 }, '7001');
  assert.equal(await end.json(), { text: '', tokens: 0, input_tokens: 0, history_tokens: 0, finish_reason: 'stop' });
  const after = (await (await turn({ prompt: 'Hi', interactive_mode: true, request_output_len: 1 }, '7001')).json()) as Reply;
  assert.is(after.history_tokens, 0, 'ended: a new, empty session');
  await turn({ prompt: '', interactive_mode: false, request_output_len: 0 }, '7001');
});

test('body and header with different ids: 400 session_id_mismatch; a bad header: 400', async () => {
  const res = await turn({ prompt: 'x', session_id: 5, interactive_mode: true, request_output_len: 1 }, '6');
  assert.is(res.status, 400);
  const error = await errorOf(res);
  assert.is(error.type, 'invalid_request_error');
  assert.is(error.param, 'session_id');
  assert.is(error.code, 'session_id_mismatch');
  assert.match(error.message, /session_id 5 in the body differs from the X-Session-Id header 6/);
  // -1 in the body ("a new session") against a header id is a mismatch too.
  assert.is((await turn({ prompt: 'x', session_id: -1 }, '6')).status, 400);
  for (const bad of ['abc', '1.5', '-2', '9007199254740992', '0x10']) {
    const r = await turn({ prompt: 'x', request_output_len: 1 }, bad);
    assert.is(r.status, 400, `header ${bad}`);
    const e = await errorOf(r);
    assert.is(e.code, 'invalid_session_id', bad);
    assert.is(e.param, 'session_id');
  }
  assert.is(server.engine.requests.filter((r) => r.requestId?.startsWith('session-6-')).length, 0, 'nothing ran');
});

test('cancel through the header reaches the running turn', async () => {
  server.engine.tokenDelayMs = 20;
  try {
    const running = turn({ prompt: 'Go', interactive_mode: true, request_output_len: 100 }, '7002');
    await new Promise((resolve) => setTimeout(resolve, 100));
    const cancel = await turn({ prompt: '', cancel: true }, '7002');
    assert.is(cancel.status, 200);
    const res = (await (await running).json()) as Reply;
    assert.is(res.finish_reason, 'abort');
    assert.ok(res.tokens < 100);
  } finally {
    server.engine.tokenDelayMs = 1;
    await turn({ prompt: '', interactive_mode: false, request_output_len: 0 }, '7002');
  }
});

test('an id this server does not know (its replica went away) is a fresh session: history_tokens 0', async () => {
  const res = await turn({ prompt: 'Where were we?', interactive_mode: true, request_output_len: 2 }, '424242');
  assert.is(res.status, 200);
  const reply = (await res.json()) as Reply;
  assert.is(reply.history_tokens, 0);
  assert.ok(reply.input_tokens > 0);
  await turn({ prompt: '', interactive_mode: false, request_output_len: 0 }, '424242');
});

test.run();
