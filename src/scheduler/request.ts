// One generation request as the scheduler tracks it: its tokens, how many of them are in the KV
// cache, and where it is in its life (waiting -> running <-> preempted -> finished).
import assert from 'node:assert/strict';
import type { FinishReason } from '../common/types.js';
import type { BlockHash, KvSequence } from '../kv/block-hash.js';
import type { SamplingParams } from '../sampling/params.js';

export type RequestStatus = 'waiting' | 'running' | 'preempted' | 'finished';

export interface RequestInit {
  requestId: string;
  promptTokenIds: number[];
  sampling: SamplingParams;
  /** Output tokens at most; the engine has capped it so prompt + output fit the session length. */
  maxTokens: number;
  /** Token ids that finish the request (eos ids unless ignore_eos, plus the request's stop_token_ids). */
  stopTokenIds: number[];
  /**
   * Compute every prompt token's logprob with this many top alternatives (prompt_logprobs, echo with
   * logprobs); null/absent: none. Such a request skips the prefix cache, and with maxTokens 0 it
   * finishes ('length') once its prompt is computed, without sampling.
   */
  promptLogprobs?: number | null;
}

export class Request implements KvSequence {
  readonly requestId: string;
  readonly promptTokenIds: readonly number[];
  /** Sampled tokens so far; append through appendOutputToken (a direct push also works, just slower). */
  readonly outputTokenIds: number[] = [];
  readonly sampling: SamplingParams;
  readonly maxTokens: number;
  readonly promptLogprobs: number | null;
  stopTokenIds: ReadonlySet<number>;
  /** Tokens whose KV is in the cache. */
  numComputedTokens = 0;
  /** Prompt tokens served from the prefix cache when first scheduled (usage.cached_tokens). */
  numCachedTokens = 0;
  status: RequestStatus = 'waiting';
  finishReason: FinishReason | null = null;
  numPreemptions = 0;
  /** Prefix-cache hashes of the full blocks, maintained by the KV manager. */
  readonly blockHashes: BlockHash[] = [];
  /** prompt then output, grown in place so allTokenIds never copies. */
  private readonly tokenIds: number[];

  constructor(init: RequestInit) {
    assert(init.promptTokenIds.length > 0, `request ${init.requestId} has an empty prompt`);
    this.requestId = init.requestId;
    this.promptTokenIds = init.promptTokenIds.slice();
    this.tokenIds = init.promptTokenIds.slice();
    this.sampling = init.sampling;
    this.maxTokens = init.maxTokens;
    this.promptLogprobs = init.promptLogprobs ?? null;
    assert(init.maxTokens >= 1 || this.promptLogprobs !== null, `request ${init.requestId}: maxTokens 0 needs prompt logprobs`);
    this.stopTokenIds = new Set(init.stopTokenIds);
  }

  /** Prompt + output. */
  get numTokens(): number {
    return this.promptTokenIds.length + this.outputTokenIds.length;
  }

  /** Prompt then output; a live view, do not mutate. */
  get allTokenIds(): readonly number[] {
    this.syncTokenIds();
    return this.tokenIds;
  }

  tokenAt(position: number): number {
    const numPrompt = this.promptTokenIds.length;
    const id = position < numPrompt ? this.promptTokenIds[position] : this.outputTokenIds[position - numPrompt];
    assert(id !== undefined && position >= 0, `position ${position} is outside request ${this.requestId} (${this.numTokens} tokens)`);
    return id;
  }

  appendOutputToken(tokenId: number): void {
    this.outputTokenIds.push(tokenId);
    this.syncTokenIds();
  }

  get isFinished(): boolean {
    return this.status === 'finished';
  }

  /** Catches the combined view up with outputs pushed directly onto outputTokenIds. */
  private syncTokenIds(): void {
    const numPrompt = this.promptTokenIds.length;
    for (let i = this.tokenIds.length - numPrompt; i < this.outputTokenIds.length; i++) this.tokenIds.push(this.outputTokenIds[i]!);
  }
}
