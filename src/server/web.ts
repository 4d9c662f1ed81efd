// The built-in web chat page (/chat), the landing page (/) and GET /status, the JSON the page polls.
// The page is built by `npm run build` (scripts/build-web.mjs bundles web/ into dist/web/); every asset
// is served from here, never from a CDN, so it works on an air-gapped machine. `webui <api_url>`
// (src/cli/webui.ts) serves the same files in front of a remote server.
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Context } from 'koa';
import type { ServerStatus } from '../protocol/types.js';
import type { ServerDeps } from './generation.js';

/** The files of dist/web/ that may be requested (no path from the URL reaches the filesystem). */
const ASSETS: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'application/javascript; charset=utf-8',
  'app.css': 'text/css; charset=utf-8',
  'favicon.svg': 'image/svg+xml',
};

/** dist/web/ next to dist/server/ when compiled; from src/server/ (tsx, tests) the built copy in dist/web/. */
function findWebDir(): string | null {
  for (const rel of ['../web/', '../../dist/web/']) {
    const dir = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(`${dir}index.html`)) return dir;
  }
  return null;
}

const cache = new Map<string, { raw: Buffer; gzip: Buffer | null }>();
let webDir: string | null | undefined;

function load(name: string): { raw: Buffer; gzip: Buffer | null } | null {
  const hit = cache.get(name);
  if (hit) return hit;
  webDir ??= findWebDir();
  if (!webDir) return null;
  const file = `${webDir}${name}`;
  if (!existsSync(file)) return null;
  const entry = { raw: readFileSync(file), gzip: existsSync(`${file}.gz`) ? readFileSync(`${file}.gz`) : null };
  cache.set(name, entry);
  return entry;
}

function send(ctx: Context, name: string): boolean {
  const type = Object.hasOwn(ASSETS, name) ? ASSETS[name] : undefined;
  if (!type) return false;
  const entry = load(name);
  if (!entry) return false;
  ctx.type = type;
  ctx.set('Cache-Control', 'no-cache');
  ctx.set('Vary', 'Accept-Encoding');
  if (entry.gzip && ctx.acceptsEncodings('gzip', 'identity') === 'gzip') {
    ctx.set('Content-Encoding', 'gzip');
    ctx.body = entry.gzip;
  } else {
    ctx.body = entry.raw;
  }
  return true;
}

/** GET /chat: the page; 503 with the fix when dist/web/ was not built. */
export function chatPageRoute(ctx: Context): void {
  if (send(ctx, 'index.html')) return;
  ctx.status = 503;
  ctx.type = 'text/plain; charset=utf-8';
  ctx.body = 'the chat page is not built: run `npm run build` (it bundles web/ into dist/web/)\n';
}

/** GET /chat/<asset>: app.js, app.css, favicon.svg; anything else falls through to the 404 handler. */
export function chatAssetRoute(ctx: Context, name: string): void {
  send(ctx, name);
}

/** GET /: links to the chat page, the API docs, the metrics and the model list. */
export function landingRoute(ctx: Context, modelName: string): void {
  const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  ctx.type = 'text/html; charset=utf-8';
  ctx.body = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>webgpu-llm-server: ${esc(modelName)}</title>
<link rel="icon" href="/chat/favicon.svg" type="image/svg+xml">
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}li{margin:.4rem 0}code{font-size:.9em}</style>
</head>
<body>
<h1>webgpu-llm-server</h1>
<p>Serving <code>${esc(modelName)}</code>, OpenAI-compatible, at <code>/v1</code>.</p>
<ul>
<li><a href="/chat">Chat</a>: talk to the model in the browser</li>
<li><a href="/docs">API docs</a> (Swagger UI; the OpenAPI document is <a href="/openapi.json">/openapi.json</a>)</li>
<li><a href="/v1/models">Model list</a> (<code>GET /v1/models</code>)</li>
<li><a href="/metrics">Metrics</a> (Prometheus) and <a href="/status">status</a> (JSON)</li>
<li><a href="/health">Health</a></li>
</ul>
</body>
</html>
`;
}

export function statusRoute(ctx: Context, deps: ServerDeps, extra: { devices: () => string[]; authRequired: boolean; version: string }): void {
  const health = deps.engine.health();
  const stats = deps.engine.stats();
  const body: ServerStatus = {
    model: deps.modelName,
    max_model_len: deps.engine.sessionLen,
    ready: health.ready,
    reason: health.ready ? null : (health.reason ?? 'not ready'),
    devices: extra.devices(),
    num_requests_running: stats.numRunning,
    num_requests_waiting: stats.numWaiting,
    kv_cache_usage: stats.kvCacheUsage,
    num_kv_blocks: stats.numKvBlocks,
    num_free_kv_blocks: stats.numFreeKvBlocks,
    weights: deps.engine.format?.weights ?? null,
    kv_cache_dtype: deps.engine.format?.kvCacheDtype ?? null,
    auth_required: extra.authRequired,
    version: extra.version,
  };
  ctx.set('Cache-Control', 'no-store');
  ctx.body = body;
}
