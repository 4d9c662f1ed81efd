// The semantic checks of a request, made once where it enters the engine (Engine.generate). The
// server checks only the JSON shape, and the scheduler only asserts what these checks guarantee.
// A pure function of the request and the model's limits, so test engines raise exactly these errors.
import { InvalidRequestError } from '../common/errors.js';
import { MAX_TOP_LOGPROBS } from '../sampling/params.js';
import type { GenerateRequest } from './types.js';

export interface RequestLimits {
  /** Prompt + output tokens of one sequence at most. */
  sessionLen: number;
  /** Token ids must lie in [0, vocabSize). */
  vocabSize: number;
}

/**
 * Checks the prompt and max_tokens against the limits and returns the output budget: max_tokens
 * (or, when null, the rest of the session) capped so that prompt + output fit the session length,
 * where generation then ends with finish_reason 'length'. Throws InvalidRequestError (HTTP 400)
 * naming the request field the prompt came from.
 */
export function checkRequest(req: GenerateRequest, limits: RequestLimits): number {
  const param = req.promptParam ?? 'prompt';
  const numPrompt = req.promptTokenIds.length;
  if (numPrompt === 0) throw new InvalidRequestError('the prompt is empty: it must have at least one token', param);
  const left = limits.sessionLen - numPrompt;
  if (left <= 0) {
    throw new InvalidRequestError(
      `the prompt has ${numPrompt} tokens; this model's session length is ${limits.sessionLen} tokens, leaving no room to generate; shorten the ${param}`,
      param,
    );
  }
  const k = req.promptLogprobs ?? null;
  if (k !== null && !(Number.isInteger(k) && k >= 0 && k <= MAX_TOP_LOGPROBS)) {
    throw new InvalidRequestError(`prompt_logprobs must be an integer in [0, ${MAX_TOP_LOGPROBS}], got ${k}`, 'prompt_logprobs');
  }
  // max_tokens 0 scores the prompt without generating: only with prompt logprobs (echo + logprobs, prompt_logprobs).
  const minTokens = k !== null ? 0 : 1;
  if (req.maxTokens !== null && !(req.maxTokens >= minTokens)) {
    const hint = minTokens === 1 && req.maxTokens === 0 ? ' (0 only scores the prompt: with echo and logprobs, or prompt_logprobs)' : '';
    throw new InvalidRequestError(`max_tokens must be at least ${minTokens}, got ${req.maxTokens}${hint}`, 'max_tokens');
  }
  const bad = req.promptTokenIds.find((t) => !Number.isInteger(t) || t < 0 || t >= limits.vocabSize);
  if (bad !== undefined) throw new InvalidRequestError(`prompt token id ${bad} is outside the vocabulary [0, ${limits.vocabSize})`, param);
  return Math.min(req.maxTokens ?? left, left);
}
