// Reads a JSON request body strictly: a JSON Content-Type (or none; another one is 415), a byte limit
// (413), UTF-8 that must be valid (400), JSON that must parse (400), bounded nesting and no "__proto__"
// keys (400). koa-body/co-body would replace invalid UTF-8 with U+FFFD silently, so the few lines live here.
import type { Context } from 'koa';
import { ApiError, invalid } from './errors.js';

export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;
/** Deeper than any real request; the walk below is iterative, so this is a policy, not a stack guard. */
export const MAX_JSON_DEPTH = 64;

export async function readJsonBody(ctx: Context, maxBytes: number): Promise<unknown> {
  checkContentType(ctx);
  const declared = Number(ctx.get('content-length') || 0);
  if (declared > maxBytes) throw tooLarge(maxBytes);
  const bytes = await readBytes(ctx, maxBytes);
  if (bytes.length === 0) throw invalid('the request body is empty; send a JSON object');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw invalid('the request body is not valid UTF-8');
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw invalid(`the request body is not valid JSON: ${(err as Error).message}`);
  }
  checkShape(value);
  return value;
}

/**
 * application/json, any application/*+json, or no Content-Type at all (read as JSON, as FastAPI does);
 * anything else, such as the form-urlencoded that `curl -d` sends without -H, is 415 (as in LMDeploy and vLLM).
 */
function checkContentType(ctx: Context): void {
  const header = ctx.get('content-type');
  if (header === '') return;
  const mediaType = header.split(';', 1)[0]!.trim().toLowerCase().slice(0, 100);
  if (mediaType === 'application/json' || /^application\/[\w.+-]+\+json$/.test(mediaType)) return;
  ctx.req.resume(); // drain the body so the 415 can still be written
  throw new ApiError(
    415,
    'invalid_request_error',
    `unsupported Content-Type "${mediaType}"; send the body as JSON with "Content-Type: application/json" (curl: -H 'content-type: application/json')`,
    null,
    'unsupported_media_type',
  );
}

function tooLarge(maxBytes: number): ApiError {
  return new ApiError(413, 'invalid_request_error', `the request body is larger than ${maxBytes} bytes; send a shorter prompt`, null, 'request_too_large');
}

function readBytes(ctx: Context, maxBytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const req = ctx.req;
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        cleanup();
        req.resume(); // drain the rest so the 413 can still be written
        reject(tooLarge(maxBytes));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks, size));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(invalid(`could not read the request body: ${err.message}`));
    };
    const onAborted = () => {
      cleanup();
      reject(invalid('the client closed the connection while sending the body'));
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
  });
}

/** Iterative walk: rejects nesting deeper than MAX_JSON_DEPTH and "__proto__" keys. */
function checkShape(root: unknown): void {
  const stack: Array<[unknown, number]> = [[root, 0]];
  while (stack.length > 0) {
    const [value, depth] = stack.pop()!;
    if (typeof value !== 'object' || value === null) continue;
    if (depth >= MAX_JSON_DEPTH) throw invalid(`the JSON body is nested deeper than ${MAX_JSON_DEPTH} levels`);
    if (Array.isArray(value)) {
      for (const item of value) if (typeof item === 'object' && item !== null) stack.push([item, depth + 1]);
      continue;
    }
    for (const key of Object.keys(value)) {
      if (key === '__proto__') throw invalid('the JSON body contains the key "__proto__", which is not allowed');
      const child = (value as Record<string, unknown>)[key];
      if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
    }
  }
}
