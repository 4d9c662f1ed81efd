// Per-request output: turns new token ids into text deltas (incremental detokenization, stop
// strings) and logprob entries. Pure host code; the engine feeds it scheduler updates.
import { IncrementalDetokenizer } from '../tokenizer/detokenizer.js';
import { StopStringMatcher } from '../tokenizer/stop-strings.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import type { SampleResult, TokenChoice } from '../sampling/params.js';
import type { PromptTokenLogprob, TokenLogprob } from './types.js';
import type { FinishReason } from '../common/types.js';

const TOKEN_TEXT = new TextDecoder('utf-8', { fatal: true });

export interface ProcessedOutput {
  text: string;
  logprobs?: TokenLogprob[];
  /** A stop string matched: the engine must finish the request with 'stop'. */
  stoppedByString: boolean;
  /** Set once the request stops (vLLM's stop_reason): the stop string, a stop_token_ids id, or null (eos, length). */
  stopReason?: string | number | null;
}

export interface OutputOptions {
  stop: string[];
  skipSpecialTokens: boolean;
  wantLogprobs: boolean;
  /** Every id that ends the request (eos unless ignore_eos, plus stop_token_ids): its text is not returned. */
  stopTokenIds: ReadonlySet<number>;
  /** The ids of stop_token_ids that are not eos: a stop on one of them reports it as stop_reason. */
  stopReasonTokenIds?: ReadonlySet<number>;
  includeStopStrInOutput?: boolean;
  spacesBetweenSpecialTokens?: boolean;
}

export class OutputProcessor {
  private readonly detokenizer: IncrementalDetokenizer;
  private readonly stops: StopStringMatcher | null;
  private stopped = false;

  constructor(
    private readonly tokenizer: Tokenizer,
    promptTokenIds: readonly number[],
    private readonly options: OutputOptions,
  ) {
    this.detokenizer = new IncrementalDetokenizer(tokenizer, promptTokenIds, {
      skipSpecialTokens: options.skipSpecialTokens,
      spacesBetweenSpecialTokens: options.spacesBetweenSpecialTokens ?? true,
    });
    this.stops = options.stop.length ? new StopStringMatcher(options.stop, options.includeStopStrInOutput ?? false) : null;
  }

  /**
   * Processes one step's new tokens. A token that ended the request through stopTokenIds (eos) adds
   * no text, as in vLLM. After a stop string matched, later text is dropped.
   */
  process(newTokenIds: readonly number[], sample: SampleResult | undefined, finishReason: FinishReason | null): ProcessedOutput {
    let raw = '';
    let stopReason: string | number | null = null;
    newTokenIds.forEach((id, i) => {
      const isLast = i === newTokenIds.length - 1;
      const endsByToken = isLast && finishReason === 'stop' && this.options.stopTokenIds.has(id);
      if (!endsByToken) raw += this.detokenizer.push(id);
      else if (this.options.stopReasonTokenIds?.has(id)) stopReason = id;
    });
    if (finishReason !== null) raw += this.detokenizer.flush();
    const logprobs = this.options.wantLogprobs && sample ? [this.logprobEntry(sample)] : undefined;
    if (this.stopped) return { text: '', logprobs, stoppedByString: true };
    let text = raw;
    if (this.stops) {
      const r = this.stops.push(raw);
      text = r.emit;
      if (r.stopped) {
        this.stopped = true;
        return { text, logprobs, stoppedByString: true, stopReason: r.stop ?? null };
      }
      if (finishReason !== null) text += this.stops.flush();
    }
    return { text, logprobs, stoppedByString: false, ...(finishReason !== null ? { stopReason } : {}) };
  }

  /** A prompt token's logprob entry (prompt logprobs), with token texts. */
  promptLogprobEntry(e: { tokenId: number; logprob: number; rank: number; top: readonly TokenChoice[] }): PromptTokenLogprob {
    return {
      ...this.tokenInfo(e.tokenId),
      logprob: e.logprob,
      rank: e.rank,
      top: e.top.map((t) => ({ ...this.tokenInfo(t.tokenId), logprob: t.logprob })),
    };
  }

  private logprobEntry(sample: SampleResult): TokenLogprob {
    return {
      ...this.tokenInfo(sample.tokenId),
      logprob: sample.logprob,
      top: sample.topLogprobs.map((t) => ({ ...this.tokenInfo(t.tokenId), logprob: t.logprob })),
    };
  }

  /**
   * The text a token stands for in context, leading space included (decode([id]) would strip it),
   * and its own bytes. A token whose bytes are not whole UTF-8 characters (a byte-fallback <0xE2>, a
   * byte-level piece of a character) is spelled the way OpenAI spells it, "bytes:\\xe2\\x80": never
   * U+FFFD, so distinct tokens stay distinct keys of completions' top_logprobs.
   */
  private tokenInfo(tokenId: number): { tokenId: number; token: string; bytes: number[] } {
    const bytes = this.tokenizer.tokenBytes(tokenId);
    return { tokenId, token: tokenTextOf(bytes), bytes: [...bytes] };
  }
}

export function tokenTextOf(bytes: Uint8Array): string {
  try {
    return TOKEN_TEXT.decode(bytes);
  } catch {
    return `bytes:${[...bytes].map((b) => `\\x${b.toString(16).padStart(2, '0')}`).join('')}`;
  }
}
