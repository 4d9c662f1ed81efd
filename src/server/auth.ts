// Bearer-token auth for /v1/*; /health, /metrics, /docs and /openapi.json stay open.
import { timingSafeEqual } from 'node:crypto';
import type { Context, Next } from 'koa';
import { ApiError } from './errors.js';

export function authMiddleware(apiKeys: readonly string[]) {
  const keys = apiKeys.filter((k) => k.length > 0).map((k) => Buffer.from(k));
  return async (ctx: Context, next: Next): Promise<void> => {
    if (keys.length === 0 || !ctx.path.startsWith('/v1/') || ctx.method === 'OPTIONS') return next();
    const match = /^Bearer\s+(.+)$/i.exec(ctx.get('authorization'));
    const given = match ? Buffer.from(match[1]!.trim()) : null;
    if (!given || !keys.some((key) => key.length === given.length && timingSafeEqual(key, given))) {
      throw new ApiError(
        401,
        'invalid_request_error',
        given ? 'the API key is not valid; send one of the keys the server was started with' : 'missing API key: send the header "Authorization: Bearer <key>"',
        null,
        'invalid_api_key',
      );
    }
    return next();
  };
}
