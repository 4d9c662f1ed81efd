// One engine request as the HTTP layer drives it: pull deltas one at a time, and on close abort it
// if it has not finished (client gone, sibling failed, server draining) and record its metrics.
// Handlers own a ChoiceStream per choice and close every one of them in `finally`.
import type { EngineClient, GenerateDelta, GenerateRequest, PromptTokenLogprob, RequestTiming, TokenLogprob, Usage } from '../engine/types.js';
import type { FinishReason } from '../common/types.js';
import type { ServerMetrics } from './metrics.js';

export class ChoiceStream {
  private readonly iterator: AsyncIterator<GenerateDelta>;
  private readonly startedMs = performance.now();
  private firstTokenMs: number | null = null;
  private lastTokenMs: number | null = null;
  private numOutputTokens = 0;
  private timing: RequestTiming | undefined;
  private accepted = false;
  private finishReason: FinishReason | null = null;
  private closed = false;

  constructor(
    private readonly engine: EngineClient,
    readonly request: GenerateRequest & { requestId: string },
    signal: AbortSignal,
    private readonly metrics: ServerMetrics,
  ) {
    this.iterator = engine.generate(request, signal)[Symbol.asyncIterator]();
  }

  get finished(): boolean {
    return this.finishReason !== null;
  }

  /** The next delta, or null once the request has finished. Engine errors propagate. */
  async next(): Promise<GenerateDelta | null> {
    if (this.finishReason !== null || this.closed) return null;
    const result = await this.iterator.next();
    this.accepted = true;
    if (result.done) {
      this.finishReason = 'abort'; // the engine ended the stream without a reason: it was aborted
      return null;
    }
    const delta = result.value;
    if (delta.tokenIds.length > 0) {
      const now = performance.now();
      this.firstTokenMs ??= now;
      if (this.lastTokenMs !== null) this.metrics.observeInterToken((now - this.lastTokenMs) / 1000, delta.tokenIds.length);
      this.lastTokenMs = now;
    }
    this.numOutputTokens += delta.tokenIds.length;
    if (delta.timing) this.timing = delta.timing;
    if (delta.finishReason) this.finishReason = delta.finishReason;
    return delta;
  }

  /** Idempotent: aborts an unfinished request and records it in the metrics. Never throws. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.finishReason === null) this.engine.abort(this.request.requestId);
    // Always complete the iterator: a generator parked after its final delta holds its resources
    // (its `finally`) until someone calls return().
    this.iterator.return?.().catch(() => undefined);
    if (!this.accepted) return; // rejected up front (429, 400): not a served request
    const secondsSince = (ms: number) => (ms - this.startedMs) / 1000;
    this.metrics.observe({
      ttftSeconds: this.firstTokenMs === null ? null : secondsSince(this.firstTokenMs),
      e2eSeconds: secondsSince(performance.now()),
      numPromptTokens: this.request.promptTokenIds.length,
      numOutputTokens: this.numOutputTokens,
      finishReason: this.finishReason ?? 'abort',
      timing: this.timing,
    });
  }
}

/** Everything one choice produced, gathered for a non-streaming response. */
export interface CollectedChoice {
  text: string;
  tokenIds: number[];
  logprobs: TokenLogprob[];
  finishReason: FinishReason;
  /** Requests with prompt logprobs: one entry per prompt token (the first null). */
  promptLogprobs?: (PromptTokenLogprob | null)[];
  /** vLLM's stop_reason: the stop string or stop token id that ended it; null otherwise. */
  stopReason: string | number | null;
  usage: Usage;
}

export async function collect(stream: ChoiceStream): Promise<CollectedChoice> {
  const out: CollectedChoice = {
    text: '',
    tokenIds: [],
    logprobs: [],
    finishReason: 'abort',
    stopReason: null,
    usage: { promptTokens: stream.request.promptTokenIds.length, completionTokens: 0, cachedTokens: 0 },
  };
  for (let delta = await stream.next(); delta; delta = await stream.next()) {
    out.text += delta.text;
    out.tokenIds.push(...delta.tokenIds);
    if (delta.logprobs) out.logprobs.push(...delta.logprobs);
    if (delta.promptLogprobs) out.promptLogprobs = delta.promptLogprobs;
    out.usage = delta.usage;
    if (delta.finishReason) {
      out.finishReason = delta.finishReason;
      out.stopReason = delta.stopReason ?? null;
    }
  }
  return out;
}

/**
 * Interleaves several choices' deltas in arrival order, tagged with the choice index.
 * `first` holds each stream's already-awaited first delta (streams are primed before the HTTP
 * status is committed, so an engine refusal still becomes a 429/400/503).
 */
export async function* merge(
  streams: readonly ChoiceStream[],
  first: readonly (GenerateDelta | null)[],
): AsyncGenerator<{ index: number; delta: GenerateDelta }> {
  type Settled = { index: number; delta: GenerateDelta | null; error?: unknown };
  const pull = (index: number): Promise<Settled> =>
    streams[index]!.next().then(
      (delta) => ({ index, delta }),
      (error: unknown) => ({ index, delta: null, error }),
    );
  const pending = new Map<number, Promise<Settled>>();
  for (let i = 0; i < streams.length; i++) {
    const delta = first[i] ?? null;
    if (delta) {
      yield { index: i, delta };
      if (!streams[i]!.finished) pending.set(i, pull(i));
    }
  }
  while (pending.size > 0) {
    const settled = await Promise.race(pending.values());
    pending.delete(settled.index);
    if (settled.error !== undefined) throw settled.error;
    if (!settled.delta) continue;
    yield { index: settled.index, delta: settled.delta };
    if (!streams[settled.index]!.finished) pending.set(settled.index, pull(settled.index));
  }
}

/** Awaits every stream's first delta; on any failure closes them all and rethrows. */
export async function prime(streams: readonly ChoiceStream[]): Promise<(GenerateDelta | null)[]> {
  try {
    return await Promise.all(streams.map((s) => s.next()));
  } catch (err) {
    for (const s of streams) s.close();
    throw err;
  }
}
