// createApp(engine, options): the Koa application of the OpenAI/LMDeploy-compatible API. Middleware
// order, outermost first: request log -> CORS -> error rendering -> auth -> routes -> 405/404.
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import Koa, { type Context, type Next } from 'koa';
import { Router } from '@koa/router';
import type { EngineClient } from '../engine/types.js';
import { buildOpenApiDocument } from '../protocol/openapi.js';
import { authMiddleware } from './auth.js';
import { DEFAULT_MAX_BODY_BYTES } from './body.js';
import { corsMiddleware } from './cors.js';
import { docsAssetRoute, docsPageRoute } from './docs.js';
import { ApiError, errorMiddleware } from './errors.js';
import { nowSeconds, type ServerDeps } from './generation.js';
import { createLogger, type Logger, type LogLevel } from '../common/log.js';
import { ServerMetrics } from './metrics.js';
import { chatCompletionsRoute } from './routes/chat.js';
import { completionsRoute } from './routes/completions.js';
import { interactiveRoute } from './routes/interactive.js';
import { encodeRoute, healthRoute, metricsRoute, modelRoute, modelsRoute } from './routes/simple.js';
import { detokenizeRoute, tokenizeRoute } from './routes/tokenize.js';
import type { ReasoningParserName } from './reasoning/parser.js';
import type { ToolCallParserName } from './tools/parsers.js';
import { SessionStore } from './sessions.js';
import { chatAssetRoute, chatPageRoute, landingRoute, statusRoute } from './web.js';

export interface ServerOptions {
  /** The name clients send as `model`; GET /v1/models lists it. */
  modelName: string;
  /** Empty: no auth. Otherwise /v1/* needs "Authorization: Bearer <one of these>". */
  apiKeys: string[];
  /** Origins allowed by CORS; ["*"] for any, [] for none. */
  allowOrigins: string[];
  /** Default 1 MiB; larger bodies get 413. */
  maxBodyBytes?: number;
  /** Interactive sessions kept at once (default 256). */
  maxSessions?: number;
  /** Interactive sessions unused this long are dropped (default 600). */
  sessionIdleSeconds?: number;
  logLevel?: LogLevel;
  /** serve --reasoning-parser: split <think>...</think> into reasoning_content (chat completions). */
  reasoningParser?: ReasoningParserName | null;
  /** The tool call parser for tool_choice auto (serve --tool-call-parser or detected once the model is loaded); absent: none. */
  toolCallParser?: () => ToolCallParserName | null;
  /** Where log lines go (default stderr); tests capture them. */
  logSink?: (line: string) => void;
  /** The GPU adapters GET /status lists (asked at each request: they are known once the model is loaded). */
  devices?: () => string[];
}

export interface AppHandle {
  app: Koa;
  /** Cancels running interactive turns and forgets all sessions. */
  close(): Promise<void>;
}

const VERSION = (() => {
  try {
    return (createRequire(import.meta.url)('../../package.json') as { version: string }).version;
  } catch {
    return '0.0.0';
  }
})();

export function createApp(engine: EngineClient, options: ServerOptions): AppHandle {
  const level = options.logLevel ?? 'info';
  const httpLog = createLogger('http', { level, sink: options.logSink });
  const deps: ServerDeps = {
    engine,
    modelName: options.modelName,
    maxBodyBytes: options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
    log: httpLog,
    metrics: new ServerMetrics(options.modelName),
    sessions: new SessionStore(
      { maxSessions: options.maxSessions ?? 256, idleSeconds: options.sessionIdleSeconds ?? 600 },
      createLogger('session', { level, sink: options.logSink }),
    ),
    createdAt: nowSeconds(),
    reasoningParser: options.reasoningParser ?? null,
    toolCallParser: options.toolCallParser ?? (() => null),
  };
  const openApi = JSON.stringify(buildOpenApiDocument({ modelName: options.modelName, version: VERSION, authRequired: options.apiKeys.length > 0 }));

  const router = new Router();
  router.get('/v1/models', (ctx) => modelsRoute(ctx, deps));
  router.get('/v1/models/*model', (ctx) => modelRoute(ctx, deps, ctx.params.model ?? '')); // ids may hold '/'
  router.post('/tokenize', (ctx) => tokenizeRoute(ctx, deps));
  router.post('/detokenize', (ctx) => detokenizeRoute(ctx, deps));
  router.post('/v1/completions', (ctx) => completionsRoute(ctx, deps));
  router.post('/v1/chat/completions', (ctx) => chatCompletionsRoute(ctx, deps));
  router.post('/v1/chat/interactive', (ctx) => interactiveRoute(ctx, deps));
  router.post('/v1/encode', (ctx) => encodeRoute(ctx, deps));
  router.get('/health', (ctx) => healthRoute(ctx, deps));
  router.get('/metrics', (ctx) => metricsRoute(ctx, deps));
  router.get('/openapi.json', (ctx) => {
    ctx.type = 'application/json';
    ctx.body = openApi;
  });
  router.get('/docs', (ctx) => docsPageRoute(ctx));
  router.get('/docs/', (ctx) => docsPageRoute(ctx));
  router.get('/docs/:asset', (ctx) => docsAssetRoute(ctx, ctx.params.asset ?? ''));
  router.get('/status', (ctx) =>
    statusRoute(ctx, deps, { devices: options.devices ?? (() => []), authRequired: options.apiKeys.length > 0, version: VERSION }),
  );
  router.get('/chat', (ctx) => chatPageRoute(ctx));
  router.get('/chat/', (ctx) => chatPageRoute(ctx));
  router.get('/chat/:asset', (ctx) => chatAssetRoute(ctx, ctx.params.asset ?? ''));
  router.get('/', (ctx) => landingRoute(ctx, options.modelName));

  const app = new Koa({ proxy: false });
  app.silent = true; // errors are rendered and logged by errorMiddleware
  app.use(requestLog(httpLog));
  app.use(corsMiddleware(options.allowOrigins));
  app.use(errorMiddleware(httpLog));
  app.use(authMiddleware(options.apiKeys));
  app.use(router.routes());
  app.use(
    router.allowedMethods({
      throw: true,
      methodNotAllowed: () => new ApiError(405, 'invalid_request_error', 'method not allowed on this path; see GET /openapi.json', null, 'method_not_allowed'),
      notImplemented: () => new ApiError(501, 'invalid_request_error', 'method not implemented', null, 'not_implemented'),
    }),
  );

  return { app, close: () => deps.sessions.close() };
}

/** Assigns the request id (X-Request-Id) and logs "METHOD path status" with req, status and seconds fields. */
function requestLog(log: Logger) {
  return async (ctx: Context, next: Next): Promise<void> => {
    const given = ctx.get('x-request-id');
    const requestId = /^[\w.-]{1,64}$/.test(given) ? given : randomBytes(4).toString('hex');
    ctx.state.requestId = requestId;
    ctx.set('X-Request-Id', requestId);
    const started = performance.now();
    try {
      await next();
    } finally {
      const fields = { req: requestId, status: ctx.status, seconds: Number(((performance.now() - started) / 1000).toFixed(3)) };
      const line = `${ctx.method} ${ctx.path} ${ctx.status}`;
      if (ctx.status >= 500) log.error(line, fields);
      else if (ctx.path === '/health' || ctx.path === '/metrics' || ctx.path === '/status' || ctx.path.startsWith('/docs/') || ctx.path.startsWith('/chat/'))
        log.debug(line, fields);
      else log.info(line, fields);
    }
  };
}
