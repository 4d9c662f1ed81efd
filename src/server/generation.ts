// What the generating routes share: the served-model check, sampling defaults, chat prompt encoding,
// and starting one engine request per choice. The engine checks the prompt and max_tokens against
// the session length (and caps max_tokens); each route only says which field the prompt came from.
import { randomBytes } from 'node:crypto';
import type { EngineClient, GenerateRequest } from '../engine/types.js';
import type { ChatPromptOptions } from '../engine/prompt.js';
import type { ChatMessage } from '../common/types.js';
import { DEFAULT_SAMPLING, type SamplingParams } from '../sampling/params.js';
import type { ChatCompletionRequest, ChatRequestMessage, SamplingRequestFields, Usage } from '../protocol/types.js';
import { ChoiceStream } from './choice-stream.js';
import { ApiError } from './errors.js';
import type { Logger } from '../common/log.js';
import type { ServerMetrics } from './metrics.js';
import type { SessionStore } from './sessions.js';
import type { ReasoningParserName } from './reasoning/parser.js';

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
  /** serve --reasoning-parser; null: chat answers are all content. */
  reasoningParser: ReasoningParserName | null;
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

/**
 * Wire sampling fields -> engine SamplingParams. What the request leaves out comes from the model's
 * generation_config.json (`defaults`, serve --generation-config auto, as vLLM), else OpenAI's defaults.
 */
export function samplingFrom(
  fields: SamplingRequestFields,
  seed: number,
  logprobs: number | null,
  defaults: Readonly<Partial<SamplingParams>> = {},
): SamplingParams {
  const base = { ...DEFAULT_SAMPLING, ...defaults };
  const topK = fields.top_k ?? base.topK;
  return {
    temperature: fields.temperature ?? base.temperature,
    topP: fields.top_p ?? base.topP,
    topK: Math.max(topK, 0), // vLLM spells "off" as -1
    minP: fields.min_p ?? base.minP,
    repetitionPenalty: fields.repetition_penalty ?? base.repetitionPenalty,
    presencePenalty: fields.presence_penalty ?? DEFAULT_SAMPLING.presencePenalty,
    frequencyPenalty: fields.frequency_penalty ?? DEFAULT_SAMPLING.frequencyPenalty,
    seed,
    logprobs,
  };
}

/** The output fields both generating routes map the same way (vLLM's names and defaults). */
export function outputOptions(
  body: SamplingRequestFields,
): Pick<GenerateRequest, 'stop' | 'stopTokenIds' | 'ignoreEos' | 'skipSpecialTokens' | 'includeStopStrInOutput' | 'spacesBetweenSpecialTokens'> {
  return {
    stop: stopList(body.stop),
    stopTokenIds: body.stop_token_ids ?? [],
    ignoreEos: body.ignore_eos ?? false,
    skipSpecialTokens: body.skip_special_tokens ?? true,
    includeStopStrInOutput: body.include_stop_str_in_output ?? false,
    spacesBetweenSpecialTokens: body.spaces_between_special_tokens ?? true,
  };
}

export function stopList(stop: string | string[] | null | undefined): string[] {
  if (stop === null || stop === undefined) return [];
  return typeof stop === 'string' ? [stop] : stop;
}

/**
 * vLLM's template fields: add_generation_prompt (default true), continue_final_message (default
 * false; both true is a 400, as in vLLM) and chat_template_kwargs.
 */
export function chatTemplateOptions(
  body: Pick<ChatCompletionRequest, 'add_generation_prompt' | 'continue_final_message' | 'chat_template_kwargs'>,
): ChatPromptOptions {
  const addGenerationPrompt = body.add_generation_prompt ?? true;
  const continueFinalMessage = body.continue_final_message ?? false;
  if (addGenerationPrompt && continueFinalMessage) {
    throw new ApiError(
      400,
      'invalid_request_error',
      'continue_final_message and add_generation_prompt cannot both be true; send add_generation_prompt: false',
      'continue_final_message',
      null,
    );
  }
  return { addGenerationPrompt, continueFinalMessage, kwargs: body.chat_template_kwargs ?? undefined };
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
