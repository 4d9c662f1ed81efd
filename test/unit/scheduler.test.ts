// The continuous-batching scheduler driven step by step by a fake model, no GPU. The fake model keeps a
// simulated KV cache (token ids stored at [blockId][slot]) and samples from a hash of the WHOLE context
// it reads back through the block table, so a wrong block table, a stale prefix-cache hit or a skipped
// recompute after preemption changes the token stream.
import { AssertionError } from 'node:assert';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { EngineOverloadedError } from '../../src/common/errors.js';
import type { FinishReason } from '../../src/common/types.js';
import { KvCacheManager, type KvCacheManagerOptions } from '../../src/kv/kv-manager.js';
import { DEFAULT_SAMPLING, type SampleResult } from '../../src/sampling/params.js';
import { Request } from '../../src/scheduler/request.js';
import { Scheduler, type RequestUpdate, type SchedulerConfig } from '../../src/scheduler/scheduler.js';
import type { RunnerOutput, SchedulerOutput } from '../../src/scheduler/types.js';

const VOCAB = 101;

class FakeModel {
  private readonly kvSlots = new Map<number, number[]>();
  constructor(private readonly blockSize: number) {}

  execute(out: SchedulerOutput): RunnerOutput {
    const samples = new Map<string, SampleResult>();
    for (const seq of out.sequences) {
      seq.tokenIds.forEach((tokenId, j) => this.write(seq.blockIds, seq.startPosition + j, tokenId));
      if (!seq.sample) continue;
      let h = 7;
      for (let pos = 0; pos < seq.startPosition + seq.tokenIds.length; pos++) {
        const tokenId = this.read(seq.blockIds, pos);
        assert.ok(tokenId !== undefined, `${seq.requestId}: KV at position ${pos} was never written`);
        h = (h * 31 + tokenId * 7 + pos) % 1_000_003;
      }
      samples.set(seq.requestId, { tokenId: h % VOCAB, logprob: -1, topLogprobs: [] });
    }
    return { samples };
  }

  private write(blockIds: number[], pos: number, tokenId: number): void {
    const blockId = blockIds[Math.floor(pos / this.blockSize)];
    assert.ok(blockId !== undefined, `no block for position ${pos} in table [${blockIds}]`);
    if (!this.kvSlots.has(blockId)) this.kvSlots.set(blockId, []);
    this.kvSlots.get(blockId)![pos % this.blockSize] = tokenId;
  }

  private read(blockIds: number[], pos: number): number | undefined {
    const blockId = blockIds[Math.floor(pos / this.blockSize)];
    return blockId === undefined ? undefined : this.kvSlots.get(blockId)?.[pos % this.blockSize];
  }
}

interface Spec {
  id: string;
  prompt: number[];
  maxTokens?: number;
  stop?: number[];
}

function makeRequest(spec: Spec): Request {
  return new Request({
    requestId: spec.id,
    promptTokenIds: spec.prompt,
    sampling: { ...DEFAULT_SAMPLING },
    maxTokens: spec.maxTokens ?? 8,
    stopTokenIds: spec.stop ?? [],
  });
}

const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => (from + i) % VOCAB);

const roomy: SchedulerConfig = { maxNumSeqs: 64, maxNumBatchedTokens: 4096, maxModelLen: 256, maxWaiting: 100 };

class Harness {
  readonly kv: KvCacheManager;
  readonly sched: Scheduler;
  readonly model: FakeModel;
  readonly outputs = new Map<string, number[]>();
  readonly finishReasons = new Map<string, FinishReason>();
  readonly steps: SchedulerOutput[] = [];

  constructor(
    readonly config: SchedulerConfig,
    kvOptions: Partial<KvCacheManagerOptions> = {},
  ) {
    this.kv = new KvCacheManager({ numBlocks: 256, blockSize: 4, enablePrefixCaching: true, ...kvOptions });
    this.sched = new Scheduler(config, this.kv);
    this.model = new FakeModel(this.kv.blockSize);
  }

  add(spec: Spec): Request {
    const req = makeRequest(spec);
    this.sched.addRequest(req);
    this.outputs.set(spec.id, []);
    return req;
  }

  /** One schedule -> execute -> update round, checking the step's invariants. */
  step(): { out: SchedulerOutput; updates: RequestUpdate[] } {
    const out = this.sched.schedule();
    assert.ok(out.numScheduledTokens <= this.config.maxNumBatchedTokens, 'token budget exceeded');
    assert.is(
      out.numScheduledTokens,
      out.sequences.reduce((n, s) => n + s.tokenIds.length, 0),
    );
    assert.ok(out.sequences.length <= this.config.maxNumSeqs, 'maxNumSeqs exceeded');
    assert.ok(this.sched.numRunning <= this.config.maxNumSeqs);
    assert.is(new Set(out.sequences.map((s) => s.requestId)).size, out.sequences.length, 'a request scheduled twice');
    this.steps.push(out);
    const updates = this.sched.update(out, this.model.execute(out));
    for (const u of updates) {
      assert.ok(!this.finishReasons.has(u.requestId), `${u.requestId} reported after it finished`);
      this.outputs.get(u.requestId)!.push(...u.newTokenIds);
      if (u.finishReason) this.finishReasons.set(u.requestId, u.finishReason);
    }
    return { out, updates };
  }

  runToEnd(maxSteps = 2000): void {
    for (let i = 0; this.sched.hasWork; i++) {
      assert.ok(i < maxSteps, 'scheduler did not drain: wedged?');
      this.step();
    }
    this.assertPoolEmpty();
  }

  assertPoolEmpty(): void {
    assert.is(this.kv.numUsedBlocks, 0, 'blocks leaked');
    assert.is(this.kv.numFreeBlocks, this.kv.numBlocks);
    assert.is(this.sched.numRunning + this.sched.numWaiting, 0);
  }

  scheduledTokensOf(id: string): number {
    return this.steps.reduce((n, out) => n + (out.sequences.find((s) => s.requestId === id)?.tokenIds.length ?? 0), 0);
  }
}

/** The token streams with plenty of room: the reference the constrained runs must reproduce. */
function reference(specs: Spec[], config: SchedulerConfig = roomy): Map<string, number[]> {
  const h = new Harness(config, { enablePrefixCaching: false });
  specs.forEach((s) => h.add(s));
  h.runToEnd();
  return h.outputs;
}

test('chunked prefill splits a long prompt across steps under a small token budget', () => {
  const spec = { id: 'a', prompt: range(30, 3), maxTokens: 4 };
  const h = new Harness({ ...roomy, maxNumBatchedTokens: 8 });
  h.add(spec);
  const chunks = [0, 1, 2, 3].map(() => h.step().out.sequences[0]!);
  assert.equal(
    chunks.map((c) => c.startPosition),
    [0, 8, 16, 24],
  );
  assert.equal(
    chunks.map((c) => c.tokenIds.length),
    [8, 8, 8, 6],
  );
  assert.equal(
    chunks.map((c) => c.sample),
    [false, false, false, true],
  );
  assert.equal(
    chunks.flatMap((c) => c.tokenIds),
    spec.prompt,
  );
  assert.is(h.outputs.get('a')!.length, 1, 'the last chunk samples the first token');
  h.runToEnd();
  assert.equal(h.outputs.get('a'), reference([spec]).get('a'));
  assert.is(h.finishReasons.get('a'), 'length');
});

test('a running request keeps decoding while a new one prefills in the same step', () => {
  const h = new Harness({ ...roomy, maxNumBatchedTokens: 8 });
  const a = { id: 'a', prompt: range(5), maxTokens: 10 },
    b = { id: 'b', prompt: range(20, 40), maxTokens: 3 };
  h.add(a);
  h.step();
  h.step(); // a prefilled and decoding
  h.add(b);
  const { out } = h.step();
  assert.equal(
    out.sequences.map((s) => [s.requestId, s.tokenIds.length, s.sample]),
    [
      ['a', 1, true],
      ['b', 7, false],
    ],
  );
  const next = h.step().out;
  assert.equal(
    next.sequences.map((s) => [s.requestId, s.startPosition, s.tokenIds.length]),
    [
      ['a', 7, 1],
      ['b', 7, 7],
    ],
  );
  h.runToEnd();
  const ref = reference([a, b]);
  assert.equal(h.outputs.get('a'), ref.get('a'));
  assert.equal(h.outputs.get('b'), ref.get('b'));
});

test('maxNumSeqs caps the batch and waiting requests are admitted first come, first served', () => {
  const specs = range(6).map((i) => ({ id: `r${i}`, prompt: range(3 + i, 10 * i), maxTokens: 2 + ((i * 5) % 7) }));
  const h = new Harness({ ...roomy, maxNumSeqs: 2 });
  specs.forEach((s) => h.add(s));
  const firstStep = new Map<string, number>();
  while (h.sched.hasWork) {
    const { out } = h.step();
    for (const s of out.sequences) if (!firstStep.has(s.requestId)) firstStep.set(s.requestId, out.step);
  }
  h.assertPoolEmpty();
  const order = specs.map((s) => firstStep.get(s.id)!);
  assert.equal(
    order,
    order.slice().sort((x, y) => x - y),
    'admission order follows arrival order',
  );
  assert.ok(order[2]! > order[1]!, 'the third request waited for a seat');
  const ref = reference(specs);
  for (const s of specs) assert.equal(h.outputs.get(s.id), ref.get(s.id), s.id);
});

test('a waiting request short of blocks is not overtaken by a smaller one behind it (FCFS)', () => {
  // 8 blocks of 4. a holds 4-5 blocks while it runs; b needs 5 at once; c would fit in 1.
  const h = new Harness(roomy, { numBlocks: 8 });
  const specs = [
    { id: 'a', prompt: range(14), maxTokens: 6 },
    { id: 'b', prompt: range(17, 30), maxTokens: 2 },
    { id: 'c', prompt: range(2, 60), maxTokens: 2 },
  ];
  specs.forEach((s) => h.add(s));
  h.runToEnd();
  const firstStep = (id: string) => h.steps.find((out) => out.sequences.some((s) => s.requestId === id))!.step;
  const lastStep = (id: string) => h.steps.filter((out) => out.sequences.some((s) => s.requestId === id)).at(-1)!.step;
  assert.ok(firstStep('b') > lastStep('a'), 'b had to wait for a');
  assert.ok(firstStep('c') >= firstStep('b'), 'c did not jump ahead of b');
  const ref = reference(specs);
  for (const s of specs) assert.equal(h.outputs.get(s.id), ref.get(s.id), s.id);
});

test('a request arriving while the same prompt is mid-prefill only hits blocks already computed', () => {
  const prompt = range(40, 5);
  const h = new Harness({ ...roomy, maxNumBatchedTokens: 16 });
  h.add({ id: 'first', prompt, maxTokens: 3 });
  h.step();
  h.step(); // first: 32 of 40 computed; running requests take the whole budget until then
  const second = h.add({ id: 'second', prompt, maxTokens: 3 });
  const { out } = h.step(); // first's last 8 tokens, and second with the remaining 8 of budget
  assert.equal(
    out.sequences.map((s) => [s.requestId, s.startPosition, s.tokenIds.length]),
    [
      ['first', 32, 8],
      ['second', 32, 8],
    ],
  );
  assert.is(second.numCachedTokens, 32, 'blocks still being computed in this step are not hits');
  h.runToEnd();
  assert.equal(h.outputs.get('second'), h.outputs.get('first'));
});

for (const enablePrefixCaching of [false, true]) {
  test(`preemption under a tiny pool reproduces the unconstrained token streams (prefix caching ${enablePrefixCaching})`, () => {
    // Each request grows to 11 + 14 = 25 tokens = 7 blocks of 4; 4 of them together would need 28 of 12.
    const specs = range(4).map((i) => ({ id: `p${i}`, prompt: range(11, 20 * i + 1), maxTokens: 14 }));
    const h = new Harness({ ...roomy, maxNumBatchedTokens: 16 }, { numBlocks: 12, enablePrefixCaching });
    specs.forEach((s) => h.add(s));
    let sawPreemptionStep = false;
    let admissionOrder: string[] = []; // running requests, oldest admission first
    while (h.sched.hasWork) {
      const before = admissionOrder.slice();
      const { out } = h.step();
      assert.ok(h.kv.numUsedBlocks <= 12);
      for (const s of out.sequences) if (!admissionOrder.includes(s.requestId)) admissionOrder.push(s.requestId);
      admissionOrder = admissionOrder.filter((id) => !out.preemptedRequestIds.includes(id) && !h.finishReasons.has(id));
      if (out.preemptedRequestIds.length > 0) {
        sawPreemptionStep = true;
        assert.equal(out.preemptedRequestIds, before.slice(-out.preemptedRequestIds.length).reverse(), 'the newest are preempted first');
        for (const id of out.preemptedRequestIds) {
          assert.ok(!out.sequences.some((s) => s.requestId === id), 'a preempted request is not scheduled in that step');
          assert.is(h.sched.getRequest(id)!.status, 'preempted');
          assert.equal(h.kv.blockIds(id), []);
        }
      }
    }
    h.assertPoolEmpty();
    assert.ok(sawPreemptionStep);
    assert.ok(h.sched.numPreemptionsTotal > 0);
    const ref = reference(specs);
    for (const s of specs) {
      assert.equal(h.outputs.get(s.id), ref.get(s.id), s.id);
      assert.is(h.finishReasons.get(s.id), 'length');
      assert.is(h.outputs.get(s.id)!.length, 14);
    }
  });
}

test('aborting frees blocks at once; an aborted waiting request is never scheduled', () => {
  const h = new Harness({ ...roomy, maxNumSeqs: 1 });
  const a = h.add({ id: 'a', prompt: range(9), maxTokens: 50 });
  h.add({ id: 'b', prompt: range(9, 30), maxTokens: 50 });
  h.add({ id: 'c', prompt: range(5, 60), maxTokens: 2 });
  h.step();
  h.step();
  assert.is(h.kv.numUsedBlocks, 3);
  h.sched.finishRequest('b', 'abort'); // waiting
  assert.is(h.sched.numWaiting, 1);
  assert.is(h.sched.getRequest('b'), undefined);
  const out = h.sched.schedule();
  h.sched.finishRequest('a', 'abort'); // running, between schedule and update
  h.sched.finishRequest('a', 'abort'); // idempotent
  assert.is(a.status, 'finished');
  assert.is(a.finishReason, 'abort');
  assert.is(h.kv.numUsedBlocks, 0);
  assert.equal(h.sched.update(out, h.model.execute(out)), [], 'the aborted request gets no update');
  h.runToEnd();
  assert.ok(h.steps.every((s) => s.sequences.every((q) => q.requestId !== 'b')));
  assert.is(h.finishReasons.get('c'), 'length');
});

test('maxTokens ends a request with finish_reason length', () => {
  const h = new Harness({ ...roomy, maxModelLen: 16 });
  h.add({ id: 'full', prompt: range(10), maxTokens: 6 });
  h.add({ id: 'short', prompt: range(3, 50), maxTokens: 4 });
  h.runToEnd();
  assert.is(h.outputs.get('full')!.length, 6, 'up to the session length');
  assert.is(h.outputs.get('short')!.length, 4);
  assert.is(h.finishReasons.get('full'), 'length');
  assert.is(h.finishReasons.get('short'), 'length');
});

test('addRequest asserts what Engine.generate validated: a bug, never a user-facing error', () => {
  const h = new Harness({ ...roomy, maxModelLen: 16 });
  const isBug = (e: unknown) => e instanceof AssertionError;
  assert.throws(() => h.add({ id: 'fills', prompt: range(16), maxTokens: 1 }), isBug);
  assert.throws(() => h.add({ id: 'uncapped', prompt: range(10), maxTokens: 7 }), isBug);
  assert.throws(() => h.add({ id: 'zero', prompt: range(3), maxTokens: 0 }), isBug);
  assert.is(h.sched.numWaiting, 0, 'nothing was queued');
});

test('a stop token ends the request with stop and is included in the output', () => {
  const spec = { id: 's', prompt: range(7, 11), maxTokens: 12 };
  const ref = reference([spec]).get('s')!;
  const stopAt = ref.findIndex((t, i) => i >= 2 && ref.indexOf(t) === i); // first occurrence, not the first token
  assert.ok(stopAt >= 2);
  const h = new Harness(roomy);
  h.add({ ...spec, stop: [ref[stopAt]!] });
  h.runToEnd();
  assert.equal(h.outputs.get('s'), ref.slice(0, stopAt + 1));
  assert.is(h.finishReasons.get('s'), 'stop');
});

test('a second request with the same long prompt hits the prefix cache and still gets a token', () => {
  const prompt = range(40, 17);
  const h = new Harness(roomy);
  h.add({ id: 'first', prompt, maxTokens: 5 });
  h.runToEnd();
  const second = h.add({ id: 'second', prompt, maxTokens: 5 });
  const { out } = h.step();
  assert.is(second.numCachedTokens, 36, '9 of 10 full blocks: the last token is always computed');
  assert.equal(
    out.sequences.map((s) => [s.startPosition, s.tokenIds.length, s.sample]),
    [[36, 4, true]],
  );
  assert.is(h.outputs.get('second')!.length, 1);
  h.runToEnd();
  assert.equal(h.outputs.get('second'), h.outputs.get('first'), 'the cached KV gives the same stream');
  assert.is(h.scheduledTokensOf('second'), h.scheduledTokensOf('first') - 36);
  assert.is(h.kv.prefixCacheQueries, 80);
  assert.is(h.kv.prefixCacheHits, 36);
  // A prompt sharing only a prefix hits the shared blocks and diverges after them.
  const forked = h.add({ id: 'forked', prompt: [...prompt.slice(0, 22), 99, 98, 97], maxTokens: 3 });
  h.runToEnd();
  assert.is(forked.numCachedTokens, 20);
  assert.equal(h.outputs.get('forked'), reference([{ id: 'forked', prompt: [...prompt.slice(0, 22), 99, 98, 97], maxTokens: 3 }]).get('forked'));
});

test('requests that can never fit the pool finish with length instead of wedging the queue', () => {
  // 4 blocks of 4 = 16 tokens in all.
  const h = new Harness({ ...roomy, maxNumBatchedTokens: 8 }, { numBlocks: 4 });
  h.add({ id: 'tooLong', prompt: range(20), maxTokens: 3 });
  h.add({ id: 'grows', prompt: range(12, 30), maxTokens: 10 });
  h.add({ id: 'fine', prompt: range(4, 70), maxTokens: 3 });
  h.runToEnd();
  assert.is(h.finishReasons.get('tooLong'), 'length');
  assert.equal(h.outputs.get('tooLong'), []);
  assert.is(h.finishReasons.get('grows'), 'length');
  assert.equal(
    h.outputs.get('grows'),
    reference([{ id: 'grows', prompt: range(12, 30), maxTokens: 5 }]).get('grows'),
    'it decodes until 16 tokens (the whole pool) plus the one sampled from them',
  );
  assert.is(h.finishReasons.get('fine'), 'length');
  assert.is(h.outputs.get('fine')!.length, 3);
});

test('randomized arrivals, shared prefixes, aborts and a tight pool all reproduce the reference streams', () => {
  let seed = 12345;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const stems = [range(13, 3), range(9, 50), range(21, 77)];
  let numPreemptions = 0,
    numAborted = 0;
  for (const [numBlocks, budget, maxNumSeqs] of [
    [14, 10, 4],
    [30, 7, 3],
    [10, 32, 8],
  ] as const) {
    const h = new Harness({ ...roomy, maxNumBatchedTokens: budget, maxNumSeqs, maxModelLen: 40 }, { numBlocks });
    const specs: Spec[] = range(24).map((i) => ({
      id: `q${i}`,
      prompt: [...stems[rand(3)]!.slice(0, 1 + rand(20)), ...range(rand(6), rand(VOCAB))],
      maxTokens: 1 + rand(12),
    }));
    const aborted = new Set<string>();
    let next = 0;
    for (let stepIndex = 0; h.sched.hasWork || next < specs.length; stepIndex++) {
      assert.ok(stepIndex < 3000, 'wedged');
      for (let k = rand(3); k > 0 && next < specs.length; k--) h.add(specs[next++]!);
      if (rand(10) === 0 && next > 0) {
        const id = specs[rand(next)]!.id;
        if (!h.finishReasons.has(id)) {
          h.sched.finishRequest(id, 'abort');
          aborted.add(id);
        }
      }
      h.step();
    }
    h.assertPoolEmpty();
    const ref = reference(specs, { ...roomy, maxModelLen: 40 });
    for (const s of specs) {
      const got = h.outputs.get(s.id)!;
      if (aborted.has(s.id)) assert.equal(got, ref.get(s.id)!.slice(0, got.length), `${s.id} up to its abort`);
      else assert.equal(got, ref.get(s.id), s.id);
    }
    assert.ok(h.kv.prefixCacheHits > 0, 'shared stems hit the cache');
    numPreemptions += h.sched.numPreemptionsTotal;
    numAborted += aborted.size;
  }
  assert.ok(numPreemptions > 0 && numAborted > 0, `exercised preemption (${numPreemptions}) and aborts (${numAborted})`);
});

test('addRequest refuses a full queue with EngineOverloadedError and asserts unique ids', () => {
  const h = new Harness({ ...roomy, maxWaiting: 2 });
  h.add({ id: 'a', prompt: [1] });
  h.add({ id: 'b', prompt: [2] });
  assert.throws(
    () => h.add({ id: 'c', prompt: [3] }),
    (e: unknown) => e instanceof EngineOverloadedError,
  );
  assert.throws(
    () => h.sched.addRequest(makeRequest({ id: 'a', prompt: [1] })),
    (e: unknown) => e instanceof AssertionError && /already in use/.test(e.message),
  );
  h.runToEnd();
});

test('an idle scheduler schedules nothing', () => {
  const h = new Harness(roomy);
  assert.not.ok(h.sched.hasWork);
  const out = h.sched.schedule();
  assert.equal(out.sequences, []);
  assert.is(out.numScheduledTokens, 0);
  assert.equal(h.sched.update(out, { samples: new Map() }), []);
});

test.run();
