// One log line format for the whole server: "[component] message", filtered by level.
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };
let threshold: LogLevel = (process.env.LOG_LEVEL as LogLevel | undefined) ?? 'info';

export function setLogLevel(level: LogLevel): void {
  threshold = level;
}

export function log(component: string, message: string, level: LogLevel = 'info'): void {
  if (ORDER[level] < ORDER[threshold]) return;
  process.stderr.write(`[${component}] ${message}\n`);
}
