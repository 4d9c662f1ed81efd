// Sleeping through most of a known GPU wait instead of spinning on it.
//
// While any mapAsync or onSubmittedWorkDone is pending, Dawn's Node binding re-queues
// instance.ProcessEvents() with setImmediate, so awaiting a 30 ms decode step keeps one CPU core busy
// for 30 ms. On a software adapter (lavapipe) the CPU cores *are* the GPU: on the 2-core reference
// machine that spinning cost batch-16 decode a quarter of its throughput (docs/benchmarks.md). The
// pacer learns how long each kind of wait takes and sleeps on a timer for most of it before the
// map is requested, so the event loop is idle while the kernels run.

/** Smoothing of the learned durations: weight of the newest measurement. */
const LEARN_RATE = 0.5;
/** Below this many ms a nap is not worth a timer (Node's timers have ~1 ms granularity). */
const MIN_NAP_MS = 2;
/** A wait that resolves within this long after its nap found the work already done. */
const DONE_DURING_NAP_MS = 0.3;

export interface WaitPacerOptions {
  /** Sleep before waits at all (default: only on software adapters, where it was measured to pay). */
  enabled: boolean;
  /** Part of the learned duration slept before the wait is requested (the rest is polled). */
  napFraction?: number;
}

export class WaitPacer {
  /** Per kind: learned milliseconds per unit of work. */
  private readonly learnedMsPerUnit = new Map<string, number>();
  readonly enabled: boolean;
  private readonly napFraction: number;

  constructor(options: WaitPacerOptions) {
    this.enabled = options.enabled;
    this.napFraction = options.napFraction ?? 0.8;
    if (!(this.napFraction >= 0 && this.napFraction < 1)) throw new Error(`WaitPacer: napFraction must be in [0, 1), got ${this.napFraction}`);
  }

  /**
   * Runs `request` (which starts the Dawn wait, e.g. a mapAsync) after sleeping for part of what
   * waits of this `kind` are expected to take, and learns from how long this one takes. Call it
   * right after the submit whose results it waits for. Within a kind, time is taken to grow in
   * proportion to `work` (e.g. the step's token count; keep kinds narrow enough for that to hold:
   * a decode step of 4 rows does not cost 4 of 1 row).
   */
  async wait<T>(kind: string, request: () => Promise<T>, work = 1): Promise<T> {
    if (!this.enabled) return request();
    if (!(work > 0)) throw new Error(`WaitPacer.wait(${kind}): work must be positive, got ${work}`);
    const start = performance.now();
    const rate = this.learnedMsPerUnit.get(kind);
    const nap = rate === undefined ? 0 : rate * work * this.napFraction;
    if (nap >= MIN_NAP_MS) await sleep(nap);
    const napEnd = performance.now();
    const result = await request();
    const end = performance.now();
    const took = (end - start) / work;
    if (rate === undefined) {
      this.learnedMsPerUnit.set(kind, took);
    } else if (nap >= MIN_NAP_MS && end - napEnd < DONE_DURING_NAP_MS) {
      // The work was done before the nap ended: its real duration is unknown but shorter, so
      // halve the estimate (an EMA would take many overslept waits to come down).
      this.learnedMsPerUnit.set(kind, took / 2);
    } else {
      this.learnedMsPerUnit.set(kind, (1 - LEARN_RATE) * rate + LEARN_RATE * took);
    }
    return result;
  }

  /** What a wait of `kind` for `work` units is expected to take (ms), if one was seen. */
  expectedMs(kind: string, work = 1): number | undefined {
    const rate = this.learnedMsPerUnit.get(kind);
    return rate === undefined ? undefined : rate * work;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A wait kind for GPU work that scales with a token count: exact up to 16 (decode batches differ
 * row by row), then by power of two (prefill chunks).
 */
export function tokenBucket(numTokens: number): number {
  return numTokens <= 16 ? numTokens : 2 ** Math.ceil(Math.log2(numTokens));
}
