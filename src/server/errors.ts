// Every failure leaves the server as the OpenAI error body {"error": {message, type, param, code}}.
// Handlers throw ApiError (or let engine errors through); ONE middleware renders them, following
// Koa's status + expose contract: exposed messages go to the client, the rest become a generic 500.
import type { Context, Next } from 'koa';
import { EngineOverloadedError, EngineUnavailableError, InvalidRequestError } from '../common/errors.js';
import type { ErrorBody } from '../protocol/types.js';
import type { Logger } from '../common/log.js';

export type ApiErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'service_unavailable_error'
  | 'internal_server_error';

export class ApiError extends Error {
  readonly expose = true;
  constructor(
    readonly status: number,
    readonly type: ApiErrorType,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  toBody(): ErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** Maps anything thrown in a handler (engine errors, Koa/http-errors, bugs) to an ApiError. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof InvalidRequestError) return new ApiError(400, 'invalid_request_error', err.message, err.param ?? null);
  if (err instanceof EngineOverloadedError) return new ApiError(429, 'rate_limit_error', err.message);
  if (err instanceof EngineUnavailableError) return new ApiError(503, 'service_unavailable_error', err.message);
  const status = (err as { status?: unknown }).status;
  const expose = (err as { expose?: unknown }).expose === true;
  if (typeof status === 'number' && status >= 400 && status < 500 && expose) {
    const message = (err as Error).message;
    const type = status === 401 ? 'authentication_error' : status === 404 ? 'not_found_error' : 'invalid_request_error';
    return new ApiError(status, type, message);
  }
  return new ApiError(500, 'internal_server_error', 'internal server error; the server log has the details');
}

/** The error middleware: outermost after logging, so it sees every error of every route. */
export function errorMiddleware(log: Logger) {
  return async (ctx: Context, next: Next): Promise<void> => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined && ctx.respond !== false) {
        throw new ApiError(404, 'not_found_error', `no route for ${ctx.method} ${ctx.path}; see GET /openapi.json for the API`, null, 'not_found');
      }
    } catch (err) {
      const apiError = toApiError(err);
      if (apiError.status >= 500 && !(err instanceof EngineUnavailableError)) {
        log.error(`${ctx.method} ${ctx.path} failed`, { req: ctx.state.requestId ?? null, err: (err as Error)?.stack ?? String(err) });
      }
      if (ctx.headerSent || !ctx.writable) return; // a stream already started; sse.ts reports in-band
      ctx.status = apiError.status;
      ctx.type = 'application/json';
      ctx.body = apiError.toBody();
      if (apiError.status === 429) ctx.set('Retry-After', '1');
    }
  };
}

export const invalid = (message: string, param: string | null = null) => new ApiError(400, 'invalid_request_error', message, param);
