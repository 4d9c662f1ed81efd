// What the generating routes share: the served-model check, sampling defaults, chat prompt encoding,
// and starting one engine request per choice. The engine checks the prompt and max_tokens against
// the session length (and caps max_tokens); each route only says which field the prompt came from.
import { randomBytes } from 'node:crypto';
import type { EngineClient, GenerateRequest, GuidedDecoding } from '../engine/types.js';
import { checkJsonSchema } from '../structured/json-schema.js';
import type { ChatPromptOptions } from '../engine/prompt.js';
import type { ChatMessage } from '../common/types.js';
import { DEFAULT_SAMPLING, type SamplingParams } from '../sampling/params.js';
import type { ChatCompletionRequest, ChatRequestMessage, ResponseFormat, SamplingRequestFields, Usage } from '../protocol/types.js';
import { ChoiceStream } from './choice-stream.js';
import { ApiError, invalid } from './errors.js';
import type { Logger } from '../common/log.js';
import type { ServerMetrics } from './metrics.js';
import type { SessionStore } from './sessions.js';
import type { ReasoningParserName } from './reasoning/parser.js';
import type { ToolCallParserName } from './tools/parsers.js';

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
  /** serve --tool-call-parser, or the one the model's template implies (asked per request: known once loaded); null: none. */
  toolCallParser: () => ToolCallParserName | null;
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

/** The request's one output constraint, from whichever field set it (a 400 when several do). */
export function guidedFrom(
  body: SamplingRequestFields & { response_format?: ResponseFormat | null },
  extra: { param: string; guided: GuidedDecoding } | null = null,
): GuidedDecoding | null {
  const found: { param: string; guided: GuidedDecoding }[] = extra ? [extra] : [];
  const rf = body.response_format;
  if (rf) {
    switch (rf.type) {
      case 'text':
        break;
      case 'json_object':
        found.push({ param: 'response_format', guided: { type: 'json_object' } });
        break;
      case 'json_schema': {
        const schema = rf.json_schema?.schema;
        if (!rf.json_schema) throw invalid('response_format json_schema needs a json_schema object ({name, schema, strict})', 'response_format.json_schema');
        // OpenAI: an absent schema allows any JSON object.
        const s = schema ?? { type: 'object' };
        checkJsonSchema(s, 'response_format.json_schema.schema');
        found.push({ param: 'response_format', guided: { type: 'json_schema', schema: s } });
        break;
      }
      case 'regex_schema':
        if (typeof rf.regex_schema !== 'string') throw invalid('response_format regex_schema needs a regex_schema string', 'response_format.regex_schema');
        found.push({ param: 'response_format', guided: { type: 'regex', pattern: rf.regex_schema } });
        break;
      default:
        throw invalid(`response_format type '${rf.type}' is not supported; use text, json_object, json_schema or regex_schema`, 'response_format.type');
    }
  }
  if (body.guided_json !== undefined && body.guided_json !== null) {
    let schema: unknown = body.guided_json;
    if (typeof schema === 'string') {
      try {
        schema = JSON.parse(schema);
      } catch {
        throw invalid('guided_json is a string that is not JSON', 'guided_json');
      }
    }
    checkJsonSchema(schema, 'guided_json');
    found.push({ param: 'guided_json', guided: { type: 'json_schema', schema: schema as Record<string, unknown> } });
  }
  if (body.guided_regex) found.push({ param: 'guided_regex', guided: { type: 'regex', pattern: body.guided_regex } });
  if (body.guided_choice) found.push({ param: 'guided_choice', guided: { type: 'choice', choices: body.guided_choice } });
  if (body.guided_grammar) found.push({ param: 'guided_grammar', guided: { type: 'grammar', ebnf: body.guided_grammar } });
  if (found.length > 1) {
    throw invalid(`only one output constraint per request: ${found.map((f) => f.param).join(' and ')} were both given`, found[1]!.param);
  }
  return found[0]?.guided ?? null;
}

/** logit_bias (ids as strings on the wire) and min_tokens / min_new_tokens for the engine. */
export function logitsOptions(body: SamplingRequestFields): Pick<GenerateRequest, 'logitBias' | 'minTokens'> {
  const out: Pick<GenerateRequest, 'logitBias' | 'minTokens'> = {};
  if (body.logit_bias) out.logitBias = new Map(Object.entries(body.logit_bias).map(([id, b]) => [Number(id), b]));
  if (body.min_tokens != null && body.min_new_tokens != null && body.min_tokens !== body.min_new_tokens) {
    throw invalid('min_tokens and min_new_tokens disagree; send one', 'min_new_tokens');
  }
  const minTokens = body.min_tokens ?? body.min_new_tokens;
  if (minTokens != null) out.minTokens = minTokens;
  return out;
}

/**
 * OpenAI fields this server knows but does not implement are a 400 naming them (never silently
 * ignored); fields no API defines are ignored (logged at debug).
 */
export function rejectUnsupportedFields(body: Record<string, unknown>, known: Readonly<Record<string, unknown>>, log: Logger): void {
  const n = typeof body.n === 'number' ? body.n : 1;
  const unsupported: Record<string, (v: unknown) => boolean> = {
    suffix: (v) => v !== null && v !== undefined && v !== '',
    best_of: (v) => v !== null && v !== undefined && v !== n,
    audio: (v) => v !== null && v !== undefined,
    modalities: (v) => v !== null && v !== undefined && !(Array.isArray(v) && v.every((m) => m === 'text')),
    prediction: (v) => v !== null && v !== undefined,
    functions: (v) => v !== null && v !== undefined,
    function_call: (v) => v !== null && v !== undefined,
    web_search_options: (v) => v !== null && v !== undefined,
  };
  for (const [key, value] of Object.entries(body)) {
    if (key in known) continue;
    const bad = unsupported[key];
    if (bad) {
      if (bad(value)) throw invalid(`${key} is not supported by this server`, key);
      continue;
    }
    log.debug(`ignoring unknown request field ${key}`);
  }
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
  body: Pick<ChatCompletionRequest, 'add_generation_prompt' | 'continue_final_message' | 'chat_template_kwargs' | 'tools'>,
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
  // transformers passes tools as the template variable `tools` (vLLM too, whatever tool_choice says).
  const tools = body.tools?.length ? { tools: body.tools.map((t) => ({ type: 'function', function: t.function })) } : {};
  const kwargs = body.chat_template_kwargs || body.tools?.length ? { ...body.chat_template_kwargs, ...tools } : undefined;
  return { addGenerationPrompt, continueFinalMessage, kwargs };
}

/** OpenAI messages -> the engine's: text parts joined with "\n" (as vLLM does), developer -> system. */
export function toChatMessages(messages: readonly ChatRequestMessage[]): ChatMessage[] {
  return messages.map((m) => {
    const out: ChatMessage = {
      role: m.role === 'developer' ? 'system' : m.role,
      content: typeof m.content === 'string' ? m.content : (m.content ?? []).map((part) => part.text).join('\n'),
    };
    if (m.name !== undefined) out.name = m.name;
    if (m.tool_call_id !== undefined && m.tool_call_id !== null) out.tool_call_id = m.tool_call_id;
    if (m.tool_calls?.length) {
      // As vLLM: arguments become objects, so templates can iterate them or `| tojson` them.
      out.tool_calls = m.tool_calls.map((c) => ({
        ...(c.id !== undefined ? { id: c.id } : {}),
        type: 'function',
        function: { name: c.function.name, arguments: parseArguments(c.function.arguments) },
      }));
    }
    return out;
  });
}

function parseArguments(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text; // not JSON: the template gets the text as written
  }
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
