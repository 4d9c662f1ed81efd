// startServer: createApp on a real socket, with a drain for SIGTERM: stop accepting connections,
// wait for in-flight requests (streams included) to finish, close idle keep-alive sockets, then
// release the sessions. The CLI's `serve` command wires SIGTERM/SIGINT to close().
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { EngineClient } from '../engine/types.js';
import { createApp, type ServerOptions } from './app.js';
import { createLogger } from '../common/log.js';

export interface ListenOptions extends ServerOptions {
  host: string;
  /** 0 picks a free port (tests). */
  port: number;
  /** After this long, close() cuts connections still open (default 30 s). */
  drainTimeoutMs?: number;
}

export interface RunningServer {
  /** e.g. "http://127.0.0.1:8000" */
  url: string;
  /** Stops accepting, waits for in-flight requests, then resolves. Idempotent. */
  close(): Promise<void>;
}

export async function startServer(engine: EngineClient, options: ListenOptions): Promise<RunningServer> {
  const { app, close: closeApp } = createApp(engine, options);
  const log = createLogger('http', { level: options.logLevel ?? 'info', sink: options.logSink });
  const handler = app.callback();
  let inFlight = 0;
  let draining = false;
  let onIdle: (() => void) | null = null;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    inFlight++;
    if (draining) res.setHeader('Connection', 'close');
    res.once('close', () => {
      inFlight--;
      if (inFlight === 0) onIdle?.();
    });
    void handler(req, res);
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  log.info(`listening on ${url} (model ${options.modelName})`);

  let closing: Promise<void> | null = null;
  const close = () => {
    closing ??= (async () => {
      draining = true;
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      if (inFlight > 0) {
        log.info(`draining ${inFlight} in-flight requests`);
        const idle = new Promise<void>((resolve) => {
          onIdle = resolve;
        });
        const timeout = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), options.drainTimeoutMs ?? 30_000).unref());
        if ((await Promise.race([idle, timeout])) === 'timeout') {
          log.warn(`drain timed out with ${inFlight} requests still open; closing their connections`);
          server.closeAllConnections();
        }
      }
      // Nothing is in flight now: whatever sockets remain are idle keep-alives or half-dead ones
      // left by clients that vanished, so cut them all rather than wait for their timeouts.
      server.closeAllConnections();
      await closeApp();
      await stopped;
      log.info('closed');
    })();
    return closing;
  };
  return { url, close };
}
