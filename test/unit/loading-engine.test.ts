// The server listens before the model is loaded: /health and model routes answer 503 "loading",
// then everything works once the engine is handed over; a failed load keeps 503 with the reason.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LoadingEngine } from '../../src/engine/loading-engine.js';
import { startServer } from '../../src/server/listen.js';
import { FakeEngine } from '../helpers/fake-engine.js';

async function withServer(fn: (url: string, engine: LoadingEngine) => Promise<void>) {
  const engine = new LoadingEngine('toy');
  const server = await startServer(engine, {
    host: '127.0.0.1',
    port: 0,
    modelName: 'toy',
    apiKeys: [],
    allowOrigins: [],
    logLevel: 'error',
    logSink: () => {},
  });
  try {
    await fn(server.url, engine);
  } finally {
    await server.close();
  }
}

const complete = (url: string) =>
  fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'toy', prompt: 'Once', max_tokens: 3 }),
  });

test('503 while loading, 200 once ready', async () => {
  await withServer(async (url, engine) => {
    const health = await fetch(`${url}/health`);
    assert.is(health.status, 503);
    assert.match(await health.text(), /loading/);
    const early = await complete(url);
    assert.is(early.status, 503);
    const body = (await early.json()) as { error: { message: string } };
    assert.match(body.error.message, /still loading/);
    engine.ready(new FakeEngine({}));
    assert.is((await fetch(`${url}/health`)).status, 200);
    assert.is((await complete(url)).status, 200);
  });
});

test('a failed load keeps /health at 503 with the reason', async () => {
  await withServer(async (url, engine) => {
    engine.failed('the model does not fit: weights need 9 GiB');
    const health = await fetch(`${url}/health`);
    assert.is(health.status, 503);
    assert.match(await health.text(), /does not fit/);
    assert.is((await complete(url)).status, 503);
  });
});

test.run();
