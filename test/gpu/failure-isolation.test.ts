// Failure isolation on the real engine (stories260K) behind the real HTTP server: an exception in one
// request's own part of a step (its sampling row, its output processing) fails that request alone;
// the others produce exactly the tokens they produce alone, the KV pool empties and /health stays
// 200. Only a failure of the forward pass itself (runner.execute) takes the whole engine down.
// Failures are injected by wrapping objects the engine uses, found through its internals.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { EngineUnavailableError } from '../../src/common/errors.js';
import type { Engine } from '../../src/engine/engine.js';
import type { OutputProcessor } from '../../src/engine/output-processor.js';
import type { Request } from '../../src/scheduler/request.js';
import { startServer, type RunningServer } from '../../src/server/listen.js';
import { collect, openEngine, request } from '../helpers/engine.js';

const MAX_TOKENS = 24;
const HEALTHY = ['Once upon a time', 'The little dog ran', 'Tim and Sam went to', 'One day, a bird'];
/** The request that fails in its output processing: streamed, so the error arrives mid-stream. */
const POISON_STREAMED = 'The big red ball';
/** The same failure in a non-streaming request: the whole response is the error. */
const POISON_WHOLE = 'Lily saw a cat';

/** What the engine keeps per request (private: reached through a cast). */
interface RequestState {
  request: Request;
  output: OutputProcessor;
}

interface EngineInternals {
  states: Map<string, RequestState>;
}

class InjectedFailure extends Error {}

let engine: Engine;
let server: RunningServer;
const httpLog: string[] = [];

test.before(async () => {
  engine = await openEngine();
  server = await startServer(engine, {
    modelName: engine.modelName,
    apiKeys: [],
    allowOrigins: [],
    logLevel: 'info',
    logSink: (line) => httpLog.push(line),
    host: '127.0.0.1',
    port: 0,
  });
});

test.after(async () => {
  await server.close();
  await engine.shutdown();
});

/** Calls `poison` on the state of every request whose prompt is `promptTokenIds`, as it is admitted. */
function poisonOnAdmission(promptTokenIds: readonly number[], poison: (state: RequestState) => void): () => void {
  const states = (engine as unknown as EngineInternals).states;
  const set = states.set.bind(states);
  states.set = (id, state) => {
    if (sameIds(state.request.promptTokenIds, promptTokenIds)) poison(state);
    return set(id, state);
  };
  return () => {
    states.set = set;
  };
}

/** The prompt ids /v1/completions makes of a text prompt. */
const promptIds = (text: string) => engine.tokenizer.encode(text, { addSpecialTokens: true });
const sameIds = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((t, i) => t === b[i]);

/** Makes a request's output processing throw on its third token: two deltas reach the client first. */
function throwOnThirdToken(state: RequestState): void {
  const process = state.output.process.bind(state.output);
  let calls = 0;
  state.output.process = (...args) => {
    if (++calls === 3) throw new InjectedFailure('injected: the detokenizer broke');
    return process(...args);
  };
}

async function complete(prompt: string, extra: Record<string, unknown> = {}): Promise<Response> {
  return fetch(`${server.url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt, max_tokens: MAX_TOKENS, temperature: 0, return_token_ids: true, ...extra }),
  });
}

async function tokenIdsOf(res: Response): Promise<number[]> {
  assert.is(res.status, 200);
  const body = (await res.json()) as { choices: { token_ids: number[]; finish_reason: string }[] };
  return body.choices[0]!.token_ids;
}

/** The data payloads of an SSE response, [DONE] included. */
async function events(res: Response): Promise<string[]> {
  const text = await res.text();
  return text
    .split('\n\n')
    .filter((frame) => frame.startsWith('data: '))
    .map((frame) => frame.slice('data: '.length));
}

async function assertDrained(): Promise<void> {
  await engine.whenIdle();
  const s = engine.stats();
  assert.is(s.numRunning, 0, 'no request left running');
  assert.is(s.numWaiting, 0, 'no request left waiting');
  // Blocks kept only by the prefix cache are free (evictable); used means held by a live request.
  assert.is(s.numFreeKvBlocks, s.numKvBlocks, 'every KV block is free again');
  assert.is(s.kvCacheUsage, 0);
  assert.is((engine as unknown as EngineInternals).states.size, 0);
}

async function assertHealthy(): Promise<void> {
  const health = await fetch(`${server.url}/health`);
  assert.is(health.status, 200);
  assert.equal(await health.json(), { status: 'ok' });
  assert.ok(engine.health().ready);
}

test('a request whose output processing throws fails alone; concurrent requests are unaffected', async () => {
  const alone: number[][] = [];
  for (const prompt of HEALTHY) alone.push(await tokenIdsOf(await complete(prompt)));
  const restoreStreamed = poisonOnAdmission(promptIds(POISON_STREAMED), throwOnThirdToken);
  const restoreWhole = poisonOnAdmission(promptIds(POISON_WHOLE), throwOnThirdToken);
  try {
    const [streamed, whole, ...healthy] = await Promise.all([
      complete(POISON_STREAMED, { stream: true }),
      complete(POISON_WHOLE),
      ...HEALTHY.map((prompt, i) => (i % 2 === 0 ? complete(prompt) : complete(prompt, { stream: true }))),
    ]);

    // Streamed: the first two tokens arrived, then an in-band OpenAI error, then the end of the stream.
    assert.is(streamed!.status, 200);
    const frames = await events(streamed!);
    assert.is(frames.at(-1), '[DONE]');
    const payloads = frames.slice(0, -1).map((f) => JSON.parse(f) as { choices?: { token_ids: number[] }[]; error?: { type: string } });
    const error = payloads.at(-1)!.error;
    assert.is(error?.type, 'internal_server_error', `got ${frames.at(-2)}`);
    assert.is(payloads.flatMap((p) => p.choices?.flatMap((c) => c.token_ids) ?? []).length, 2, 'two tokens before the failure');

    // Not streamed: a 500 with the OpenAI error body.
    assert.is(whole!.status, 500);
    assert.is(((await whole!.json()) as { error: { type: string } }).error.type, 'internal_server_error');

    // Everyone else: exactly the tokens they get alone.
    for (let i = 0; i < HEALTHY.length; i++) {
      const res = healthy[i]!;
      if (i % 2 === 0) {
        assert.equal(await tokenIdsOf(res), alone[i], HEALTHY[i]);
        continue;
      }
      const chunks = (await events(res)).slice(0, -1).map((f) => JSON.parse(f) as { choices: { token_ids: number[]; finish_reason: string | null }[] });
      assert.equal(
        chunks.flatMap((c) => c.choices.flatMap((choice) => choice.token_ids)),
        alone[i],
        `${HEALTHY[i]} (streamed)`,
      );
      assert.is(chunks.at(-1)!.choices[0]!.finish_reason, 'length');
    }
  } finally {
    restoreStreamed();
    restoreWhole();
  }
  await assertDrained();
  await assertHealthy();
  // The engine goes on serving, the once-poisoned prompt included.
  assert.equal(await tokenIdsOf(await complete(HEALTHY[0]!)), alone[0]);
  assert.is((await tokenIdsOf(await complete(POISON_WHOLE))).length, MAX_TOKENS);
  await assertDrained();
});

test('a request whose sampling row cannot be built fails alone and is dropped from the step', async () => {
  const prompts = [
    [1, 400, 401],
    [1, 402],
    [1, 403, 404, 405],
  ];
  const alone: number[][] = [];
  for (const p of prompts) alone.push((await collect(engine.generate(request(p, { maxTokens: MAX_TOKENS })))).tokenIds);
  const poisoned = collect(engine.generate(request([1, 406, 407], { requestId: 'poisoned', maxTokens: MAX_TOKENS })));
  // Reading the request's sampling parameters (to build its row) throws once it has three tokens.
  const victim = engine.scheduler.getRequest('poisoned')!;
  const sampling = victim.sampling;
  Object.defineProperty(victim, 'sampling', {
    get() {
      if (victim.outputTokenIds.length >= 3) throw new InjectedFailure('injected: bad sampling parameters');
      return sampling;
    },
  });
  const others = prompts.map((p) => collect(engine.generate(request(p, { maxTokens: MAX_TOKENS }))));
  const failure = await poisoned.then(
    () => null,
    (err: unknown) => err,
  );
  assert.instance(failure, InjectedFailure);
  assert.equal(
    (await Promise.all(others)).map((c) => c.tokenIds),
    alone,
  );
  await assertDrained();
  await assertHealthy();
});

// Last: it takes the engine down for good.
test('a failed forward pass (runner.execute throwing) fails every request and turns /health to 503', async () => {
  const execute = engine.runner.execute.bind(engine.runner);
  let steps = 0;
  engine.runner.execute = (...args) => (++steps === 3 ? Promise.reject(new Error('injected: queue submit failed')) : execute(...args));
  const running = [
    [1, 500],
    [1, 501, 502],
  ].map((p) =>
    collect(engine.generate(request(p, { maxTokens: MAX_TOKENS }))).then(
      () => null,
      (err: unknown) => err,
    ),
  );
  for (const err of await Promise.all(running)) {
    assert.instance(err, EngineUnavailableError);
    assert.match((err as Error).message, /queue submit failed/);
  }
  assert.not.ok(engine.health().ready);
  const health = await fetch(`${server.url}/health`);
  assert.is(health.status, 503);
  assert.match(((await health.json()) as { reason: string }).reason, /queue submit failed/);
  const refused = await complete(HEALTHY[0]!);
  assert.is(refused.status, 503);
  assert.throws(
    () => engine.generate(request([1])),
    (e: unknown) => e instanceof EngineUnavailableError,
  );
  const s = engine.stats();
  assert.is(s.numRunning + s.numWaiting, 0);
  assert.is(s.numFreeKvBlocks, s.numKvBlocks, 'the failed requests released their blocks');
});

test.run();
