// Request bodies over raw HTTP/1.1 (node:net, so the exact bytes and headers are what a client sends):
// a Content-Type other than JSON is 415 on every POST route, JSON variants and a missing Content-Type
// are read, and the body limit (ServerOptions.maxBodyBytes, `serve --max-body-size`) is exact.
import { connect } from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startFakeServer } from '../helpers/fake-engine.js';

let server: Awaited<ReturnType<typeof startFakeServer>>;
test.before(async () => {
  server = await startFakeServer({}, { maxBodyBytes: 200 });
});
test.after(async () => {
  await server.close();
});

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Writes each request's bytes on one keep-alive connection, in turn, and reads each response. */
async function raw(requests: Array<{ path: string; contentType?: string; body: string }>): Promise<RawResponse[]> {
  const { port, hostname } = new URL(server.url);
  const socket = connect(Number(port), hostname);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let buffer = Buffer.alloc(0);
  let wake: (() => void) | null = null;
  socket.on('data', (chunk: Buffer) => {
    buffer = Buffer.concat([buffer, chunk]);
    wake?.();
  });
  const more = () => new Promise<void>((resolve) => (wake = resolve));
  const responses: RawResponse[] = [];
  try {
    for (const r of requests) {
      const body = Buffer.from(r.body);
      const head = [`POST ${r.path} HTTP/1.1`, `Host: ${hostname}`, `Content-Length: ${body.length}`];
      if (r.contentType !== undefined) head.push(`Content-Type: ${r.contentType}`);
      socket.write(Buffer.concat([Buffer.from(`${head.join('\r\n')}\r\n\r\n`), body]));
      for (;;) {
        const end = buffer.indexOf('\r\n\r\n');
        if (end >= 0) {
          const [statusLine, ...lines] = buffer.subarray(0, end).toString('latin1').split('\r\n');
          const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
          const length = Number(headers['content-length']);
          assert.ok(Number.isInteger(length), `Content-Length on ${statusLine}`);
          if (buffer.length >= end + 4 + length) {
            responses.push({ status: Number(statusLine!.split(' ')[1]), headers, body: buffer.subarray(end + 4, end + 4 + length).toString('utf8') });
            buffer = buffer.subarray(end + 4 + length);
            break;
          }
        }
        await more();
      }
    }
  } finally {
    socket.destroy();
  }
  return responses;
}

const COMPLETION = JSON.stringify({ prompt: 'ab', max_tokens: 2, temperature: 0 });

test('415 for non-JSON content types on every POST route, with the OpenAI error body', async () => {
  const bodies: Record<string, string> = {
    '/v1/completions': COMPLETION,
    '/v1/chat/completions': JSON.stringify({ messages: [{ role: 'user', content: 'a' }], max_tokens: 2 }),
    '/v1/chat/interactive': JSON.stringify({ prompt: 'a', request_output_len: 2 }),
    '/v1/encode': JSON.stringify({ input: 'a' }),
  };
  for (const [path, body] of Object.entries(bodies)) {
    for (const contentType of ['application/x-www-form-urlencoded', 'text/plain; charset=utf-8', 'multipart/form-data; boundary=x', 'application/xml']) {
      const [res] = await raw([{ path, contentType, body }]);
      assert.is(res!.status, 415, `${path} ${contentType}`);
      assert.match(res!.headers['content-type']!, /^application\/json/);
      const { error } = JSON.parse(res!.body) as { error: Record<string, unknown> };
      assert.equal(Object.keys(error).sort(), ['code', 'message', 'param', 'type']);
      assert.is(error.type, 'invalid_request_error');
      assert.is(error.param, null);
      assert.is(error.code, 'unsupported_media_type');
      assert.match(String(error.message), new RegExp(`unsupported Content-Type "${contentType.split(';')[0]}".*application/json`));
    }
  }
});

test('JSON content types, with parameters or any case, and a missing Content-Type are read', async () => {
  for (const contentType of ['application/json', 'application/json; charset=utf-8', 'Application/JSON', 'application/vnd.api+json', undefined]) {
    const [res] = await raw([{ path: '/v1/completions', contentType, body: COMPLETION }]);
    assert.is(res!.status, 200, `Content-Type ${contentType}`);
    assert.is((JSON.parse(res!.body) as { object: string }).object, 'text_completion');
  }
});

test('a 415 leaves the connection usable: the refused body is drained', async () => {
  const [refused, next] = await raw([
    { path: '/v1/completions', contentType: 'text/plain', body: `{"prompt":"${'x'.repeat(150)}"}` },
    { path: '/v1/completions', contentType: 'application/json', body: COMPLETION },
  ]);
  assert.is(refused!.status, 415);
  assert.is(next!.status, 200);
});

test('the body limit is exact: maxBodyBytes passes, one byte more is 413', async () => {
  const sized = (n: number) => {
    const base = JSON.stringify({ prompt: 'ab', max_tokens: 1, user: '' });
    return JSON.stringify({ prompt: 'ab', max_tokens: 1, user: 'u'.repeat(n - base.length) });
  };
  assert.is(Buffer.byteLength(sized(200)), 200);
  const [fits] = await raw([{ path: '/v1/completions', contentType: 'application/json', body: sized(200) }]);
  assert.is(fits!.status, 200);
  const [over] = await raw([{ path: '/v1/completions', contentType: 'application/json', body: sized(201) }]);
  assert.is(over!.status, 413);
  const { error } = JSON.parse(over!.body) as { error: Record<string, unknown> };
  assert.is(error.code, 'request_too_large');
  assert.match(String(error.message), /larger than 200 bytes/);
});

test.run();
