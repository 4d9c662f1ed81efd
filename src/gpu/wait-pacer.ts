// Sleeping through most of a known GPU wait instead of spinning on it.
//
// While any mapAsync or onSubmittedWorkDone is pending, Dawn's Node binding re-queues
// instance.ProcessEvents() with setImmediate, so awaiting a 30 ms decode step keeps one CPU core busy
// for 30 ms. On a software adapter (lavapipe) the CPU cores *are* the GPU: on the 2-core reference
// machine that spinning cost batch-16 decode a quarter of its throughput (docs/benchmarks.md). The
// pacer learns how long each kind of wait takes and sleeps on a timer for most of it before the
// map is requested, so the event loop is idle while the kernels run.
//
// Sleeping too long adds latency, sleeping too little only spins, so the estimate errs low: it is the
// fastest of the last few waits, and none is made before two have been seen. A one-off slow wait,
// such as a step that JIT-compiles its pipelines on first use (seconds on lavapipe), is then never
// what the next wait sleeps for.

/** Recent waits per kind that the estimate is the minimum of. */
const WINDOW = 4;
/** Waits of a kind seen before the pacer sleeps on it. */
const MIN_SAMPLES = 2;
/** Below this many ms a nap is not worth a timer (Node's timers have ~1 ms granularity). */
const MIN_NAP_MS = 2;
/** A wait that resolves within this long after its nap found the work already done. */
const DONE_DURING_NAP_MS = 0.3;

export interface WaitPacerOptions {
  /** Sleep before waits at all (default: only on software adapters, where it was measured to pay). */
  enabled: boolean;
  /** Part of the expected duration slept before the wait is requested (the rest is polled). */
  napFraction?: number;
  /** The clock, in ms (default: performance.now). Tests pass a fake one. */
  now?: () => number;
  /** Sleeps `ms` (default: a setTimeout). Tests pass one that advances their fake clock. */
  sleep?: (ms: number) => Promise<void>;
}

export class WaitPacer {
  /** Per kind: the last WINDOW waits' milliseconds per unit of work, oldest first. */
  private readonly recentMsPerUnit = new Map<string, number[]>();
  readonly enabled: boolean;
  private readonly napFraction: number;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(options: WaitPacerOptions) {
    this.enabled = options.enabled;
    this.napFraction = options.napFraction ?? 0.8;
    this.now = options.now ?? (() => performance.now());
    this.sleep = options.sleep ?? sleepOnTimer;
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
    const start = this.now();
    const expected = this.expectedMs(kind, work);
    const nap = expected === undefined ? 0 : expected * this.napFraction;
    if (nap >= MIN_NAP_MS) await this.sleep(nap);
    const napEnd = this.now();
    const result = await request();
    const end = this.now();
    // Done before the nap ended: the real duration is unknown but shorter, so record half of it
    // (the estimate then falls by half per overslept wait instead of creeping down).
    const overslept = nap >= MIN_NAP_MS && end - napEnd < DONE_DURING_NAP_MS;
    this.record(kind, ((end - start) / work) * (overslept ? 0.5 : 1));
    return result;
  }

  /** What a wait of `kind` for `work` units is expected to take (ms), once enough were seen. */
  expectedMs(kind: string, work = 1): number | undefined {
    const recent = this.recentMsPerUnit.get(kind);
    return recent && recent.length >= MIN_SAMPLES ? Math.min(...recent) * work : undefined;
  }

  private record(kind: string, msPerUnit: number): void {
    let recent = this.recentMsPerUnit.get(kind);
    if (!recent) this.recentMsPerUnit.set(kind, (recent = []));
    recent.push(msPerUnit);
    if (recent.length > WINDOW) recent.shift();
  }
}

function sleepOnTimer(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A wait kind for GPU work that scales with a token count: exact up to 16 (decode batches differ
 * row by row), then by power of two (prefill chunks).
 */
export function tokenBucket(numTokens: number): number {
  return numTokens <= 16 ? numTokens : 2 ** Math.ceil(Math.log2(numTokens));
}
