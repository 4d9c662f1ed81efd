// vLLM's POST /tokenize ({prompt} or {messages}, -> {count, max_model_len, tokens}) and POST /detokenize
// ({tokens} -> {prompt}). Outside /v1, as in vLLM; the chat path renders exactly what
// /v1/chat/completions would send to the engine.
import type { Context } from 'koa';
import { encodeChatText, renderChat } from '../../engine/prompt.js';
import { validateDetokenizeRequest, validateTokenizeRequest, type DetokenizeResponse, type TokenizeResponse } from '../../protocol/index.js';
import { readJsonBody } from '../body.js';
import { invalid } from '../errors.js';
import { chatTemplateOptions, checkModel, toChatMessages, type ServerDeps } from '../generation.js';

export async function tokenizeRoute(ctx: Context, deps: ServerDeps): Promise<void> {
  const checked = validateTokenizeRequest(await readJsonBody(ctx, deps.maxBodyBytes));
  if (!checked.ok) throw invalid(checked.error.message, checked.error.param);
  const body = checked.value;
  checkModel(deps, body.model);
  const { codec } = deps.engine;
  let tokens: number[];
  if (body.messages !== undefined) {
    if (body.prompt !== undefined) throw invalid('give either prompt or messages, not both', 'prompt');
    const text = renderChat(codec, toChatMessages(body.messages), chatTemplateOptions(body));
    // The template writes BOS itself; add_special_tokens (default false here, as in vLLM) adds it again.
    tokens = body.add_special_tokens === true ? codec.encode(text, { addSpecialTokens: true }) : encodeChatText(codec, text);
  } else if (body.prompt !== undefined) {
    tokens = codec.encode(body.prompt, { addSpecialTokens: body.add_special_tokens ?? true });
  } else {
    throw invalid("missing required field 'prompt' (or 'messages')", 'prompt');
  }
  const response: TokenizeResponse = { count: tokens.length, max_model_len: deps.engine.sessionLen, tokens };
  ctx.body = response;
}

export async function detokenizeRoute(ctx: Context, deps: ServerDeps): Promise<void> {
  const checked = validateDetokenizeRequest(await readJsonBody(ctx, deps.maxBodyBytes));
  if (!checked.ok) throw invalid(checked.error.message, checked.error.param);
  checkModel(deps, checked.value.model);
  const response: DetokenizeResponse = { prompt: deps.engine.codec.decode(checked.value.tokens, { skipSpecialTokens: false }) };
  ctx.body = response;
}
