// What the page keeps in the browser's localStorage: the conversations and the settings.
import type { ToolCall } from '../../src/protocol/types.js';

export type Mode = 'stateless' | 'session';

export interface AnswerStats {
  /** Time to first token, from sending the request. */
  ttftMs: number | null;
  /** Output tokens, as the server counted them. */
  tokens: number | null;
  /** Decode speed: (tokens - 1) / (time from the first to the last token). */
  tokPerSec: number | null;
  finishReason: 'stop' | 'length' | 'abort' | 'tool_calls' | null;
  /** Server-side session: the history the server held before this turn. */
  historyTokens?: number;
}

export interface Turn {
  /** "note": a line from the page itself (e.g. "session ended"), never sent to the model. */
  role: 'user' | 'assistant' | 'note';
  content: string;
  /** The reasoning (serve --reasoning-parser), shown folded above the answer; never sent back. */
  reasoning?: string;
  /** The answer's tool calls (the server's tool calling), shown as cards and sent back in later turns. */
  tool_calls?: ToolCall[];
  /** Asked in JSON mode: the answer is shown as a JSON code block. */
  json?: boolean;
  stats?: AnswerStats;
  error?: string;
}

export interface Conversation {
  id: string;
  title: string;
  createdAt: number;
  mode: Mode;
  /** Server-side session id (/v1/chat/interactive); null until the first turn, or after "end session". */
  sessionId: number | null;
  /** Tokens the server holds for the session after the last turn. */
  historyTokens: number;
  messages: Turn[];
}

export interface Settings {
  system: string;
  temperature: number;
  topP: number;
  maxTokens: number;
  seed: number | null;
  apiKey: string;
  mode: Mode;
  /** response_format: {type: 'json_object'} on /v1/chat/completions (stateless mode only). */
  jsonMode: boolean;
  theme: 'auto' | 'light' | 'dark';
}

const KEY_CONVERSATIONS = 'webgpu-llm-chat:conversations';
const KEY_SETTINGS = 'webgpu-llm-chat:settings';
const DEFAULT_SETTINGS: Settings = {
  system: '',
  temperature: 0.7,
  topP: 0.95,
  maxTokens: 256,
  seed: null,
  apiKey: '',
  mode: 'stateless',
  jsonMode: false,
  theme: 'auto',
};

function read<T>(key: string): T | null {
  try {
    const raw = localStorage.getItem(key);
    return raw === null ? null : (JSON.parse(raw) as T);
  } catch {
    return null;
  }
}

function write(key: string, value: unknown): void {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // Storage full or disabled (private mode): the page still works, it just forgets on reload.
  }
}

export function loadSettings(): Settings {
  return { ...DEFAULT_SETTINGS, ...(read<Partial<Settings>>(KEY_SETTINGS) ?? {}) };
}

export function saveSettings(settings: Settings): void {
  write(KEY_SETTINGS, settings);
}

export function loadConversations(): Conversation[] {
  const list = read<Conversation[]>(KEY_CONVERSATIONS);
  return Array.isArray(list) ? list.filter((c) => c && Array.isArray(c.messages)) : [];
}

export function saveConversations(list: Conversation[]): void {
  write(KEY_CONVERSATIONS, list.slice(0, 100));
}

export function newConversation(mode: Mode): Conversation {
  const id = typeof crypto.randomUUID === 'function' ? crypto.randomUUID() : String(Date.now() + Math.random());
  return { id, title: '', createdAt: Date.now(), mode, sessionId: null, historyTokens: 0, messages: [] };
}
