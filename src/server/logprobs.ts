// Engine logprobs -> the two OpenAI wire shapes (completions' parallel arrays, chat's per-token list).
import type { TokenLogprob } from '../engine/types.js';
import type { ChatTokenLogprob, CompletionLogprobs } from '../protocol/types.js';

/** Completions shape; `textOffset` is where the first token's text starts in the choice's text. */
export function completionLogprobs(items: readonly TokenLogprob[], numTop: number, textOffset: number): CompletionLogprobs {
  const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  let offset = textOffset;
  for (const item of items) {
    out.tokens.push(item.token);
    out.token_logprobs.push(item.logprob);
    out.text_offset.push(offset);
    offset += item.token.length;
    // Like vLLM: the sampled token is always present, plus up to `numTop` alternatives.
    // No prototype: a token spelled "constructor" or "__proto__" must be an entry like any other.
    const top = Object.create(null) as Record<string, number>;
    top[item.token] = item.logprob;
    for (const alt of item.top.slice(0, numTop)) if (!Object.hasOwn(top, alt.token)) top[alt.token] = alt.logprob;
    out.top_logprobs.push(top);
  }
  return out;
}

/** Text length the given logprob items cover (to continue text_offset across stream chunks). */
export function logprobTextLength(items: readonly TokenLogprob[]): number {
  return items.reduce((n, item) => n + item.token.length, 0);
}

export function chatLogprobs(items: readonly TokenLogprob[], numTop: number): ChatTokenLogprob[] {
  const bytes = (token: string) => [...Buffer.from(token, 'utf8')];
  return items.map((item) => ({
    token: item.token,
    logprob: item.logprob,
    bytes: bytes(item.token),
    top_logprobs: item.top.slice(0, numTop).map((alt) => ({ token: alt.token, logprob: alt.logprob, bytes: bytes(alt.token) })),
  }));
}
