// Plain data that crosses the scheduler <-> model runner boundary.
import type { SampleResult } from '../sampling/params.js';

/** One request's slice of a step: compute tokens [startPosition, startPosition + tokenIds.length). */
export interface ScheduledSequence {
  requestId: string;
  tokenIds: number[];
  /** The request's numComputedTokens before this step (the position of tokenIds[0]). */
  startPosition: number;
  /** The request's whole block table (KV block ids in position order). */
  blockIds: number[];
  /** True when this slice ends at the request's last known token, so the runner samples the next one. */
  sample: boolean;
}

export interface SchedulerOutput {
  step: number;
  sequences: ScheduledSequence[];
  numScheduledTokens: number;
  /** Requests moved back to waiting this step; their KV blocks were freed and will be recomputed. */
  preemptedRequestIds: string[];
  /**
   * Requests finished or aborted since the previous plan that had sequences (vLLM's finished_req_ids):
   * a runner that keeps per-request state, such as a worker shard's, drops it.
   */
  finishedRequestIds: string[];
}

/** What the runner hands back: a sample for every sequence that had sample = true. */
export interface RunnerOutput {
  samples: Map<string, SampleResult>;
}
