// Per-request output: turns new token ids into text deltas (incremental detokenization, stop
// strings) and logprob entries. Pure host code; the engine feeds it scheduler updates.
import { IncrementalDetokenizer } from '../tokenizer/detokenizer.js';
import { StopStringMatcher } from '../tokenizer/stop-strings.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import type { SampleResult } from '../sampling/params.js';
import type { TokenLogprob } from './types.js';
import type { FinishReason } from '../common/types.js';

const TOKEN_TEXT = new TextDecoder();

export interface ProcessedOutput {
  text: string;
  logprobs?: TokenLogprob[];
  /** A stop string matched: the engine must finish the request with 'stop'. */
  stoppedByString: boolean;
}

export class OutputProcessor {
  private readonly detokenizer: IncrementalDetokenizer;
  private readonly stops: StopStringMatcher | null;
  private stopped = false;

  constructor(
    private readonly tokenizer: Tokenizer,
    promptTokenIds: readonly number[],
    private readonly options: { stop: string[]; skipSpecialTokens: boolean; wantLogprobs: boolean; stopTokenIds: ReadonlySet<number> },
  ) {
    this.detokenizer = new IncrementalDetokenizer(tokenizer, promptTokenIds, { skipSpecialTokens: options.skipSpecialTokens });
    this.stops = options.stop.length ? new StopStringMatcher(options.stop) : null;
  }

  /**
   * Processes one step's new tokens. A token that ended the request through stopTokenIds (eos) adds
   * no text, as in vLLM. After a stop string matched, later text is dropped.
   */
  process(newTokenIds: readonly number[], sample: SampleResult | undefined, finishReason: FinishReason | null): ProcessedOutput {
    let raw = '';
    newTokenIds.forEach((id, i) => {
      const isLast = i === newTokenIds.length - 1;
      const endsByToken = isLast && finishReason === 'stop' && this.options.stopTokenIds.has(id);
      if (!endsByToken) raw += this.detokenizer.push(id);
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
        return { text, logprobs, stoppedByString: true };
      }
      if (finishReason !== null) text += this.stops.flush();
    }
    return { text, logprobs, stoppedByString: false };
  }

  private logprobEntry(sample: SampleResult): TokenLogprob {
    return {
      tokenId: sample.tokenId,
      token: this.tokenText(sample.tokenId),
      logprob: sample.logprob,
      top: sample.topLogprobs.map((t) => ({ tokenId: t.tokenId, token: this.tokenText(t.tokenId), logprob: t.logprob })),
    };
  }

  /** The text a token stands for in context, leading space included (decode([id]) would strip it). */
  private tokenText(id: number): string {
    return TOKEN_TEXT.decode(this.tokenizer.tokenBytes(id));
  }
}
