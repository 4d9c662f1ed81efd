// Engine logprobs -> the two OpenAI wire shapes (completions' parallel arrays, chat's per-token list).
// A token that is only part of a UTF-8 character (a byte-fallback <0xE2>, a byte-level fragment) is
// spelled "bytes:\xe2" by the engine, as OpenAI does, and keeps its real bytes: distinct tokens never
// collide as top_logprobs keys, and chat's `bytes` let a client reassemble the character.
import type { PromptTokenLogprob, TokenLogprob, TopLogprob } from '../engine/types.js';
import type { ChatTokenLogprob, CompletionLogprobs, WirePromptLogprobs } from '../protocol/types.js';

/**
 * Where each token's text starts in a choice's text (completions' text_offset), carried across
 * stream chunks: a token that only starts a character adds no text until the one that completes it.
 */
export class TextOffsets {
  private readonly decoder = new TextDecoder();

  constructor(private offset = 0) {}

  /** The offset of this token's text, then advances past it. */
  next(item: TopLogprob): number {
    const at = this.offset;
    this.offset += this.decoder.decode(Uint8Array.from(tokenBytes(item)), { stream: true }).length;
    return at;
  }
}

/** Completions shape; `offsets` continues the choice's text_offset (start it at the echoed text's length). */
export function completionLogprobs(items: readonly TokenLogprob[], numTop: number, offsets: TextOffsets | number): CompletionLogprobs {
  const tracker = typeof offsets === 'number' ? new TextOffsets(offsets) : offsets;
  const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  for (const item of items) {
    out.tokens.push(item.token);
    out.token_logprobs.push(item.logprob);
    out.text_offset.push(tracker.next(item));
    out.top_logprobs.push(topLogprobMap(item, numTop));
  }
  return out;
}

/**
 * The sampled token (always present, as in vLLM) plus up to `numTop` alternatives, keyed by text. Two
 * different tokens with the same text (a byte-fallback <0x41> and the piece "A") must both stay: the
 * later one is keyed "token_id:65", vLLM's spelling with --return-tokens-as-token-ids. No prototype: a
 * token spelled "constructor" or "__proto__" is an entry like any other.
 */
function topLogprobMap(item: TokenLogprob, numTop: number): Record<string, number> {
  const top = Object.create(null) as Record<string, number>;
  const idOfKey = new Map<string, number>();
  for (const entry of [item, ...item.top.slice(0, numTop)]) {
    const owner = idOfKey.get(entry.token);
    if (owner === entry.tokenId) continue; // the sampled token again among the alternatives
    const key = owner === undefined ? entry.token : `token_id:${entry.tokenId}`;
    idOfKey.set(key, entry.tokenId);
    top[key] = entry.logprob;
  }
  return top;
}

/** Text length the given logprob items cover (whole characters only). */
export function logprobTextLength(items: readonly TokenLogprob[]): number {
  const decoder = new TextDecoder();
  return items.reduce((n, item) => n + decoder.decode(Uint8Array.from(tokenBytes(item)), { stream: true }).length, 0);
}

export function chatLogprobs(items: readonly TokenLogprob[], numTop: number): ChatTokenLogprob[] {
  return items.map((item) => ({
    token: item.token,
    logprob: item.logprob,
    bytes: tokenBytes(item),
    top_logprobs: item.top.slice(0, numTop).map((alt) => ({ token: alt.token, logprob: alt.logprob, bytes: tokenBytes(alt) })),
  }));
}

/**
 * echo with logprobs (completions): the prompt tokens' entries, text_offset from 0 across them. The
 * first prompt token has nothing before it: its logprob and top_logprobs are null, as in vLLM and
 * OpenAI's legacy echo. `firstToken` is its text (vLLM: decode([id])).
 */
export function echoedPromptLogprobs(firstToken: string, prompt: readonly (PromptTokenLogprob | null)[], numTop: number): CompletionLogprobs {
  const offsets = new TextOffsets(0);
  const head: CompletionLogprobs = {
    tokens: [firstToken],
    token_logprobs: [null],
    top_logprobs: [null],
    text_offset: [offsets.next({ tokenId: -1, token: firstToken, logprob: 0 })],
  };
  const rest = completionLogprobs(
    prompt.slice(1).filter((e): e is PromptTokenLogprob => e !== null),
    numTop,
    offsets,
  );
  return joinCompletionLogprobs(head, rest);
}

export function joinCompletionLogprobs(a: CompletionLogprobs, b: CompletionLogprobs): CompletionLogprobs {
  return {
    tokens: [...a.tokens, ...b.tokens],
    token_logprobs: [...a.token_logprobs, ...b.token_logprobs],
    top_logprobs: [...a.top_logprobs, ...b.top_logprobs],
    text_offset: [...a.text_offset, ...b.text_offset],
  };
}

/**
 * vLLM's prompt_logprobs: per prompt token null (the first) or {token id: {logprob, rank,
 * decoded_token}} holding the prompt token itself and its `numTop` best alternatives (ranks 1..numTop).
 */
export function wirePromptLogprobs(prompt: readonly (PromptTokenLogprob | null)[], numTop: number): WirePromptLogprobs {
  return prompt.map((e) => {
    if (e === null) return null;
    // No prototype: keys are token ids, but keep the record a plain dictionary.
    const entry = Object.create(null) as Record<string, { logprob: number; rank: number; decoded_token: string }>;
    entry[String(e.tokenId)] = { logprob: e.logprob, rank: e.rank, decoded_token: e.token };
    e.top.slice(0, numTop).forEach((alt, i) => {
      if (!Object.hasOwn(entry, String(alt.tokenId))) entry[String(alt.tokenId)] = { logprob: alt.logprob, rank: i + 1, decoded_token: alt.token };
    });
    return entry;
  });
}

/** The token's own bytes (engines that give none: the UTF-8 of its text). */
function tokenBytes(item: TopLogprob): number[] {
  return item.bytes ?? [...Buffer.from(item.token, 'utf8')];
}
