// `serve`: load the model and expose the OpenAI-compatible API until SIGTERM/SIGINT, then drain.
import { Engine } from '../engine/engine.js';
import { setLogLevel, log, type LogLevel } from '../engine/log.js';
import { resolveModel } from '../model/hub.js';
import { startServer } from '../server/listen.js';
import { toEngineOptions, type EngineArgs } from './engine-options.js';

export interface ServeArgs extends EngineArgs {
  serverName: string;
  serverPort: number;
  modelName?: string;
  apiKeys: string[];
  allowOrigins: string[];
  logLevel: LogLevel;
  maxSessions: number;
  sessionIdleSeconds: number;
}

export async function runServe(args: ServeArgs): Promise<void> {
  setLogLevel(args.logLevel);
  const modelDir = await resolveModel(args.model, { revision: args.revision, progress: true });
  const modelName = args.modelName ?? (args.model.includes('/') && !args.model.startsWith('.') && !args.model.startsWith('/') ? args.model : undefined);
  const engine = await Engine.create(await toEngineOptions(args, modelDir, { modelName, progress: true }));
  const server = await startServer(engine, {
    host: args.serverName,
    port: args.serverPort,
    modelName: engine.modelName,
    apiKeys: args.apiKeys,
    allowOrigins: args.allowOrigins,
    logLevel: args.logLevel,
    maxSessions: args.maxSessions,
    sessionIdleSeconds: args.sessionIdleSeconds,
  });
  process.stdout.write(`serving ${engine.modelName} at ${server.url}/v1 (API docs: ${server.url}/docs)\n`);
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log('serve', `${signal}: draining in-flight requests`);
      void server
        .close()
        .then(() => engine.shutdown())
        .then(resolve);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  log('serve', 'stopped');
}
