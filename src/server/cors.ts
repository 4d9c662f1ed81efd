// CORS for browser clients: allowOrigins lists exact origins, or "*" for any. Preflight (OPTIONS
// with Access-Control-Request-Method) is answered here with 204 and never reaches a route.
import type { Context, Next } from 'koa';

const ALLOWED_METHODS = 'GET, POST, OPTIONS';

export function corsMiddleware(allowOrigins: readonly string[]) {
  const any = allowOrigins.includes('*');
  const allowed = new Set(allowOrigins);
  return async (ctx: Context, next: Next): Promise<void> => {
    const origin = ctx.get('origin');
    if (!origin || (!any && !allowed.has(origin))) return next();
    ctx.set('Access-Control-Allow-Origin', any ? '*' : origin);
    if (!any) ctx.vary('Origin');
    if (ctx.method === 'OPTIONS' && ctx.get('access-control-request-method')) {
      ctx.set('Access-Control-Allow-Methods', ALLOWED_METHODS);
      ctx.set('Access-Control-Allow-Headers', ctx.get('access-control-request-headers') || 'Authorization, Content-Type');
      ctx.set('Access-Control-Max-Age', '600');
      ctx.status = 204;
      return;
    }
    ctx.set('Access-Control-Expose-Headers', 'X-Request-Id, X-Session-Id');
    return next();
  };
}
