// The scheduler's side of prompt logprobs, no GPU: which rows of each prefill chunk score and against
// which token, max_tokens 0 finishing without a sample, the prefix cache skipped for such requests, and
// the engine's request checks for max_tokens 0 and prompt_logprobs.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { InvalidRequestError } from '../../src/common/errors.js';
import { checkRequest } from '../../src/engine/validate.js';
import type { GenerateRequest } from '../../src/engine/types.js';
import { KvCacheManager } from '../../src/kv/kv-manager.js';
import { DEFAULT_SAMPLING } from '../../src/sampling/params.js';
import { Request } from '../../src/scheduler/request.js';
import { Scheduler, type RequestUpdate } from '../../src/scheduler/scheduler.js';
import type { PromptLogprobsChunk, RunnerOutput, SchedulerOutput } from '../../src/scheduler/types.js';

const BLOCK = 4;

function setup(maxNumBatchedTokens: number) {
  const kv = new KvCacheManager({ numBlocks: 64, blockSize: BLOCK, enablePrefixCaching: true });
  const scheduler = new Scheduler({ maxNumSeqs: 8, maxNumBatchedTokens, maxModelLen: 256, maxWaiting: 100 }, kv);
  return { kv, scheduler };
}

function req(id: string, prompt: number[], maxTokens: number, promptLogprobs: number | null = null): Request {
  return new Request({ requestId: id, promptTokenIds: prompt, sampling: DEFAULT_SAMPLING, maxTokens, stopTokenIds: [], promptLogprobs });
}

/** Fake runner: samples token 5 and "scores" each row with logprob = -target. */
function run(out: SchedulerOutput): RunnerOutput {
  const samples = new Map(out.sequences.filter((s) => s.sample).map((s) => [s.requestId, { tokenId: 5, logprob: -1, topLogprobs: [] }]));
  const promptLogprobs = new Map<string, PromptLogprobsChunk>();
  for (const s of out.sequences) {
    if (!s.promptLogprobs) continue;
    promptLogprobs.set(s.requestId, {
      firstIndex: s.startPosition + 1,
      entries: s.promptLogprobs.targets.map((t) => ({ tokenId: t, logprob: -t, rank: 1, top: [] })),
    });
  }
  return { samples, promptLogprobs };
}

function drain(scheduler: Scheduler): { plans: SchedulerOutput[]; updates: RequestUpdate[] } {
  const plans: SchedulerOutput[] = [];
  const updates: RequestUpdate[] = [];
  while (scheduler.hasWork) {
    const plan = scheduler.schedule();
    plans.push(plan);
    updates.push(...scheduler.update(plan, run(plan)));
  }
  return { plans, updates };
}

test('each prefill chunk scores its rows against the next prompt token; max_tokens 0 finishes without a sample', () => {
  const { scheduler } = setup(4);
  const prompt = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19];
  scheduler.addRequest(req('a', prompt, 0, 2));
  const { plans, updates } = drain(scheduler);
  const seqs = plans.flatMap((p) => p.sequences);
  assert.equal(
    seqs.map((s) => [s.startPosition, s.tokenIds.length, s.sample, s.promptLogprobs?.targets]),
    [
      [0, 4, false, [11, 12, 13, 14]],
      [4, 4, false, [15, 16, 17, 18]],
      // The last prompt row predicts no prompt token.
      [8, 2, false, [19]],
    ],
  );
  assert.ok(seqs.every((s) => s.promptLogprobs?.numTop === 2));
  assert.equal(
    updates.map((u) => [u.newTokenIds, u.finishReason, u.promptLogprobs?.firstIndex]),
    [
      [[], null, 1],
      [[], null, 5],
      [[], 'length', 9],
    ],
  );
});

test('with generation: the last chunk samples, and the scoring request never takes a prefix-cache hit', () => {
  const { kv, scheduler } = setup(64);
  const prompt = Array.from({ length: 12 }, (_, i) => 20 + i);
  scheduler.addRequest(req('warm', prompt, 1));
  drain(scheduler);
  scheduler.addRequest(req('cached', prompt, 1));
  scheduler.addRequest(req('scored', prompt, 2, 0));
  const first = scheduler.schedule();
  const byId = new Map(first.sequences.map((s) => [s.requestId, s]));
  assert.is(byId.get('cached')!.startPosition, 8); // two full blocks from the cache
  assert.is(byId.get('scored')!.startPosition, 0);
  assert.is(byId.get('scored')!.promptLogprobs!.targets.length, 11);
  assert.ok(byId.get('scored')!.sample);
  assert.is(byId.get('cached')!.promptLogprobs, undefined);
  const updates = scheduler.update(first, run(first));
  const scored = updates.find((u) => u.requestId === 'scored')!;
  assert.equal(scored.newTokenIds, [5]);
  assert.is(scored.promptLogprobs!.entries.length, 11);
  // The decode step has nothing left to score.
  const second = scheduler.schedule();
  assert.is(second.sequences.find((s) => s.requestId === 'scored')!.promptLogprobs, undefined);
  assert.ok(kv.numBlocks > 0);
});

test('checkRequest: max_tokens 0 only with prompt logprobs, prompt_logprobs in [0, 20]', () => {
  const base: GenerateRequest = {
    promptTokenIds: [1, 2, 3],
    sampling: DEFAULT_SAMPLING,
    maxTokens: 0,
    stop: [],
    stopTokenIds: [],
    ignoreEos: false,
    skipSpecialTokens: true,
  };
  const limits = { sessionLen: 64, vocabSize: 100 };
  assert.throws(
    () => checkRequest(base, limits),
    (e: unknown) => e instanceof InvalidRequestError && e.param === 'max_tokens',
  );
  assert.is(checkRequest({ ...base, promptLogprobs: 0 }, limits), 0);
  assert.is(checkRequest({ ...base, maxTokens: 5, promptLogprobs: 20 }, limits), 5);
  assert.throws(
    () => checkRequest({ ...base, promptLogprobs: 21 }, limits),
    (e: unknown) => e instanceof InvalidRequestError && e.param === 'prompt_logprobs',
  );
  assert.throws(
    () => checkRequest({ ...base, promptLogprobs: -1 }, limits),
    (e: unknown) => e instanceof InvalidRequestError,
  );
});

test.run();
