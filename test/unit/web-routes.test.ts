// The chat page's server side, against a fake engine: GET /status (the JSON the page polls), the
// landing page at /, /chat and its assets (only the built files, gzip when accepted), and the URL
// handling of `webui <api_url>`. The page itself runs in a browser in test/e2e/chat-page.test.ts.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { apiBase } from '../../src/cli/webui.js';
import type { ServerStatus } from '../../src/protocol/types.js';
import { ROOT } from '../helpers/cli.js';
import { startFakeServer } from '../helpers/fake-engine.js';

let server: Awaited<ReturnType<typeof startFakeServer>>;
test.before(async () => {
  server = await startFakeServer({}, { apiKeys: ['k'], devices: () => ['gpu0: fake'] });
});
test.after(async () => {
  await server.close();
});

test('GET /status: model, devices, queue and KV cache, without an API key', async () => {
  const res = await fetch(`${server.url}/status`);
  assert.is(res.status, 200);
  assert.is(res.headers.get('cache-control'), 'no-store');
  const body = (await res.json()) as ServerStatus;
  assert.is(body.model, server.engine.modelName);
  assert.equal(body.devices, ['gpu0: fake']);
  assert.is(body.ready, true);
  assert.is(body.reason, null);
  assert.is(body.num_requests_running, 0);
  assert.is(body.num_requests_waiting, 0);
  assert.ok(body.kv_cache_usage >= 0 && body.kv_cache_usage <= 1);
  assert.is(body.auth_required, true);
  assert.type(body.version, 'string');
  assert.is(body.weights, null, 'no format reported: null, not a guess');
  assert.is(body.kv_cache_dtype, null);
  server.engine.format = { weights: 'awq-int4 g128', kvCacheDtype: 'int8' };
  try {
    const loaded = (await (await fetch(`${server.url}/status`)).json()) as ServerStatus;
    assert.is(loaded.weights, 'awq-int4 g128');
    assert.is(loaded.kv_cache_dtype, 'int8');
  } finally {
    server.engine.format = undefined;
  }
  const doc = (await (await fetch(`${server.url}/openapi.json`)).json()) as {
    paths: Record<string, unknown>;
    components: { schemas: Record<string, unknown> };
  };
  assert.ok(doc.paths['/status'] && doc.paths['/chat'] && doc.components.schemas.ServerStatus, '/status and /chat are in the OpenAPI document');
});

test('GET / is a landing page linking the chat, the docs, the metrics and the model list', async () => {
  const res = await fetch(`${server.url}/`, { redirect: 'manual' });
  assert.is(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /text\/html/);
  const html = await res.text();
  for (const href of ['/chat', '/docs', '/metrics', '/v1/models']) assert.ok(html.includes(`href="${href}"`), `links ${href}`);
});

test('/chat serves the built page and only its own files', async () => {
  const built = existsSync(`${ROOT}dist/web/index.html`);
  const page = await fetch(`${server.url}/chat`);
  if (built) {
    assert.is(page.status, 200);
    assert.match(await page.text(), /<script type="module" src="\/chat\/app\.js">/);
    // fetch asks for gzip and inflates it; the raw bytes show what was sent.
    const js = await fetch(`${server.url}/chat/app.js`, { headers: { 'accept-encoding': 'gzip' } });
    assert.is(js.status, 200);
    assert.match(js.headers.get('content-type') ?? '', /javascript/);
    assert.ok((await js.arrayBuffer()).byteLength > 10_000);
    const { request } = await import('node:http');
    const raw = await new Promise<{ encoding: string | undefined; body: Buffer }>((resolve, reject) => {
      request(`${server.url}/chat/app.css`, { headers: { 'accept-encoding': 'gzip' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ encoding: res.headers['content-encoding'], body: Buffer.concat(chunks) }));
      })
        .on('error', reject)
        .end();
    });
    assert.is(raw.encoding, 'gzip');
    assert.match(gunzipSync(raw.body).toString(), /#messages/);
  } else {
    assert.is(page.status, 503);
    assert.match(await page.text(), /npm run build/);
  }
  for (const path of ['/chat/index.html.gz', '/chat/..%2Fcli.js', '/chat/constructor', '/chat/nope.js']) {
    assert.is((await fetch(`${server.url}${path}`)).status, 404, path);
  }
});

test('webui <api_url>: the API base accepts a bare host, a trailing slash or /v1', () => {
  assert.is(apiBase('http://127.0.0.1:23333'), 'http://127.0.0.1:23333');
  assert.is(apiBase('http://127.0.0.1:23333/'), 'http://127.0.0.1:23333');
  assert.is(apiBase('http://127.0.0.1:23333/v1'), 'http://127.0.0.1:23333');
  assert.is(apiBase('http://10.0.0.2:23333/v1/'), 'http://10.0.0.2:23333');
  assert.is(apiBase('10.0.0.2:23333'), 'http://10.0.0.2:23333');
  assert.is(apiBase('https://llm.example/prefix/v1'), 'https://llm.example/prefix');
});

test.run();
