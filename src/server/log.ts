// Log lines carry the component and ids: "[http] req=7f3a POST /v1/chat/completions 200 1.2s".
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export function createLogger(component: string, level: LogLevel = 'info', sink: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Logger {
  const at = (messageLevel: LogLevel) => (message: string) => {
    if (RANK[messageLevel] >= RANK[level]) sink(`[${component}] ${message}`);
  };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}
