// `serve`: load the model and expose the OpenAI-compatible API until SIGTERM/SIGINT, then drain.
import { existsSync } from 'node:fs';
import { basename } from 'node:path';
import { Engine } from '../engine/engine.js';
import { LoadingEngine } from '../engine/loading-engine.js';
import { createLogger, setLogLevel, type LogLevel } from '../common/log.js';

const log = createLogger('serve');
import { resolveModel } from '../hub/hub.js';
import { parseBytes } from '../common/bytes.js';
import { startServer } from '../server/listen.js';
import type { ReasoningParserName } from '../server/reasoning/parser.js';
import { detectToolCallParser, resolveToolCallParser, type ToolCallParserName } from '../server/tools/parsers.js';
import { parseDevices, toEngineOptions, type EngineArgs } from './engine-options.js';

export interface ServeArgs extends EngineArgs {
  serverName: string;
  serverPort: number;
  modelName?: string;
  apiKeys: string[];
  allowOrigins: string[];
  logLevel: LogLevel;
  maxSessions: number;
  sessionIdleSeconds: number;
  /** Largest request body, e.g. "1MiB" (parseBytes); larger ones get 413. */
  maxBodySize: string;
  /** Compile the GPU pipelines with throwaway requests before reporting ready (Engine.warmup). */
  warmup: boolean;
  /** Split <think>...</think> of chat answers into reasoning_content. */
  reasoningParser?: ReasoningParserName;
  /** How tool calls are read from chat answers (vLLM's or LMDeploy's name); absent: from the model's template. */
  toolCallParser?: string;
}

export async function runServe(args: ServeArgs): Promise<void> {
  setLogLevel(args.logLevel);
  const modelName = args.modelName ?? defaultModelName(args.model);
  const maxBodyBytes = parseBytes(args.maxBodySize);
  if (maxBodyBytes < 1) throw new Error(`--max-body-size must be at least 1 byte, got "${args.maxBodySize}"`);
  // Listen first, so /health answers 503 "loading" while the weights stream in.
  const engine = new LoadingEngine(modelName);
  const chosenToolParser = args.toolCallParser ? resolveToolCallParser(args.toolCallParser) : null;
  let toolCallParser: ToolCallParserName | null = chosenToolParser;
  let devices: string[] = []; // GET /status lists them once the model is loaded
  const server = await startServer(engine, {
    host: args.serverName,
    port: args.serverPort,
    modelName,
    apiKeys: args.apiKeys,
    allowOrigins: args.allowOrigins,
    logLevel: args.logLevel,
    maxSessions: args.maxSessions,
    sessionIdleSeconds: args.sessionIdleSeconds,
    reasoningParser: args.reasoningParser ?? null,
    toolCallParser: () => toolCallParser,
    maxBodyBytes,
    devices: () => devices,
  });
  log.info(`listening on ${server.url}; /health answers 503 until ${modelName} is loaded`);
  let stopping = false;
  const stopped = new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info(`${signal}: draining in-flight requests`);
      void server
        .close()
        .then(() => engine.shutdown())
        .then(resolve);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  try {
    const modelDir = await resolveModel(args.model, { revision: args.revision, progress: true });
    const real = await Engine.create(await toEngineOptions(args, modelDir, { modelName, progress: true }));
    if (args.warmup && !stopping) log.info(`warmed up the GPU pipelines in ${((await real.warmup()) / 1000).toFixed(1)} s`);
    if (stopping) {
      await real.shutdown();
    } else {
      devices = real.devices.length
        ? real.devices.map((gpu) => `${gpu.label}: ${gpu.adapter.info.description || gpu.adapter.info.vendor || 'adapter ' + gpu.adapterIndex}`)
        : parseDevices(args.devices, args.tp).map((i) => `adapter ${i} (shard process)`);
      toolCallParser = chosenToolParser ?? detectToolCallParser(real.tokenizer.chatTemplateSource, real.config.architecture);
      log.info(
        toolCallParser === null
          ? 'tool calling: no tool call parser (none given, none found in the chat template): tools are accepted, tool_choice auto answers are plain content, required and named calls use the grammar'
          : `tool calling: tool call parser ${toolCallParser}${chosenToolParser ? '' : " (chosen from the model's chat template)"}`,
      );
      engine.ready(real);
      process.stdout.write(`serving ${modelName} at ${server.url}/v1 (API docs: ${server.url}/docs)\n`);
    }
  } catch (err) {
    engine.failed((err as Error).message);
    await server.close();
    throw err;
  }
  await stopped;
  log.info('stopped');
}

/** An HF id names the model by its id; a folder by its last path component. */
function defaultModelName(model: string): string {
  const isPath = model.startsWith('.') || model.startsWith('/') || existsSync(model);
  return isPath ? basename(model.replace(/\/+$/, '')) : model;
}
