// `webui <api_url>`: the chat page of `serve` (/chat) in front of a server running elsewhere, like
// `lmdeploy serve gradio <api_url>`. The page talks to this process only: /v1/*, /status, /health,
// /metrics, /docs and /openapi.json are forwarded to the API server (streams included, unbuffered;
// a client that goes away aborts the upstream request, so the server frees it), so the API server
// needs no CORS setup. The page's API-key field is forwarded as the Authorization header.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import Koa, { type Context } from 'koa';
import { createLogger, setLogLevel, type LogLevel } from '../common/log.js';
import { chatAssetRoute, chatPageRoute } from '../server/web.js';

const log = createLogger('webui');

export interface WebuiArgs {
  apiUrl: string;
  serverName: string;
  serverPort: number;
  logLevel?: LogLevel;
}

export interface RunningWebui {
  url: string;
  close(): Promise<void>;
}

/** Paths forwarded to the API server; everything else is the page's own or 404. */
const FORWARDED = /^\/(v1\/|status$|health$|metrics$|openapi\.json$|docs(\/|$))/;
const REQUEST_HEADERS = ['content-type', 'authorization', 'accept', 'x-request-id'];
const RESPONSE_HEADERS = ['content-type', 'cache-control', 'x-request-id', 'x-session-id', 'retry-after', 'www-authenticate'];
const MAX_BODY_BYTES = 16 * 1024 * 1024;

/** "http://host:23333", "http://host:23333/", "http://host:23333/v1" -> "http://host:23333". */
export function apiBase(apiUrl: string): string {
  const url = new URL(/^https?:\/\//.test(apiUrl) ? apiUrl : `http://${apiUrl}`);
  url.pathname = url.pathname.replace(/\/+$/, '').replace(/\/v1$/, '');
  url.search = '';
  url.hash = '';
  return url.toString().replace(/\/+$/, '');
}

async function readBody(ctx: Context): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) ctx.throw(413, 'request body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

export function createWebuiApp(base: string): Koa {
  const app = new Koa({ proxy: false });
  app.silent = true;
  app.use(async (ctx) => {
    const path = ctx.path;
    if (ctx.method === 'GET' || ctx.method === 'HEAD') {
      if (path === '/') return ctx.redirect('/chat');
      if (path === '/chat' || path === '/chat/') return chatPageRoute(ctx);
      if (path.startsWith('/chat/')) return chatAssetRoute(ctx, path.slice('/chat/'.length));
    }
    if (!FORWARDED.test(path)) {
      ctx.status = 404;
      ctx.body = { error: { message: `no route ${ctx.method} ${path}`, type: 'invalid_request_error', param: null, code: 'not_found' } };
      return;
    }
    const controller = new AbortController();
    ctx.res.once('close', () => {
      if (!ctx.res.writableFinished) controller.abort();
    });
    const headers: Record<string, string> = {};
    for (const name of REQUEST_HEADERS) {
      const value = ctx.get(name);
      if (value) headers[name] = value;
    }
    const hasBody = ctx.method !== 'GET' && ctx.method !== 'HEAD';
    let upstream: Response;
    try {
      upstream = await fetch(`${base}${ctx.originalUrl}`, {
        method: ctx.method,
        headers,
        body: hasBody ? new Uint8Array(await readBody(ctx)) : undefined,
        signal: controller.signal,
        redirect: 'manual',
      });
    } catch (err) {
      if (controller.signal.aborted) return;
      log.warn(`${ctx.method} ${path}: ${base} unreachable: ${(err as Error).message}`);
      ctx.status = 502;
      ctx.body = {
        error: { message: `the API server ${base} is unreachable: ${(err as Error).message}`, type: 'server_error', param: null, code: 'bad_gateway' },
      };
      return;
    }
    ctx.status = upstream.status;
    for (const name of RESPONSE_HEADERS) {
      const value = upstream.headers.get(name);
      if (value) ctx.set(name, value);
    }
    const location = upstream.headers.get('location');
    if (location) ctx.set('location', location);
    if (!upstream.body) {
      ctx.body = null;
      return;
    }
    const body = Readable.fromWeb(upstream.body as import('node:stream/web').ReadableStream<Uint8Array>);
    body.once('error', () => controller.abort());
    ctx.body = body;
  });
  return app;
}

export async function startWebui(args: WebuiArgs): Promise<RunningWebui> {
  const base = apiBase(args.apiUrl);
  const app = createWebuiApp(base);
  const server = createServer(app.callback());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(args.serverPort, args.serverName, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

export async function runWebui(args: WebuiArgs): Promise<void> {
  if (args.logLevel) setLogLevel(args.logLevel);
  const webui = await startWebui(args);
  const base = apiBase(args.apiUrl);
  try {
    const res = await fetch(`${base}/health`, { signal: AbortSignal.timeout(5000) });
    if (!res.ok) log.warn(`${base}/health answered ${res.status}; the page will show the server's state`);
  } catch (err) {
    log.warn(`${base} is not reachable yet (${(err as Error).message}); the page will retry`);
  }
  process.stdout.write(`chat page for ${base} at ${webui.url}/chat\n`);
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info(`${signal}: stopping`);
      void webui.close().then(resolve);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
