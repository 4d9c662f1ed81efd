// POST /v1/completions: one or more prompts (text or token ids), n choices each, streamed as SSE
// or returned whole. Choice index = promptIndex * n + i, as OpenAI orders them.
import { randomSeed } from '../../engine/prompt.js';
import type { Context } from 'koa';
import type { GenerateRequest, PromptTokenLogprob, TokenLogprob } from '../../engine/types.js';
import {
  completionRequestSchema,
  validateCompletionRequest,
  type CompletionChoice,
  type CompletionChunk,
  type CompletionLogprobs,
  type CompletionRequest,
  type CompletionResponse,
} from '../../protocol/index.js';
import { readJsonBody } from '../body.js';
import { collect, merge, prime, type ChoiceStream } from '../choice-stream.js';
import { invalid, toApiError } from '../errors.js';
import {
  checkModel,
  guidedFrom,
  logitsOptions,
  newResponseId,
  nowSeconds,
  outputOptions,
  rejectUnsupportedFields,
  samplingFrom,
  startChoices,
  wireUsage,
  type ServerDeps,
} from '../generation.js';
import { completionLogprobs, echoedPromptLogprobs, joinCompletionLogprobs, TextOffsets, wirePromptLogprobs } from '../logprobs.js';
import { disconnectSignal, openEventStream } from '../sse.js';

const DEFAULT_MAX_TOKENS = 16; // OpenAI's and vLLM's default for completions

interface PreparedPrompt {
  text: string;
  tokenIds: number[];
}

export async function completionsRoute(ctx: Context, deps: ServerDeps): Promise<void> {
  const checked = validateCompletionRequest(await readJsonBody(ctx, deps.maxBodyBytes));
  if (!checked.ok) throw invalid(checked.error.message, checked.error.param);
  const body = checked.value;
  checkModel(deps, body.model);
  rejectUnsupportedFields(body as unknown as Record<string, unknown>, completionRequestSchema.properties as Record<string, unknown>, deps.log);
  const guided = guidedFrom(body);
  const logitsOpts = logitsOptions(body);
  const promptLogprobs = completionPromptLogprobs(body);
  const prompts = preparePrompts(deps, body.prompt);
  const n = body.n ?? 1;
  if (prompts.length * n > 64) throw invalid(`${prompts.length} prompts x n=${n} is more than 64 choices; send fewer at once`, 'n');

  const id = newResponseId('cmpl');
  const baseSeed = body.seed ?? randomSeed();
  const requests = prompts.flatMap((prompt, p) =>
    Array.from({ length: n }, (_, i): GenerateRequest & { requestId: string } => ({
      requestId: `${id}-${p * n + i}`,
      promptTokenIds: prompt.tokenIds,
      promptParam: 'prompt',
      sampling: samplingFrom(body, baseSeed + i, body.logprobs ?? null, deps.engine.generationDefaults),
      maxTokens: body.max_tokens ?? DEFAULT_MAX_TOKENS,
      ...outputOptions(body),
      ...(guided ? { guided } : {}),
      ...logitsOpts,
      promptLogprobs,
    })),
  );
  const signal = disconnectSignal(ctx);
  const streams = startChoices(deps, requests, signal);
  try {
    if (body.stream) await streamCompletion(ctx, deps, body, id, prompts, n, streams);
    else ctx.body = await wholeCompletion(deps, body, id, prompts, n, streams);
  } finally {
    for (const s of streams) s.close();
  }
}

/**
 * How many alternatives the engine computes per prompt token, or null for no prompt logprobs:
 * prompt_logprobs (vLLM), and echo with logprobs (OpenAI's legacy scoring: the prompt tokens' logprobs
 * lead choices[].logprobs). Like vLLM, prompt_logprobs cannot stream.
 */
function completionPromptLogprobs(body: CompletionRequest): number | null {
  const wanted = body.prompt_logprobs ?? null;
  if (wanted !== null && body.stream) throw invalid('prompt_logprobs is not available with stream: true', 'prompt_logprobs');
  const echoed = body.echo && body.logprobs !== null && body.logprobs !== undefined ? body.logprobs : null;
  if (wanted === null) return echoed;
  return echoed === null ? wanted : Math.max(wanted, echoed);
}

/** choices[].logprobs: with echo, the prompt tokens' entries first (text_offset from 0), then the generated ones. */
function choiceLogprobs(
  deps: ServerDeps,
  body: CompletionRequest,
  prompt: PreparedPrompt,
  promptLogprobs: readonly (PromptTokenLogprob | null)[] | undefined,
  generated: readonly TokenLogprob[],
  offsets: TextOffsets | number,
): CompletionLogprobs | null {
  if (body.logprobs === null || body.logprobs === undefined) return null;
  const tail = completionLogprobs(generated, body.logprobs, offsets);
  if (!body.echo || !promptLogprobs) return tail;
  const first = deps.engine.codec.decode(prompt.tokenIds.slice(0, 1), { skipSpecialTokens: false });
  return joinCompletionLogprobs(echoedPromptLogprobs(first, promptLogprobs, body.logprobs), tail);
}

function preparePrompts(deps: ServerDeps, prompt: CompletionRequest['prompt']): PreparedPrompt[] {
  const { codec } = deps.engine;
  const list: (string | number[])[] =
    typeof prompt === 'string' ? [prompt] : typeof prompt[0] === 'number' ? [prompt as number[]] : (prompt as (string | number[])[]);
  return list.map((p) =>
    typeof p === 'string'
      ? { text: p, tokenIds: codec.encode(p, { addSpecialTokens: true }) }
      : { text: codec.decode(p, { skipSpecialTokens: true }), tokenIds: [...p] },
  );
}

function promptTokenIdsField(prompts: readonly PreparedPrompt[], wanted: boolean | null | undefined) {
  if (!wanted) return {};
  return { prompt_token_ids: prompts.length === 1 ? prompts[0]!.tokenIds : prompts.map((p) => p.tokenIds) };
}

async function wholeCompletion(
  deps: ServerDeps,
  body: CompletionRequest,
  id: string,
  prompts: PreparedPrompt[],
  n: number,
  streams: ChoiceStream[],
): Promise<CompletionResponse> {
  const results = await Promise.all(streams.map(collect));
  let completionTokens = 0;
  let cachedTokens = 0;
  const choices = results.map((r, index): CompletionChoice => {
    const prompt = prompts[Math.floor(index / n)]!;
    completionTokens += r.usage.completionTokens;
    if (index % n === 0) cachedTokens += r.usage.cachedTokens;
    const echoed = body.echo ? prompt.text : '';
    return {
      index,
      text: echoed + r.text,
      logprobs: choiceLogprobs(deps, body, prompt, r.promptLogprobs, r.logprobs, echoed.length),
      ...(body.prompt_logprobs !== null && body.prompt_logprobs !== undefined && r.promptLogprobs
        ? { prompt_logprobs: wirePromptLogprobs(r.promptLogprobs, body.prompt_logprobs) }
        : {}),
      finish_reason: r.finishReason,
      stop_reason: r.stopReason,
      ...(body.return_token_ids ? { token_ids: r.tokenIds, prompt_token_ids: prompt.tokenIds } : {}),
    };
  });
  const promptTokens = prompts.reduce((sum, p) => sum + p.tokenIds.length, 0);
  return {
    id,
    object: 'text_completion',
    created: nowSeconds(),
    model: deps.modelName,
    choices,
    usage: wireUsage(promptTokens, completionTokens, cachedTokens),
    ...promptTokenIdsField(prompts, body.return_token_ids),
  };
}

async function streamCompletion(
  ctx: Context,
  deps: ServerDeps,
  body: CompletionRequest,
  id: string,
  prompts: PreparedPrompt[],
  n: number,
  streams: ChoiceStream[],
): Promise<void> {
  const first = await prime(streams); // engine refusals still become HTTP errors here
  const writer = openEventStream(ctx, 'sse');
  const created = nowSeconds();
  const includeUsage = body.stream_options?.include_usage === true;
  const echoPending = streams.map(() => body.echo === true);
  // Generated tokens' text_offset counts from the end of the echoed prompt.
  const textOffsets = streams.map((_, i) => new TextOffsets(body.echo ? prompts[Math.floor(i / n)]!.text.length : 0));
  const chunk = (choices: CompletionChoice[], extra: Partial<CompletionChunk> = {}): CompletionChunk => ({
    id,
    object: 'text_completion',
    created,
    model: deps.modelName,
    choices,
    ...(includeUsage ? { usage: null } : {}),
    ...extra,
  });
  let completionTokens = 0;
  let cachedTokens = 0;
  try {
    if (body.return_token_ids) await writer.send(chunk([], promptTokenIdsField(prompts, true)));
    for await (const { index, delta } of merge(streams, first)) {
      if (!writer.open) return;
      const prompt = prompts[Math.floor(index / n)]!;
      let text = delta.text;
      if (echoPending[index]) {
        text = prompt.text + text;
        echoPending[index] = false;
      }
      if (delta.finishReason) {
        completionTokens += delta.usage.completionTokens;
        if (index % n === 0) cachedTokens += delta.usage.cachedTokens;
      }
      const hasLogprobs = body.logprobs !== null && body.logprobs !== undefined && (delta.logprobs !== undefined || delta.promptLogprobs !== undefined);
      if (!text && !delta.finishReason && !hasLogprobs && !body.return_token_ids) continue;
      // With echo, the first delta carries the prompt's logprobs: they lead this choice's first chunk.
      const logprobs = hasLogprobs ? choiceLogprobs(deps, body, prompt, delta.promptLogprobs, delta.logprobs ?? [], textOffsets[index]!) : null;
      await writer.send(
        chunk([
          {
            index,
            text,
            logprobs,
            finish_reason: delta.finishReason,
            ...(delta.finishReason ? { stop_reason: delta.stopReason ?? null } : {}),
            ...(body.return_token_ids ? { token_ids: delta.tokenIds } : {}),
          },
        ]),
      );
    }
    if (includeUsage) {
      const promptTokens = prompts.reduce((sum, p) => sum + p.tokenIds.length, 0);
      await writer.send(chunk([], { usage: wireUsage(promptTokens, completionTokens, cachedTokens) }));
    }
  } catch (err) {
    await writer.send(toApiError(err).toBody());
    deps.log.error(`stream failed: ${(err as Error).message}`, { req: ctx.state.requestId });
  }
  writer.end();
}
