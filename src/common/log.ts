// The one logger: pino, one JSON object per line ({"level":"info","component":"engine","msg":...})
// when stderr is not a terminal (containers, CI, log shippers), human lines ("[engine] msg key=value")
// on a terminal. Every component logs through a child carrying its name; ids go in fields, not text.
import pino, { type DestinationStream, type Logger as PinoLogger } from 'pino';
import pretty from 'pino-pretty';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  isLevelEnabled(level: LogLevel): boolean;
}

export interface LoggerOptions {
  level?: LogLevel;
  /** Receives each line (JSON) instead of stderr: tests read what was logged. */
  sink?: (line: string) => void;
}

function envLevel(): LogLevel {
  const fromEnv = process.env.LOG_LEVEL as LogLevel | undefined;
  return fromEnv && LOG_LEVELS.includes(fromEnv) ? fromEnv : 'info';
}

function stderrDestination(): DestinationStream {
  if (process.stderr.isTTY) {
    return pretty({
      destination: 2,
      sync: true,
      colorize: true,
      ignore: 'pid,hostname,component,time',
      messageFormat: '[{component}] {msg}',
      hideObject: false,
      singleLine: true,
    });
  }
  return pino.destination({ dest: 2, sync: true });
}

function sinkDestination(sink: (line: string) => void): DestinationStream {
  return { write: (line: string) => sink(line.endsWith('\n') ? line.slice(0, -1) : line) };
}

function createRoot(level: LogLevel, destination: DestinationStream): PinoLogger {
  return pino(
    {
      level,
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}

let root: PinoLogger | null = null;

function processRoot(): PinoLogger {
  root ??= createRoot(envLevel(), stderrDestination());
  return root;
}

/** Logs through `current()` at call time, so setLogLevel reaches loggers made at import time. */
function wrap(current: () => PinoLogger, component: string): Logger {
  const at = (level: LogLevel) => (message: string, fields?: LogFields) => {
    current()[level]({ component, ...fields }, message);
  };
  return {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    isLevelEnabled: (level) => current().isLevelEnabled(level),
  };
}

/** Sets the level of the process logger (the CLI's --log-level); LOG_LEVEL gives the default. */
export function setLogLevel(level: LogLevel): void {
  processRoot().level = level;
}

/**
 * A logger for `component`. Without options it is a child of the process logger (stderr, the level
 * of setLogLevel); with a level or a sink it stands alone, as the HTTP server's does in tests.
 */
export function createLogger(component: string, options: LoggerOptions = {}): Logger {
  if (options.level === undefined && options.sink === undefined) return wrap(processRoot, component);
  const own = createRoot(options.level ?? envLevel(), options.sink ? sinkDestination(options.sink) : stderrDestination());
  return wrap(() => own, component);
}
