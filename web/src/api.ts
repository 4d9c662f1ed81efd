// The server's endpoints as the page uses them: streaming /v1/chat/completions (SSE) and
// /v1/chat/interactive (NDJSON), GET /status. The wire types come from the server's protocol layer.
import type {
  ChatCompletionChunk,
  ChatCompletionRequest,
  ChatRequestMessage,
  ErrorBody,
  InteractiveRequest,
  InteractiveResponse,
  ServerStatus,
  ToolCall,
  ToolCallDelta,
  WireFinishReason,
} from '../../src/protocol/types.js';

export type { ChatRequestMessage, ServerStatus, ToolCall, ToolCallDelta, WireFinishReason };

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function headers(apiKey: string): Record<string, string> {
  const h: Record<string, string> = { 'content-type': 'application/json' };
  if (apiKey) h.authorization = `Bearer ${apiKey}`;
  return h;
}

async function post(path: string, body: unknown, apiKey: string, signal?: AbortSignal): Promise<Response> {
  const res = await fetch(path, { method: 'POST', headers: headers(apiKey), body: JSON.stringify(body), signal });
  if (!res.ok) throw await httpError(res);
  return res;
}

async function httpError(res: Response): Promise<HttpError> {
  const text = await res.text();
  try {
    const parsed = JSON.parse(text) as ErrorBody;
    return new HttpError(res.status, `${res.status}: ${parsed.error.message}`);
  } catch {
    return new HttpError(res.status, `${res.status}: ${text.slice(0, 300) || res.statusText}`);
  }
}

/** Lines of a streamed body, split on "\n". */
async function* lines(res: Response): AsyncGenerator<string> {
  if (!res.body) return;
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let nl = buffer.indexOf('\n');
    while (nl >= 0) {
      yield buffer.slice(0, nl).replace(/\r$/, '');
      buffer = buffer.slice(nl + 1);
      nl = buffer.indexOf('\n');
    }
  }
  if (buffer) yield buffer;
}

/** One streamed piece of an answer, common to both endpoints. */
export interface StreamEvent {
  text: string;
  /** serve --reasoning-parser: the model's <think> part, apart from the answer. */
  reasoning?: string;
  /** Pieces of tool calls (chat only): the first of each index has id and name, later ones argument text. */
  toolCalls?: ToolCallDelta[];
  /** Output tokens so far, when the endpoint says (interactive: every line; chat: the usage chunk). */
  tokens?: number;
  historyTokens?: number;
  inputTokens?: number;
  finishReason?: WireFinishReason;
}

export interface Sampling {
  temperature: number;
  topP: number;
  maxTokens: number;
  seed: number | null;
}

export async function* streamChat(
  model: string,
  messages: ChatRequestMessage[],
  sampling: Sampling,
  apiKey: string,
  signal: AbortSignal,
  jsonMode = false,
): AsyncGenerator<StreamEvent> {
  const body: ChatCompletionRequest = {
    ...(model ? { model } : {}), // before the first GET /status answers: the server's only model
    messages,
    stream: true,
    stream_options: { include_usage: true },
    temperature: sampling.temperature,
    top_p: sampling.topP,
    max_tokens: sampling.maxTokens,
    ...(sampling.seed === null ? {} : { seed: sampling.seed }),
    ...(jsonMode ? { response_format: { type: 'json_object' } } : {}),
  };
  const res = await post('/v1/chat/completions', body, apiKey, signal);
  for await (const line of lines(res)) {
    if (!line.startsWith('data:')) continue;
    const data = line.slice(5).trim();
    if (data === '[DONE]') return;
    const parsed = JSON.parse(data) as ChatCompletionChunk | ErrorBody;
    if ('error' in parsed) throw new Error(parsed.error.message);
    const choice = parsed.choices[0];
    if (choice) {
      yield {
        text: choice.delta.content ?? '',
        reasoning: choice.delta.reasoning_content,
        ...(choice.delta.tool_calls?.length ? { toolCalls: choice.delta.tool_calls } : {}),
        finishReason: choice.finish_reason,
      };
    }
    if (parsed.usage) yield { text: '', tokens: parsed.usage.completion_tokens, inputTokens: parsed.usage.prompt_tokens };
  }
}

export async function* streamInteractive(
  sessionId: number,
  prompt: string | ChatRequestMessage[],
  sampling: Sampling,
  apiKey: string,
  signal: AbortSignal,
): AsyncGenerator<StreamEvent> {
  const body: InteractiveRequest = {
    prompt,
    session_id: sessionId,
    interactive_mode: true,
    stream: true,
    request_output_len: sampling.maxTokens,
    temperature: sampling.temperature,
    top_p: sampling.topP,
    ...(sampling.seed === null ? {} : { seed: sampling.seed }),
  };
  const res = await post('/v1/chat/interactive', body, apiKey, signal);
  for await (const line of lines(res)) {
    if (!line.trim()) continue;
    const parsed = JSON.parse(line) as InteractiveResponse | ErrorBody;
    if ('error' in parsed) throw new Error(parsed.error.message);
    yield {
      text: parsed.text,
      tokens: parsed.tokens,
      historyTokens: parsed.history_tokens,
      inputTokens: parsed.input_tokens,
      finishReason: parsed.finish_reason,
    };
  }
}

/** Ends a server-side session: LMDeploy's {interactive_mode: false, prompt: "", request_output_len: 0}. */
export async function endSession(sessionId: number, apiKey: string): Promise<void> {
  const body: InteractiveRequest = { prompt: '', session_id: sessionId, interactive_mode: false, request_output_len: 0 };
  await post('/v1/chat/interactive', body, apiKey);
}

export async function fetchStatus(signal?: AbortSignal): Promise<ServerStatus> {
  const res = await fetch('/status', { signal, cache: 'no-store' });
  if (!res.ok) throw await httpError(res);
  return (await res.json()) as ServerStatus;
}
