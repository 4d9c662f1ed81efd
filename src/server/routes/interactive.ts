// POST /v1/chat/interactive: LMDeploy's session API, wire-compatible with lmdeploy's
// APIClient.chat_interactive_v1. With interactive_mode the server keeps the session's tokens; each
// turn sends only the new prompt, which is rendered as the chat template's continuation of the
// history and appended to it (the engine's prefix cache reuses the history's KV).
import { encodeChatText, randomSeed } from '../../engine/prompt.js';
import type { Context } from 'koa';
import type { ChatMessage, TextCodec } from '../../common/types.js';
import { validateInteractiveRequest, type InteractiveRequest, type InteractiveResponse } from '../../protocol/index.js';
import { readJsonBody } from '../body.js';
import { ChoiceStream } from '../choice-stream.js';
import { ApiError, invalid, toApiError } from '../errors.js';
import { newResponseId, stopList, toChatMessages, type ServerDeps } from '../generation.js';
import type { Session } from '../sessions.js';
import { disconnectSignal, openEventStream } from '../sse.js';

// LMDeploy's GenerateRequest defaults.
const DEFAULTS = { topP: 0.8, topK: 40, temperature: 0.8 };

export async function interactiveRoute(ctx: Context, deps: ServerDeps): Promise<void> {
  const checked = validateInteractiveRequest(await readJsonBody(ctx, deps.maxBodyBytes));
  if (!checked.ok) throw invalid(checked.error.message, checked.error.param);
  const body = checked.value;
  const requestedId = sessionIdOf(ctx, body.session_id);
  if (body.cancel) {
    if (requestedId === -1) throw invalid('cancel needs the session_id of the turn to cancel', 'session_id');
    deps.sessions.get(requestedId)?.running?.controller.abort(new Error('cancelled by the client'));
    ctx.body = reply('', 0, 0, deps.sessions.get(requestedId)?.tokenIds.length ?? 0, 'stop');
    return;
  }
  const interactive = body.interactive_mode ?? false;
  if (!interactive && body.prompt === '' && body.request_output_len === 0) {
    if (deps.sessions.get(requestedId)?.running) throw busy(requestedId);
    deps.sessions.end(requestedId);
    ctx.body = reply('', 0, 0, 0, 'stop');
    return;
  }
  const sessionId = requestedId === -1 ? deps.sessions.newId() : requestedId;
  const previous = deps.sessions.get(sessionId)?.running;
  if (previous) {
    if (!previous.controller.signal.aborted) throw busy(sessionId);
    await previous.done; // a cancelled (or disconnected) turn is winding down: its tokens join the history first
    if (deps.sessions.get(sessionId)?.running) throw busy(sessionId);
  }
  const session = deps.sessions.open(sessionId);
  ctx.set('X-Session-Id', String(sessionId));
  let finishTurn!: () => void;
  const controller = new AbortController();
  disconnectSignal(ctx).addEventListener('abort', () => controller.abort(new Error('client disconnected')), { once: true });
  session.running = {
    controller,
    done: new Promise<void>((resolve) => {
      finishTurn = resolve;
    }),
  };
  try {
    await runTurn(ctx, deps, body, session, controller.signal);
  } finally {
    session.running = null;
    session.lastUsedMs = Date.now();
    finishTurn();
    if (!interactive) deps.sessions.end(sessionId);
  }
}

/**
 * The session id from the body or, when the body has none, from the X-Session-Id header (what a load
 * balancer hashes on to keep a session on one replica); both given and different is a 400. -1: none.
 */
function sessionIdOf(ctx: Context, fromBody: number | null | undefined): number {
  const header = ctx.get('x-session-id').trim();
  if (header === '') return fromBody ?? -1;
  const fromHeader = /^-?\d{1,16}$/.test(header) ? Number(header) : Number.NaN;
  if (!Number.isSafeInteger(fromHeader) || fromHeader < -1) {
    throw new ApiError(
      400,
      'invalid_request_error',
      `the X-Session-Id header must be an integer from -1 to 2^53 - 1, got "${header.slice(0, 32)}"`,
      'session_id',
      'invalid_session_id',
    );
  }
  if (fromBody !== null && fromBody !== undefined && fromBody !== fromHeader) {
    throw new ApiError(
      400,
      'invalid_request_error',
      `session_id ${fromBody} in the body differs from the X-Session-Id header ${fromHeader}; send one, or the same id in both`,
      'session_id',
      'session_id_mismatch',
    );
  }
  return fromHeader;
}

function busy(sessionId: number): ApiError {
  return new ApiError(
    400,
    'invalid_request_error',
    `session ${sessionId} is busy with another turn; wait for it to finish or cancel it with {"session_id": ${sessionId}, "cancel": true}`,
    'session_id',
    'session_busy',
  );
}

function reply(
  text: string,
  tokens: number,
  inputTokens: number,
  historyTokens: number,
  finishReason: InteractiveResponse['finish_reason'],
): InteractiveResponse {
  return { text, tokens, input_tokens: inputTokens, history_tokens: historyTokens, finish_reason: finishReason };
}

/**
 * One turn: tokens for the new prompt, the budget left in the session, generation, history update.
 * `cancel` fires on {cancel: true}, on the client's disconnect and on shutdown.
 */
async function runTurn(ctx: Context, deps: ServerDeps, body: InteractiveRequest, session: Session, cancel: AbortSignal): Promise<void> {
  const { engine } = deps;
  const newMessages: ChatMessage[] = typeof body.prompt === 'string' ? [{ role: 'user', content: body.prompt }] : toChatMessages(body.prompt);
  const inputIds =
    session.tokenIds.length === 0
      ? encodeChatText(engine.codec, engine.codec.applyChatTemplate(newMessages, { addGenerationPrompt: true }))
      : engine.codec.encode(continuationText(engine.codec, session.messages, newMessages), { addSpecialTokens: false });
  const historyTokens = session.tokenIds.length;
  const sendWhole = (r: InteractiveResponse) => {
    ctx.body = r;
  };
  if (historyTokens + inputIds.length >= engine.sessionLen) {
    // LMDeploy's answer when a session is full: nothing generated, finish_reason 'length'; the
    // client should end the session. The history stays as it was. (Only the server knows the
    // history, so this is its check; the engine caps the output to what the session has left.)
    return sendWhole(reply('', 0, inputIds.length, historyTokens, 'length'));
  }
  if (body.request_output_len === 0) {
    // request_output_len 0: only add the prompt to the history.
    commit(session, inputIds, [], newMessages, '');
    return sendWhole(reply('', 0, inputIds.length, historyTokens, 'length'));
  }
  const stream = new ChoiceStream(
    engine,
    {
      requestId: newResponseId(`session-${session.id}`),
      promptTokenIds: [...session.tokenIds, ...inputIds],
      sampling: {
        temperature: body.temperature ?? DEFAULTS.temperature,
        topP: body.top_p ?? DEFAULTS.topP,
        topK: body.top_k ?? DEFAULTS.topK,
        minP: body.min_p ?? 0,
        repetitionPenalty: body.repetition_penalty ?? 1,
        presencePenalty: 0,
        frequencyPenalty: 0,
        seed: body.seed ?? randomSeed(),
        logprobs: null,
      },
      maxTokens: body.request_output_len ?? null,
      stop: stopList(body.stop),
      stopTokenIds: [],
      ignoreEos: body.ignore_eos ?? false,
      skipSpecialTokens: body.skip_special_tokens ?? true,
    },
    cancel,
    deps.metrics,
  );
  let text = '';
  const outputIds: number[] = [];
  let started = false;
  try {
    let delta = await stream.next(); // before the status is committed: engine refusals stay HTTP errors
    started = true;
    const writer = body.stream ? openEventStream(ctx, 'ndjson', { 'X-Session-Id': String(session.id) }) : null;
    try {
      for (; delta; delta = await stream.next()) {
        text += delta.text;
        outputIds.push(...delta.tokenIds);
        const finish = delta.finishReason;
        if (writer && (delta.text || finish)) {
          await writer.send(reply(delta.text, outputIds.length, inputIds.length, historyTokens, finish));
        }
        if (finish) {
          if (!writer) sendWhole(reply(text, outputIds.length, inputIds.length, historyTokens, finish));
        }
      }
    } catch (err) {
      if (!writer) throw err;
      await writer.send(toApiError(err).toBody());
    }
    if (ctx.body === undefined && !writer) sendWhole(reply(text, outputIds.length, inputIds.length, historyTokens, 'abort'));
    writer?.end();
  } finally {
    stream.close();
    // A turn the engine refused or failed before its first token leaves the history as it was.
    if (started) commit(session, inputIds, outputIds, newMessages, text);
  }
}

/** The history grows by this turn's prompt and whatever was generated (all of it, even if cancelled). */
function commit(session: Session, inputIds: number[], outputIds: number[], newMessages: ChatMessage[], text: string): void {
  session.tokenIds.push(...inputIds, ...outputIds);
  session.messages.push(...newMessages, { role: 'assistant', content: text });
}

/**
 * The text that continues a conversation the model has already seen: render the whole conversation
 * with the new messages and cut off what the model saw (the template up to the last assistant
 * turn's generation prompt, plus the assistant's text). What remains is the template's closing of
 * the assistant turn, the new turns and the next generation prompt. A template that rewrites earlier
 * turns has no such prefix; then the new messages are rendered alone, without BOS.
 */
export function continuationText(codec: TextCodec, history: readonly ChatMessage[], next: readonly ChatMessage[]): string {
  const full = codec.applyChatTemplate([...history, ...next], { addGenerationPrompt: true });
  const last = history.at(-1);
  const seen =
    last?.role === 'assistant'
      ? codec.applyChatTemplate(history.slice(0, -1), { addGenerationPrompt: true }) + last.content
      : codec.applyChatTemplate(history, { addGenerationPrompt: false });
  if (full.startsWith(seen)) return full.slice(seen.length);
  const alone = codec.applyChatTemplate(next, { addGenerationPrompt: true });
  const bosText = codec.bosTokenId === null ? '' : codec.decode([codec.bosTokenId], { skipSpecialTokens: false });
  return bosText && alone.startsWith(bosText) ? alone.slice(bosText.length) : alone;
}
