// What the generating routes share: the served-model check, sampling defaults, chat prompt encoding,
// and starting one engine request per choice. The engine checks the prompt and max_tokens against
// the session length (and caps max_tokens); each route only says which field the prompt came from.
import { randomBytes } from 'node:crypto';
import type { EngineClient, GenerateRequest } from '../engine/types.js';
import type { ChatMessage } from '../common/types.js';
import { DEFAULT_SAMPLING, type SamplingParams } from '../sampling/params.js';
import type { ChatRequestMessage, SamplingRequestFields, Usage } from '../protocol/types.js';
import { ChoiceStream } from './choice-stream.js';
import { ApiError } from './errors.js';
import type { Logger } from '../common/log.js';
import type { ServerMetrics } from './metrics.js';
import type { SessionStore } from './sessions.js';

/** What every route handler gets. */
export interface ServerDeps {
  engine: EngineClient;
  /** The name clients must send as `model` (GET /v1/models lists it). */
  modelName: string;
  maxBodyBytes: number;
  log: Logger;
  metrics: ServerMetrics;
  sessions: SessionStore;
  createdAt: number;
}

export function newResponseId(prefix: string): string {
  return `${prefix}-${randomBytes(12).toString('hex')}`;
}

/** vLLM answers 404 for a model it does not serve; an omitted model means the served one. */
export function checkModel(deps: ServerDeps, model: string | undefined): void {
  if (model === undefined || model === deps.modelName) return;
  throw new ApiError(
    404,
    'invalid_request_error',
    `the model '${model}' does not exist; this server serves '${deps.modelName}' (GET /v1/models)`,
    'model',
    'model_not_found',
  );
}

/** Wire sampling fields -> engine SamplingParams, with OpenAI's defaults for what is absent. */
export function samplingFrom(fields: SamplingRequestFields, seed: number, logprobs: number | null): SamplingParams {
  const topK = fields.top_k ?? DEFAULT_SAMPLING.topK;
  return {
    temperature: fields.temperature ?? DEFAULT_SAMPLING.temperature,
    topP: fields.top_p ?? DEFAULT_SAMPLING.topP,
    topK: Math.max(topK, 0), // vLLM spells "off" as -1
    minP: fields.min_p ?? DEFAULT_SAMPLING.minP,
    repetitionPenalty: fields.repetition_penalty ?? DEFAULT_SAMPLING.repetitionPenalty,
    presencePenalty: fields.presence_penalty ?? DEFAULT_SAMPLING.presencePenalty,
    frequencyPenalty: fields.frequency_penalty ?? DEFAULT_SAMPLING.frequencyPenalty,
    seed,
    logprobs,
  };
}

export function stopList(stop: string | string[] | null | undefined): string[] {
  if (stop === null || stop === undefined) return [];
  return typeof stop === 'string' ? [stop] : stop;
}

/** OpenAI messages -> the engine's: text parts joined with "\n" (as vLLM does), developer -> system. */
export function toChatMessages(messages: readonly ChatRequestMessage[]): ChatMessage[] {
  return messages.map((m) => ({
    role: m.role === 'developer' ? 'system' : m.role,
    content: typeof m.content === 'string' ? m.content : (m.content ?? []).map((part) => part.text).join('\n'),
  }));
}

/** Starts one engine request per spec; if any start throws, closes the ones already started. */
export function startChoices(deps: ServerDeps, requests: readonly (GenerateRequest & { requestId: string })[], signal: AbortSignal): ChoiceStream[] {
  const streams: ChoiceStream[] = [];
  try {
    for (const request of requests) streams.push(new ChoiceStream(deps.engine, request, signal, deps.metrics));
    return streams;
  } catch (err) {
    for (const s of streams) s.close();
    throw err;
  }
}

export function wireUsage(promptTokens: number, completionTokens: number, cachedTokens: number): Usage {
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
    prompt_tokens_details: { cached_tokens: cachedTokens },
  };
}

export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}
