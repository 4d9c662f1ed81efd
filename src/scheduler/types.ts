// Plain data that crosses the scheduler <-> model runner boundary.
import type { SampleResult, TokenChoice } from '../sampling/params.js';

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
  /**
   * Prompt logprobs wanted (the request set prompt_logprobs): row i of this slice (position
   * startPosition + i) is scored against targets[i], the next prompt token, with numTop alternatives.
   * targets may be shorter than tokenIds (the last prompt row predicts no prompt token); absent when
   * no row of the slice scores.
   */
  promptLogprobs?: { numTop: number; targets: number[] };
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

/** One prompt token's logprob: log_softmax of the previous row's raw logits at this token. */
export interface PromptTokenLogprob {
  tokenId: number;
  logprob: number;
  /** 1-based rank among the vocabulary (vLLM's: how many logits are >= this token's). */
  rank: number;
  /** The numTop most likely tokens at this position, best first. */
  top: TokenChoice[];
}

/** The prompt logprobs one step computed for one request: prompt tokens [firstIndex, firstIndex + entries.length). */
export interface PromptLogprobsChunk {
  firstIndex: number;
  entries: PromptTokenLogprob[];
}

/** What the runner hands back: a sample for every sequence that had sample = true. */
export interface RunnerOutput {
  samples: Map<string, SampleResult>;
  /** For every sequence with promptLogprobs: its scored rows. */
  promptLogprobs?: Map<string, PromptLogprobsChunk>;
}
