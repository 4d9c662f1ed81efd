// The per-step changes sent to worker-process shards (src/runner/worker/step-delta.ts), no GPU: the
// real scheduler drives requests through chunked prefill, decode, preemption, aborts and id reuse,
// every step crosses a structured-clone round trip like the fork channel, and the worker's rebuilt
// StepMetadata and sampling rows must equal what the in-process path builds from the full data.
import { deserialize, serialize } from 'node:v8';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { KvCacheManager } from '../../src/kv/kv-manager.js';
import { DEFAULT_SAMPLING, type SampleResult, type SamplingParams, type SamplingRow } from '../../src/sampling/params.js';
import { Request } from '../../src/scheduler/request.js';
import { Scheduler } from '../../src/scheduler/scheduler.js';
import type { SchedulerOutput } from '../../src/scheduler/types.js';
import type { StepDelta } from '../../src/runner/worker/messages.js';
import { StepDeltaDecoder, StepDeltaEncoder } from '../../src/runner/worker/step-delta.js';
import type { StepInput } from '../../src/runner/shard.js';
import { buildStepMetadata } from '../../src/runner/step-metadata.js';

const BLOCK = 4;
const MAX_LEN = 96;
const MAX_BLOCKS = Math.ceil(MAX_LEN / BLOCK);

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Rows as the engine builds them (the Request's own arrays, so unchanged prompts are the same objects). */
function stepInput(scheduler: Scheduler, output: SchedulerOutput): StepInput {
  const meta = buildStepMetadata(output, BLOCK, MAX_BLOCKS);
  const rows = meta.sampledRequestIds.map((id): SamplingRow => {
    const r = scheduler.getRequest(id)!;
    return { params: r.sampling, promptTokenIds: r.promptTokenIds, outputTokenIds: r.outputTokenIds, step: r.outputTokenIds.length };
  });
  return { output, meta, rows };
}

const plainRow = (r: SamplingRow) => ({ params: { ...r.params }, prompt: Array.from(r.promptTokenIds), output: Array.from(r.outputTokenIds), step: r.step });

/** Encodes, sends through a structured clone, decodes, and checks the worker's view against the step. */
class Link {
  readonly encoder: StepDeltaEncoder;
  readonly decoder = new StepDeltaDecoder();
  readonly deltas: StepDelta[] = [];
  constructor(readonly withSampling: boolean) {
    this.encoder = new StepDeltaEncoder(withSampling);
  }
  send(step: StepInput, where: string): StepDelta {
    const delta = this.encoder.encode(step);
    this.deltas.push(delta);
    const received = deserialize(serialize(delta)) as StepDelta;
    const { sequences, rows } = this.decoder.apply(received);
    assert.equal(buildStepMetadata({ sequences }, BLOCK, MAX_BLOCKS), step.meta, `${where}: metadata`);
    assert.equal(rows.map(plainRow), this.withSampling ? step.rows.map(plainRow) : [], `${where}: sampling rows`);
    assert.is(this.decoder.numHeld, this.encoder.numTracked, `${where}: both sides hold the same requests`);
    return delta;
  }
}

function paramsFor(k: number): SamplingParams {
  return k % 3 === 0
    ? { ...DEFAULT_SAMPLING, temperature: 0 }
    : { ...DEFAULT_SAMPLING, temperature: 0.8, topK: 20, repetitionPenalty: 1.1, frequencyPenalty: 0.3, presencePenalty: 0.2, seed: k };
}

test('the scheduler through chunked prefill, preemption, aborts and id reuse: the worker rebuilds every step exactly', () => {
  const random = rng(12);
  const kv = new KvCacheManager({ numBlocks: 24, blockSize: BLOCK, enablePrefixCaching: true });
  const scheduler = new Scheduler({ maxNumSeqs: 5, maxNumBatchedTokens: 20, maxModelLen: MAX_LEN, maxWaiting: 100 }, kv);
  const links = [new Link(true), new Link(false)];
  const live = new Set<string>();
  let numAdded = 0;
  let numPreempted = 0;
  let numAborted = 0;
  let numReused = 0;
  for (let stepNo = 0; stepNo < 600; stepNo++) {
    if (live.size < 7 && random() < 0.3 && stepNo < 450) {
      // Reuse a finished request's id now and then: a new Request under a known name.
      const reuse = numAdded > 0 && random() < 0.3 ? `r${Math.floor(random() * numAdded)}` : null;
      const id = reuse && !live.has(reuse) ? reuse : `r${numAdded++}`;
      if (id === reuse) numReused++;
      const shared = [5, 6, 7, 8, 9, 10, 11, 12]; // a common prefix, so the prefix cache hands out shared blocks
      const prompt = [
        ...shared.slice(0, Math.floor(random() * 9)),
        ...Array.from({ length: 1 + Math.floor(random() * 30) }, () => 1 + Math.floor(random() * 90)),
      ];
      scheduler.addRequest(
        new Request({ requestId: id, promptTokenIds: prompt, sampling: paramsFor(numAdded), maxTokens: 5 + Math.floor(random() * 40), stopTokenIds: [] }),
      );
      live.add(id);
    }
    if (live.size > 0 && random() < 0.04) {
      const victim = [...live][Math.floor(random() * live.size)]!;
      scheduler.finishRequest(victim, 'abort');
      live.delete(victim);
      numAborted++;
    }
    const output = scheduler.schedule();
    numPreempted += output.preemptedRequestIds.length;
    if (output.sequences.length > 0) {
      const step = stepInput(scheduler, output);
      for (const link of links) link.send(step, `step ${stepNo} rank ${link.withSampling ? 0 : 1}`);
    }
    const samples = new Map<string, SampleResult>();
    for (const seq of output.sequences) if (seq.sample) samples.set(seq.requestId, { tokenId: 1 + Math.floor(random() * 90), logprob: 0, topLogprobs: [] });
    for (const u of scheduler.update(output, { samples })) if (u.finishReason !== null) live.delete(u.requestId);
  }
  assert.ok(numPreempted > 3, `preemptions: ${numPreempted}`);
  assert.ok(numAborted > 3, `aborts: ${numAborted}`);
  assert.ok(numReused > 3, `reused ids: ${numReused}`);
  // Every request has finished: the next plan tells the workers, which then hold only the new one.
  assert.is(scheduler.hasWork, false);
  const rank0 = links[0]!;
  const extra = new Request({ requestId: 'last', promptTokenIds: [3], sampling: paramsFor(1), maxTokens: 5, stopTokenIds: [] });
  scheduler.addRequest(extra);
  for (let i = 0; i < 2; i++) {
    const output = scheduler.schedule();
    for (const link of links) link.send(stepInput(scheduler, output), `tail step ${i}`);
    scheduler.update(output, { samples: new Map([['last', { tokenId: 4, logprob: 0, topLogprobs: [] }]]) });
  }
  assert.is(rank0.decoder.numHeld, 1, 'only the running request is held');
  assert.is(links[1]!.decoder.numHeld, 1, 'on every rank');
  // Preemption drops the request at once, whatever else happens to it.
  const dropped = rank0.deltas.filter((d) => d.drop?.length).length;
  assert.ok(dropped > 0);
});

/** Runs `n` requests with prompts of `promptLen` to `decodeSteps` tokens; returns the deltas of the last step. */
function decodeRun(promptLen: number, decodeSteps: number, withSampling: boolean): { delta: StepDelta; bytes: number; firstDecode: StepDelta } {
  const kv = new KvCacheManager({ numBlocks: 512, blockSize: 16, enablePrefixCaching: false });
  const scheduler = new Scheduler({ maxNumSeqs: 4, maxNumBatchedTokens: 4096, maxModelLen: 4096, maxWaiting: 100 }, kv);
  for (let k = 0; k < 4; k++) {
    const prompt = Array.from({ length: promptLen }, (_, i) => 3 + ((i * 37 + k * 11) % 500));
    scheduler.addRequest(
      new Request({ requestId: `cmpl-${k}-0123456789abcdef`, promptTokenIds: prompt, sampling: paramsFor(k + 1), maxTokens: 1000, stopTokenIds: [] }),
    );
  }
  const encoder = new StepDeltaEncoder(withSampling);
  let last: StepDelta | null = null;
  let firstDecode: StepDelta | null = null;
  for (let s = 0; s <= decodeSteps; s++) {
    const output = scheduler.schedule();
    const meta = buildStepMetadata(output, 16, 256);
    const rows = meta.sampledRequestIds.map((id): SamplingRow => {
      const r = scheduler.getRequest(id)!;
      return { params: r.sampling, promptTokenIds: r.promptTokenIds, outputTokenIds: r.outputTokenIds, step: r.outputTokenIds.length };
    });
    last = encoder.encode({ output, meta, rows });
    if (s === 1) firstDecode = last;
    const samples = new Map(output.sequences.map((q) => [q.requestId, { tokenId: 7, logprob: 0, topLogprobs: [] } as SampleResult]));
    scheduler.update(output, { samples });
  }
  return { delta: last!, bytes: serialize(last).byteLength, firstDecode: firstDecode! };
}

test('a decode step carries a few words per request: no prompts, outputs, tables or ids, whatever the prompt length', () => {
  for (const withSampling of [true, false]) {
    // 50 decode steps in: 100 + 50 = 150 tokens, so no request crosses a 16-token block boundary this step.
    const short = decodeRun(100, 50, withSampling);
    const long = decodeRun(1000, 50, withSampling);
    for (const r of [short, long]) {
      assert.is(r.delta.add, undefined, 'no request is sent again');
      assert.is(r.delta.sampling, undefined, 'no prompt or params are sent again');
      assert.is(r.delta.drop, undefined);
      // handle, position, 1 token, 0 new blocks, flags (+ step, 1 new output on the sampling shard) + the token (+ the output).
      assert.is(r.delta.seqs.length, 4 * (withSampling ? 9 : 6));
      assert.is(r.firstDecode.add, undefined);
    }
    assert.is(long.bytes, short.bytes, 'the bytes do not depend on the prompt length');
    assert.ok(short.bytes < 200, `${short.bytes} bytes`);
  }
});

test('a block table that does not extend the sent one, or changed sampling params, is sent again in full', () => {
  const enc = new StepDeltaEncoder(true);
  const dec = new StepDeltaDecoder();
  const params = { ...DEFAULT_SAMPLING, temperature: 0 };
  const prompt = [1, 2, 3, 4, 5];
  const outputs: number[] = [];
  const step = (blockIds: number[], tokenIds: number[], start: number, p: SamplingParams = params) => {
    const output: SchedulerOutput = {
      step: 0,
      sequences: [{ requestId: 'a', tokenIds, startPosition: start, blockIds, sample: true }],
      numScheduledTokens: tokenIds.length,
      preemptedRequestIds: [],
      finishedRequestIds: [],
    };
    const meta = buildStepMetadata(output, BLOCK, MAX_BLOCKS);
    const rows = [{ params: p, promptTokenIds: prompt, outputTokenIds: outputs, step: outputs.length }];
    const delta = enc.encode({ output, meta, rows });
    const got = dec.apply(deserialize(serialize(delta)) as StepDelta);
    assert.equal(buildStepMetadata(got, BLOCK, MAX_BLOCKS), meta);
    assert.equal(got.rows.map(plainRow), rows.map(plainRow));
    return delta;
  };
  assert.ok(step([3, 9], prompt, 0).add);
  outputs.push(11);
  const grow = step([3, 9], [11], 5);
  assert.is(grow.add, undefined);
  assert.equal(Array.from(grow.seqs.slice(-2)), [11, 11], 'the token and the appended output');
  outputs.push(12);
  const moved = step([4, 9], [12], 6);
  assert.equal(moved.drop, [1]);
  assert.equal(Array.from(moved.add![0]!.blockIds), [4, 9]);
  outputs.push(13);
  params.temperature = 0.5; // edited in place: still noticed
  const edited = step([4, 9], [13], 7);
  assert.ok(edited.sampling, 'the sampling state is sent again');
  assert.is(edited.add, undefined, 'the block table is kept');
});

test.run();
