// Continuous batching without prefill/decode modes (vLLM v1): every step each scheduled request's
// numComputedTokens catches up toward its numTokens within one token budget. Chunked prefill, prefix
// caching and preemption all fall out of that. First come, first served.
import assert from 'node:assert/strict';
import { EngineOverloadedError } from '../common/errors.js';
import type { FinishReason } from '../common/types.js';
import type { KvCacheManager } from '../kv/kv-manager.js';
import type { SampleResult } from '../sampling/params.js';
import type { Request } from './request.js';
import type { PromptLogprobsChunk, RunnerOutput, ScheduledSequence, SchedulerOutput } from './types.js';

export interface SchedulerConfig {
  /** Most requests running at once (--max-batch-size). */
  maxNumSeqs: number;
  /** Token budget per step; long prompts are split into chunks of at most this many tokens. */
  maxNumBatchedTokens: number;
  /** Session length: prompt + output never exceed it. */
  maxModelLen: number;
  /** addRequest throws EngineOverloadedError once this many requests wait. */
  maxWaiting: number;
}

/** One per request that produced a token, prompt logprobs or finished this step. */
export interface RequestUpdate {
  requestId: string;
  /** The sampled token ([] when the scheduler finished the request without running it); a stop/eos token is included. */
  newTokenIds: number[];
  sample?: SampleResult;
  /** Prompt logprobs computed this step (requests with promptLogprobs). */
  promptLogprobs?: PromptLogprobsChunk;
  finishReason: FinishReason | null;
}

export class Scheduler {
  private readonly config: SchedulerConfig;
  private readonly kv: KvCacheManager;
  private readonly requests = new Map<string, Request>();
  /** FCFS; preempted requests go back to the front. */
  private readonly waiting: Request[] = [];
  /** In admission order: the last one is the newest and the first to be preempted. */
  private readonly running: Request[] = [];
  /** Finished inside schedule() (they can never fit the KV cache); reported by the next update(). */
  private readonly pendingUpdates: RequestUpdate[] = [];
  /** Finished since the last schedule(); handed to the runner with the next plan. */
  private finishedRequestIds: string[] = [];
  private stepCounter = 0;
  private numPreemptions = 0;

  constructor(config: SchedulerConfig, kv: KvCacheManager) {
    for (const key of ['maxNumSeqs', 'maxNumBatchedTokens', 'maxModelLen'] as const) {
      assert(Number.isInteger(config[key]) && config[key] > 0, `scheduler ${key} must be a positive integer, got ${config[key]}`);
    }
    assert(config.maxWaiting >= 1, `scheduler maxWaiting must be at least 1 (Infinity for no limit), got ${config.maxWaiting}`);
    this.config = { ...config };
    this.kv = kv;
  }

  get numRunning(): number {
    return this.running.length;
  }

  get numWaiting(): number {
    return this.waiting.length;
  }

  /** Something left to schedule or to report. */
  get hasWork(): boolean {
    return this.running.length > 0 || this.waiting.length > 0 || this.pendingUpdates.length > 0;
  }

  get numPreemptionsTotal(): number {
    return this.numPreemptions;
  }

  /** Live requests only (waiting, running or preempted); finished ones are forgotten. */
  getRequest(requestId: string): Request | undefined {
    return this.requests.get(requestId);
  }

  /**
   * Queues a request that Engine.generate has already validated and capped, so a failed assertion
   * here is a bug, not a user error. The one runtime refusal is a full waiting queue.
   */
  addRequest(req: Request): void {
    const { maxModelLen, maxWaiting } = this.config;
    assert(!this.requests.has(req.requestId), `request id ${req.requestId} is already in use`);
    assert(req.status === 'waiting' && req.numComputedTokens === 0, `request ${req.requestId} was already scheduled once: create a new Request`);
    const numPrompt = req.promptTokenIds.length;
    assert(
      (req.maxTokens >= 1 || (req.maxTokens === 0 && req.promptLogprobs !== null)) && numPrompt + req.maxTokens <= maxModelLen,
      `request ${req.requestId}: ${numPrompt} prompt + ${req.maxTokens} output tokens do not fit maxModelLen ${maxModelLen}`,
    );
    if (this.waiting.length >= maxWaiting) throw new EngineOverloadedError(this.waiting.length, maxWaiting);
    this.requests.set(req.requestId, req);
    this.waiting.push(req);
  }

  /** Plans one step: running requests first (preempting the newest when blocks run out), then, if nothing
   *  was preempted, waiting requests in arrival order while seats and budget last. */
  schedule(): SchedulerOutput {
    const sequences: ScheduledSequence[] = [];
    const preemptedRequestIds: string[] = [];
    let tokenBudget = this.config.maxNumBatchedTokens;

    // 1. Running requests, oldest first. A preemption victim is always behind the current index.
    for (let i = 0; i < this.running.length && tokenBudget > 0; ) {
      const req = this.running[i]!;
      const numNewTokens = Math.min(req.numTokens - req.numComputedTokens, tokenBudget);
      assert(numNewTokens > 0, `running request ${req.requestId} has nothing to compute`);
      let scheduled = false;
      while (true) {
        if (!this.fitsInEmptyPool(req.numComputedTokens + numNewTokens)) {
          this.finishInternally(req, 'length'); // preempting others could never make room
          break;
        }
        if (this.kv.allocateSlots(req, numNewTokens) !== null) {
          scheduled = true;
          break;
        }
        if (this.running.length === 1) {
          // Alone and still out of blocks: it can never grow, so waiting for room would wedge forever.
          this.finishInternally(req, 'length');
          break;
        }
        const victim = this.running.pop()!;
        this.preempt(victim);
        preemptedRequestIds.push(victim.requestId);
        if (victim === req) break;
      }
      if (!scheduled) continue; // req left running; index i now points at the next one (or past the end)
      sequences.push(this.slice(req, req.numComputedTokens, numNewTokens));
      tokenBudget -= numNewTokens;
      i++;
    }

    // 2. Waiting requests, unless this step had to preempt (then memory is too tight to admit anyone).
    while (preemptedRequestIds.length === 0 && this.waiting.length > 0 && tokenBudget > 0 && this.running.length < this.config.maxNumSeqs) {
      const req = this.waiting[0]!;
      if (!this.fitsInEmptyPool(req.numTokens)) {
        this.waiting.shift();
        this.finishInternally(req, 'length'); // its tokens alone outgrow the whole KV cache
        continue;
      }
      // A request that wants prompt logprobs computes every prompt row, so it skips the prefix cache (as vLLM does).
      const useCache = req.numComputedTokens === 0 && req.promptLogprobs === null;
      const computed = useCache ? this.kv.getComputedBlocks(req) : { blockIds: [], numTokens: 0 };
      const start = req.numComputedTokens + computed.numTokens;
      const numNewTokens = Math.min(req.numTokens - start, tokenBudget);
      if (this.kv.allocateSlots(req, numNewTokens, computed.blockIds) === null) {
        if (this.running.length > 0) break; // FCFS: nobody jumps the queue; wait for blocks to free up
        this.waiting.shift();
        this.finishInternally(req, 'length'); // the pool is empty of others and it still does not fit
        continue;
      }
      this.waiting.shift();
      if (req.numPreemptions === 0) req.numCachedTokens = computed.numTokens;
      req.numComputedTokens = start;
      req.status = 'running';
      this.running.push(req);
      sequences.push(this.slice(req, start, numNewTokens));
      tokenBudget -= numNewTokens;
    }

    const numScheduledTokens = this.config.maxNumBatchedTokens - tokenBudget;
    // An empty plan never reaches the runner, so finished ids wait for the next plan that does.
    const finishedRequestIds = sequences.length > 0 ? this.finishedRequestIds : [];
    if (sequences.length > 0) this.finishedRequestIds = [];
    return { step: this.stepCounter++, sequences, numScheduledTokens, preemptedRequestIds, finishedRequestIds };
  }

  /** Applies the runner's samples: advances numComputedTokens, appends sampled tokens, checks stop ids,
   *  maxTokens and maxModelLen, caches full blocks and frees finished requests. Call it after every
   *  schedule(), even an empty one: requests the scheduler finished on its own are reported here. */
  update(output: SchedulerOutput, runnerOutput: RunnerOutput): RequestUpdate[] {
    const updates = this.pendingUpdates.splice(0);
    for (const seq of output.sequences) {
      const req = this.requests.get(seq.requestId);
      if (req === undefined || req.status !== 'running') continue; // finished or aborted since schedule()
      assert(req.numComputedTokens === seq.startPosition, `request ${req.requestId} moved between schedule() and update()`);
      req.numComputedTokens += seq.tokenIds.length;
      this.kv.cacheFullBlocks(req);
      const promptLogprobs = seq.promptLogprobs ? runnerOutput.promptLogprobs?.get(req.requestId) : undefined;
      assert(!seq.promptLogprobs || promptLogprobs !== undefined, `the runner returned no prompt logprobs for request ${req.requestId}`);
      const extra = promptLogprobs ? { promptLogprobs } : {};
      if (!seq.sample) {
        // max_tokens 0 (scoring): done once the whole prompt is computed, without sampling.
        const scored = req.maxTokens === 0 && req.numComputedTokens >= req.numTokens;
        if (scored) this.finish(req, 'length');
        if (scored || promptLogprobs) updates.push({ requestId: req.requestId, newTokenIds: [], finishReason: scored ? 'length' : null, ...extra });
        continue;
      }
      const sample = runnerOutput.samples.get(req.requestId);
      assert(sample !== undefined, `the runner returned no sample for request ${req.requestId}, whose slice had sample = true`);
      req.appendOutputToken(sample.tokenId);
      const finishReason = this.checkFinished(req, sample.tokenId);
      if (finishReason !== null) this.finish(req, finishReason);
      updates.push({ requestId: req.requestId, newTokenIds: [sample.tokenId], sample, finishReason, ...extra });
    }
    return updates;
  }

  /** Finishes a request from outside (a stop string matched: 'stop'; the client went away: 'abort') and
   *  frees its blocks at once. Unknown or already finished ids are ignored. */
  finishRequest(requestId: string, reason: FinishReason): void {
    const req = this.requests.get(requestId);
    if (req === undefined || req.status === 'finished') return;
    this.finish(req, reason);
  }

  private checkFinished(req: Request, tokenId: number): FinishReason | null {
    if (req.stopTokenIds.has(tokenId)) return 'stop';
    if (req.outputTokenIds.length >= req.maxTokens || req.numTokens >= this.config.maxModelLen) return 'length';
    return null;
  }

  private fitsInEmptyPool(numTokens: number): boolean {
    return Math.ceil(numTokens / this.kv.blockSize) <= this.kv.numBlocks;
  }

  private slice(req: Request, start: number, numTokens: number): ScheduledSequence {
    const seq: ScheduledSequence = {
      requestId: req.requestId,
      tokenIds: req.allTokenIds.slice(start, start + numTokens),
      startPosition: start,
      blockIds: this.kv.blockIds(req.requestId).slice(),
      sample: start + numTokens === req.numTokens && req.maxTokens > 0,
    };
    // Row p predicts prompt token p + 1: rows up to the second-to-last prompt token score.
    const numPrompt = req.promptTokenIds.length;
    if (req.promptLogprobs !== null && start < numPrompt - 1) {
      const targets = req.promptTokenIds.slice(start + 1, Math.min(start + numTokens, numPrompt - 1) + 1);
      seq.promptLogprobs = { numTop: req.promptLogprobs, targets };
    }
    return seq;
  }

  /** Frees the victim's blocks and puts it at the front of the queue; its outputs so far are kept and
   *  will be recomputed as part of its prompt (with whatever the prefix cache still holds). */
  private preempt(req: Request): void {
    this.kv.free(req);
    req.numComputedTokens = 0;
    req.status = 'preempted';
    req.numPreemptions++;
    this.numPreemptions++;
    this.waiting.unshift(req);
  }

  /** Finished by the scheduler itself (not through update's samples): report it in the next update(). */
  private finishInternally(req: Request, reason: FinishReason): void {
    this.finish(req, reason);
    this.pendingUpdates.push({ requestId: req.requestId, newTokenIds: [], finishReason: reason });
  }

  private finish(req: Request, reason: FinishReason): void {
    removeItem(this.running, req) || removeItem(this.waiting, req);
    this.kv.free(req);
    req.status = 'finished';
    req.finishReason = reason;
    this.requests.delete(req.requestId);
    this.finishedRequestIds.push(req.requestId);
  }
}

function removeItem<T>(items: T[], item: T): boolean {
  const i = items.indexOf(item);
  if (i < 0) return false;
  items.splice(i, 1);
  return true;
}
