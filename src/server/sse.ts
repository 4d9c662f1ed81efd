// The one place that writes streamed responses: server-sent events for the OpenAI routes and
// newline-delimited JSON for LMDeploy's /v1/chat/interactive. Koa's own response handling is
// switched off (ctx.respond = false) so each event reaches the socket the moment it is written.
import { setMaxListeners } from 'node:events';
import type { Context } from 'koa';

export interface StreamWriter {
  /** False once the client has gone away; writes after that are dropped. */
  readonly open: boolean;
  /** Writes one event and waits while the socket's buffer is full (backpressure). */
  send(payload: unknown): Promise<void>;
  /** Ends the stream (SSE: after "data: [DONE]"). */
  end(): void;
}

type Framing = 'sse' | 'ndjson';

const CONTENT_TYPE: Record<Framing, string> = {
  sse: 'text/event-stream; charset=utf-8',
  ndjson: 'application/x-ndjson; charset=utf-8',
};

/** An AbortSignal that fires when the client disconnects before the response is complete. */
export function disconnectSignal(ctx: Context): AbortSignal {
  const controller = new AbortController();
  setMaxListeners(256, controller.signal); // one listener per choice (n) and per engine stage
  const res = ctx.res;
  const onClose = () => {
    if (!res.writableFinished) controller.abort(new Error('client disconnected'));
  };
  res.once('close', onClose);
  return controller.signal;
}

export function openEventStream(ctx: Context, framing: Framing, extraHeaders: Record<string, string> = {}): StreamWriter {
  const res = ctx.res;
  ctx.respond = false;
  ctx.status = 200;
  res.statusCode = 200;
  res.setHeader('Content-Type', CONTENT_TYPE[framing]);
  res.setHeader('Cache-Control', 'no-cache');
  res.setHeader('Connection', 'keep-alive');
  res.setHeader('X-Accel-Buffering', 'no');
  for (const [name, value] of Object.entries(extraHeaders)) res.setHeader(name, value);
  res.flushHeaders();
  ctx.req.socket.setNoDelay(true);
  let open = true;
  res.once('close', () => {
    open = false;
  });
  const frame = (payload: unknown) => (framing === 'sse' ? `data: ${JSON.stringify(payload)}\n\n` : `${JSON.stringify(payload)}\n`);

  return {
    get open() {
      return open && !res.destroyed;
    },
    async send(payload: unknown): Promise<void> {
      if (!open || res.destroyed) return;
      if (res.write(frame(payload))) return;
      await new Promise<void>((resolve) => {
        const done = () => {
          res.off('drain', done);
          res.off('close', done);
          resolve();
        };
        res.once('drain', done);
        res.once('close', done);
      });
    },
    end(): void {
      if (!open || res.destroyed) return;
      if (framing === 'sse') res.write('data: [DONE]\n\n');
      res.end();
    },
  };
}
