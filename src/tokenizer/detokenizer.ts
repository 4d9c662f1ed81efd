// Streaming detokenization for one request, vLLM's way: decode a short window of tokens with and
// without the newest ones and emit the difference, so spaces come out exactly as in a full decode
// (SentencePiece drops the first space of a sequence, not of every chunk) and a character split across
// byte tokens is held until complete. Decoding in context rests on decode being prefix-stable apart
// from sequence-level rules at its start; the tests check the concatenation against full decodes.
import assert from 'node:assert/strict';
import type { Tokenizer } from './tokenizer.js';

/** Prompt tokens decoded as context before the first output token (vLLM's initial offset). */
const NUM_CONTEXT_TOKENS = 5;
/** How far back the context may grow to find text that does not start mid-character. */
const MAX_CONTEXT_TOKENS = 32;
const REPLACEMENT_CHAR = '\uFFFD';

export class IncrementalDetokenizer {
  /** The window: tokens from prefixOffset on (earlier ones are dropped as they stop mattering). */
  private window: number[];
  /** window[0, readOffset) has been turned into text already; window[readOffset, ...) has not. */
  private readOffset: number;
  /** decode(window[0, readOffset)), cached between emissions. */
  private prefixText: string | null = null;
  private emitted = '';
  private readonly skipSpecialTokens: boolean;
  private readonly spacesBetweenSpecialTokens: boolean;

  constructor(
    private readonly tokenizer: Tokenizer,
    promptTokenIds: readonly number[],
    options: { skipSpecialTokens: boolean; spacesBetweenSpecialTokens?: boolean },
  ) {
    this.skipSpecialTokens = options.skipSpecialTokens;
    this.spacesBetweenSpecialTokens = options.spacesBetweenSpecialTokens ?? false;
    this.window = this.pickContext(promptTokenIds);
    this.readOffset = this.window.length;
  }

  /** All text emitted so far. */
  get text(): string {
    return this.emitted;
  }

  /** Feeds one generated token; returns the text that became final ('' while a character is incomplete). */
  push(tokenId: number): string {
    this.window.push(tokenId);
    const prefixText = this.getPrefixText();
    const fullText = this.decode(this.window);
    // A trailing U+FFFD is an incomplete character that later bytes may still complete.
    if (fullText.length <= prefixText.length || fullText.endsWith(REPLACEMENT_CHAR)) return '';
    return this.emit(fullText.slice(prefixText.length));
  }

  /** End of the sequence: the held-back text, an unfinished character as U+FFFD (as a full decode has it). */
  flush(): string {
    if (this.readOffset === this.window.length) return '';
    const prefixText = this.getPrefixText();
    const fullText = this.decode(this.window);
    if (fullText.length <= prefixText.length) return '';
    return this.emit(fullText.slice(prefixText.length));
  }

  /**
   * Slides the window: the tokens just turned into text become the next prefix, so each push decodes
   * only a few tokens however long the output grows.
   */
  private emit(delta: string): string {
    this.window = this.window.slice(this.readOffset);
    this.readOffset = this.window.length;
    this.prefixText = null;
    this.emitted += delta;
    return delta;
  }

  private getPrefixText(): string {
    this.prefixText ??= this.decode(this.window.slice(0, this.readOffset));
    return this.prefixText;
  }

  private decode(ids: readonly number[]): string {
    return this.tokenizer.decode(ids, { skipSpecialTokens: this.skipSpecialTokens, spacesBetweenSpecialTokens: this.spacesBetweenSpecialTokens });
  }

  /**
   * The last prompt tokens to decode the first output tokens against. Grows past NUM_CONTEXT_TOKENS
   * while the context has no text of its own (only skipped special tokens: the first output space
   * would wrongly be stripped) or starts inside a character split across byte tokens.
   */
  private pickContext(promptTokenIds: readonly number[]): number[] {
    let start = Math.max(0, promptTokenIds.length - NUM_CONTEXT_TOKENS);
    const minStart = Math.max(0, promptTokenIds.length - MAX_CONTEXT_TOKENS);
    while (start > minStart) {
      const text = this.decode(promptTokenIds.slice(start));
      if (text.length > 0 && !text.startsWith(REPLACEMENT_CHAR)) break;
      start--;
    }
    const context = promptTokenIds.slice(start);
    assert(context.length <= MAX_CONTEXT_TOKENS, 'the detokenizer context stays short');
    return context;
  }
}
