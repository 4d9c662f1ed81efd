// GET /openapi.json and the Swagger UI at /docs. The UI's assets come from the installed
// swagger-ui-dist package (served under /docs/), never from a CDN, so the docs work offline.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Context } from 'koa';

const ASSETS: Record<string, string> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'application/javascript; charset=utf-8',
  'swagger-ui-standalone-preset.js': 'application/javascript; charset=utf-8',
  'favicon-32x32.png': 'image/png',
  'favicon-16x16.png': 'image/png',
};

const assetDir = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));
const cache = new Map<string, Buffer>();

function asset(name: string): Buffer {
  let bytes = cache.get(name);
  if (!bytes) {
    bytes = readFileSync(join(assetDir, name));
    cache.set(name, bytes);
  }
  return bytes;
}

const PAGE = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>webgpu-llm-server API</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/swagger-ui-standalone-preset.js"></script>
  <script src="/docs/init.js"></script>
</body>
</html>
`;

const INIT = `window.ui = SwaggerUIBundle({
  url: '/openapi.json',
  dom_id: '#swagger-ui',
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: 'StandaloneLayout',
});
`;

export function docsPageRoute(ctx: Context): void {
  ctx.type = 'text/html; charset=utf-8';
  ctx.body = PAGE;
}

/** /docs/<asset>: only the files listed above (no paths from the URL reach the filesystem). */
export function docsAssetRoute(ctx: Context, name: string): void {
  if (name === 'init.js') {
    ctx.type = 'application/javascript; charset=utf-8';
    ctx.body = INIT;
    return;
  }
  const type = Object.hasOwn(ASSETS, name) ? ASSETS[name] : undefined; // not "constructor" & co. from the prototype
  if (!type) return; // falls through to the 404 handler
  ctx.type = type;
  ctx.set('Cache-Control', 'public, max-age=86400');
  ctx.body = asset(name);
}
