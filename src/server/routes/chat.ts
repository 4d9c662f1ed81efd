// POST /v1/chat/completions: the chat template renders the messages, n choices are generated, and
// the answer is one JSON body or SSE chunks (each choice's first chunk carries role: 'assistant').
// With serve --reasoning-parser, "<think>...</think>" becomes reasoning_content (see reasoning/parser.ts).
// With tools, calls in the answer become tool_calls (see tools/calls.ts).
import { chatPromptTokenIds, randomSeed } from '../../engine/prompt.js';
import type { Context } from 'koa';
import type { GenerateRequest } from '../../engine/types.js';
import {
  chatCompletionRequestSchema,
  validateChatCompletionRequest,
  type ChatCompletionChoice,
  type ChatCompletionChunk,
  type ChatCompletionChunkChoice,
  type ChatCompletionRequest,
  type ChatCompletionResponse,
} from '../../protocol/index.js';
import { readJsonBody } from '../body.js';
import { collect, merge, prime, type ChoiceStream } from '../choice-stream.js';
import { invalid, toApiError } from '../errors.js';
import {
  chatTemplateOptions,
  checkModel,
  guidedFrom,
  logitsOptions,
  newResponseId,
  rejectUnsupportedFields,
  nowSeconds,
  outputOptions,
  samplingFrom,
  startChoices,
  toChatMessages,
  wireUsage,
  type ServerDeps,
} from '../generation.js';
import { chatLogprobs, wirePromptLogprobs } from '../logprobs.js';
import { reasoningParserFor, splitReasoning } from '../reasoning/parser.js';
import { disconnectSignal, openEventStream } from '../sse.js';
import { ToolCallStream, toolGuidedDecoding, toolModeFor, wholeToolAnswer, type ToolMode } from '../tools/calls.js';
import { needsSpecialTokens } from '../tools/parsers.js';

export async function chatCompletionsRoute(ctx: Context, deps: ServerDeps): Promise<void> {
  const checked = validateChatCompletionRequest(await readJsonBody(ctx, deps.maxBodyBytes));
  if (!checked.ok) throw invalid(checked.error.message, checked.error.param);
  const body = checked.value;
  checkModel(deps, body.model);
  rejectUnsupportedFields(body as unknown as Record<string, unknown>, chatCompletionRequestSchema.properties as Record<string, unknown>, deps.log);
  const toolMode = toolModeFor(body, deps.toolCallParser());
  const toolGuided = toolGuidedDecoding(toolMode, body.tools ?? []);
  const guided = guidedFrom(body, toolGuided ? { param: toolMode.kind === 'auto' ? 'tools' : 'tool_choice', guided: toolGuided } : null);
  const logitsOpts = logitsOptions(body);
  const numTop = topLogprobs(body);
  const promptLogprobs = body.prompt_logprobs ?? null;
  // As in vLLM: prompt logprobs come whole, in the response, so not with streaming.
  if (promptLogprobs !== null && body.stream) throw invalid('prompt_logprobs is not available with stream: true', 'prompt_logprobs');
  const { codec } = deps.engine;
  const promptTokenIds = chatPromptTokenIds(codec, toChatMessages(body.messages), chatTemplateOptions(body));
  const n = body.n ?? 1;
  const id = newResponseId('chatcmpl');
  const baseSeed = body.seed ?? randomSeed();
  const defaults = deps.engine.generationDefaults;
  const requests = Array.from({ length: n }, (_, i): GenerateRequest & { requestId: string } => ({
    requestId: `${id}-${i}`,
    promptTokenIds,
    promptParam: 'messages',
    sampling: samplingFrom(body, baseSeed + i, numTop, defaults),
    maxTokens: body.max_completion_tokens ?? body.max_tokens ?? null,
    ...outputOptions(body),
    // As vLLM's parsers do: formats made of special tokens must keep them in the text.
    ...(toolMode.kind === 'auto' && needsSpecialTokens(toolMode.parser) ? { skipSpecialTokens: false } : {}),
    ...(guided ? { guided } : {}),
    ...logitsOpts,
    promptLogprobs,
  }));
  const streams = startChoices(deps, requests, disconnectSignal(ctx));
  try {
    if (body.stream) await streamChat(ctx, deps, body, id, promptTokenIds, numTop, streams, toolMode);
    else ctx.body = await wholeChat(deps, body, id, promptTokenIds, numTop, streams, toolMode);
  } finally {
    for (const s of streams) s.close();
  }
}

/** null: no logprobs; otherwise how many alternatives per token (OpenAI: top_logprobs needs logprobs). */
function topLogprobs(body: ChatCompletionRequest): number | null {
  const wanted = body.top_logprobs ?? null;
  if (wanted !== null && body.logprobs !== true) throw invalid('top_logprobs needs logprobs: true', 'top_logprobs');
  return body.logprobs === true ? (wanted ?? 0) : null;
}

async function wholeChat(
  deps: ServerDeps,
  body: ChatCompletionRequest,
  id: string,
  promptTokenIds: number[],
  numTop: number | null,
  streams: ChoiceStream[],
  toolMode: ToolMode,
): Promise<ChatCompletionResponse> {
  const results = await Promise.all(streams.map(collect));
  const choices = results.map((r, index): ChatCompletionChoice => {
    const parser = reasoningParserFor(deps.reasoningParser, body.chat_template_kwargs);
    // Like vLLM: with a parser, reasoning_content is null when there was none and content null when empty.
    const message: ChatCompletionChoice['message'] = parser
      ? (() => {
          const split = splitReasoning(parser, r.text);
          return { role: 'assistant', content: split.content || null, reasoning_content: split.reasoning || null, refusal: null };
        })()
      : { role: 'assistant', content: r.text, refusal: null };
    let finishReason: ChatCompletionChoice['finish_reason'] = r.finishReason;
    if (toolMode.kind !== 'none') {
      const answer = wholeToolAnswer(toolMode, message.content ?? '', finishReason);
      message.content = answer.content;
      if (answer.toolCalls.length) message.tool_calls = answer.toolCalls;
      finishReason = answer.finishReason;
    }
    return {
      index,
      message,
      logprobs: numTop === null ? null : { content: chatLogprobs(r.logprobs, numTop) },
      finish_reason: finishReason,
      stop_reason: r.stopReason,
      ...(body.return_token_ids ? { token_ids: r.tokenIds } : {}),
    };
  });
  const completionTokens = results.reduce((sum, r) => sum + r.usage.completionTokens, 0);
  return {
    id,
    object: 'chat.completion',
    created: nowSeconds(),
    model: deps.modelName,
    choices,
    usage: wireUsage(promptTokenIds.length, completionTokens, results[0]?.usage.cachedTokens ?? 0),
    ...(body.return_token_ids ? { prompt_token_ids: promptTokenIds } : {}),
    // vLLM puts them on the response (one prompt for every choice).
    ...(body.prompt_logprobs !== null && body.prompt_logprobs !== undefined && results[0]?.promptLogprobs
      ? { prompt_logprobs: wirePromptLogprobs(results[0].promptLogprobs, body.prompt_logprobs) }
      : {}),
  };
}

async function streamChat(
  ctx: Context,
  deps: ServerDeps,
  body: ChatCompletionRequest,
  id: string,
  promptTokenIds: number[],
  numTop: number | null,
  streams: ChoiceStream[],
  toolMode: ToolMode,
): Promise<void> {
  const first = await prime(streams);
  const writer = openEventStream(ctx, 'sse');
  const created = nowSeconds();
  const includeUsage = body.stream_options?.include_usage === true;
  const parsers = streams.map(() => reasoningParserFor(deps.reasoningParser, body.chat_template_kwargs));
  const toolStreams = streams.map(() => (toolMode.kind === 'none' ? null : new ToolCallStream(toolMode)));
  const chunk = (choices: ChatCompletionChunkChoice[], extra: Partial<ChatCompletionChunk> = {}): ChatCompletionChunk => ({
    id,
    object: 'chat.completion.chunk',
    created,
    model: deps.modelName,
    choices,
    ...(includeUsage ? { usage: null } : {}),
    ...extra,
  });
  let completionTokens = 0;
  let cachedTokens = 0;
  try {
    for (let index = 0; index < streams.length; index++) {
      const extra = index === 0 && body.return_token_ids ? { prompt_token_ids: promptTokenIds } : {};
      await writer.send(chunk([{ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }], extra));
    }
    for await (const { index, delta } of merge(streams, first)) {
      if (!writer.open) return;
      if (delta.finishReason) {
        completionTokens += delta.usage.completionTokens;
        if (index === 0) cachedTokens = delta.usage.cachedTokens;
      }
      const logprobs = numTop !== null && delta.logprobs ? { content: chatLogprobs(delta.logprobs, numTop) } : null;
      const parser = parsers[index];
      let wireDelta: ChatCompletionChunkChoice['delta'] = delta.text ? { content: delta.text } : {};
      if (parser) {
        const split = parser.push(delta.text);
        if (delta.finishReason) {
          const rest = parser.flush();
          split.reasoning += rest.reasoning;
          split.content += rest.content;
        }
        wireDelta = { ...(split.reasoning ? { reasoning_content: split.reasoning } : {}), ...(split.content ? { content: split.content } : {}) };
      }
      // Tool calls: the content goes through the choice's ToolCallStream; each call delta is its own chunk.
      const pieces: ChatCompletionChunkChoice['delta'][] = [];
      let finishReason: ChatCompletionChunkChoice['finish_reason'] = delta.finishReason;
      const tools = toolStreams[index];
      if (tools) {
        const piece = tools.push(wireDelta.content ?? '');
        if (delta.finishReason) {
          const rest = tools.finish();
          piece.content += rest.content;
          piece.toolCalls.push(...rest.toolCalls);
          finishReason = tools.finishReason(finishReason);
        }
        const { content: _dropped, ...others } = wireDelta;
        wireDelta = { ...others, ...(piece.content ? { content: piece.content } : {}) };
        if (wireDelta.content !== undefined || wireDelta.reasoning_content !== undefined) pieces.push(wireDelta);
        for (const call of piece.toolCalls) pieces.push({ tool_calls: [call] });
      } else if (wireDelta.content !== undefined || wireDelta.reasoning_content !== undefined) {
        pieces.push(wireDelta);
      }
      if (pieces.length === 0) {
        if (!delta.finishReason && !logprobs && !body.return_token_ids) continue;
        pieces.push({});
      }
      for (let k = 0; k < pieces.length; k++) {
        const last = k === pieces.length - 1;
        await writer.send(
          chunk([
            {
              index,
              delta: pieces[k]!,
              logprobs: k === 0 ? logprobs : null,
              finish_reason: last ? finishReason : null,
              ...(last && delta.finishReason ? { stop_reason: delta.stopReason ?? null } : {}),
              ...(body.return_token_ids ? { token_ids: k === 0 ? delta.tokenIds : [] } : {}),
            },
          ]),
        );
      }
    }
    if (includeUsage) await writer.send(chunk([], { usage: wireUsage(promptTokenIds.length, completionTokens, cachedTokens) }));
  } catch (err) {
    await writer.send(toApiError(err).toBody());
    deps.log.error(`stream failed: ${(err as Error).message}`, { req: ctx.state.requestId });
  }
  writer.end();
}
