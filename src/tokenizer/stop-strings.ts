// Stop strings over streamed text: text is emitted as soon as no stop string can still begin in it, so
// a stop split across chunks ("He" "llo wor" "ld" with stop "lo w") is caught and never shown.
export interface StopPush {
  /** Text safe to show now; when stopped, everything before the stop string. */
  emit: string;
  /** A stop string matched: generation should end, and later text is dropped. */
  stopped: boolean;
  /** The stop string that matched (when stopped). */
  stop?: string;
}

export class StopStringMatcher {
  private readonly stops: readonly string[];
  private readonly maxStopLength: number;
  /** Text not emitted yet because it could be the start of a stop string. */
  private held = '';
  private stopped = false;

  /**
   * Empty stop strings are ignored (they would match before any text). With includeStop, the matched
   * stop string stays at the end of the emitted text (vLLM's include_stop_str_in_output).
   */
  constructor(
    stops: readonly string[],
    private readonly includeStop = false,
  ) {
    this.stops = [...new Set(stops.filter((s) => s.length > 0))];
    this.maxStopLength = Math.max(0, ...this.stops.map((s) => s.length));
  }

  /**
   * Feeds new text. 1) look for a stop in held + text; 2) without one, emit all but the longest
   * suffix that is a proper prefix of some stop. A stop cannot begin in text already emitted: it
   * would have been held.
   */
  push(text: string): StopPush {
    if (this.stopped) return { emit: '', stopped: true };
    const buffer = this.held + text;
    const match = this.earliestStop(buffer);
    if (match !== null) {
      this.stopped = true;
      this.held = '';
      return { emit: buffer.slice(0, match.at + (this.includeStop ? match.stop.length : 0)), stopped: true, stop: match.stop };
    }
    const numHeld = this.partialStopLength(buffer);
    this.held = buffer.slice(buffer.length - numHeld);
    return { emit: buffer.slice(0, buffer.length - numHeld), stopped: false };
  }

  /** End of generation without a match: the held-back text (none after a stop). */
  flush(): string {
    const rest = this.held;
    this.held = '';
    return rest;
  }

  /**
   * Where the stop that completes first begins (ties: the longer stop, which begins earlier). By
   * completion, not by start, so the answer does not depend on how the text was chunked: streamed one
   * character at a time, the first stop to complete is the one that ends generation.
   */
  private earliestStop(buffer: string): { at: number; stop: string } | null {
    let bestEnd = Infinity;
    let best: { at: number; stop: string } | null = null;
    for (const stop of this.stops) {
      const at = buffer.indexOf(stop);
      if (at < 0) continue;
      const end = at + stop.length;
      if (end < bestEnd || (end === bestEnd && at < (best?.at ?? Infinity))) {
        bestEnd = end;
        best = { at, stop };
      }
    }
    return best;
  }

  /** Length of the longest suffix of buffer that some stop string starts with (shorter than that stop). */
  private partialStopLength(buffer: string): number {
    const limit = Math.min(buffer.length, this.maxStopLength - 1);
    for (let n = limit; n > 0; n--) {
      const suffix = buffer.slice(buffer.length - n);
      if (this.stops.some((stop) => stop.length > n && stop.startsWith(suffix))) return n;
    }
    return 0;
  }
}
