// The engine end to end on a real trained model (stories260K): exact published greedy text, agreement
// with the CPU reference, batching, prefix caching, preemption and aborts.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ReferenceModel } from '../support/reference-model.js';
import { textPromptTokenIds } from '../../src/engine/prompt.js';
import { argmax } from '../helpers/runner.js';
import { collect, greedy, openEngine, PUBLISHED_GREEDY_TEXT, request, STORIES } from '../helpers/engine.js';

const BOS = 1;

test('greedy decoding from BOS reproduces the published text exactly', async () => {
  const engine = await openEngine();
  try {
    const out = await collect(engine.generate(request([BOS], { maxTokens: 200, ignoreEos: true })));
    assert.ok(out.text.startsWith(PUBLISHED_GREEDY_TEXT), `got: ${out.text.slice(0, 240)}`);
    // The first 200 tokens equal the CPU reference's greedy tokens.
    const reference = await ReferenceModel.load(STORIES);
    const refTokens: number[] = [];
    let logits = reference.forward([BOS]);
    for (let i = 0; i < 200; i++) {
      const next = argmax(logits);
      refTokens.push(next);
      logits = reference.forward([next]);
    }
    assert.equal(out.tokenIds, refTokens);
    assert.is(out.finishReason, 'length');
    assert.is(out.usage.completionTokens, 200);
  } finally {
    await engine.shutdown();
  }
});

test('warmup runs its throwaway batches and leaves no request, block or counted token behind', async () => {
  const engine = await openEngine();
  try {
    const steps = (engine as unknown as { stepCount: number }).stepCount;
    const ms = await engine.warmup();
    assert.ok(ms > 0);
    // One prompt (prefill + decode), then batches of 2, 4, 8 and 16 (a prefill and a decode step each).
    assert.ok((engine as unknown as { stepCount: number }).stepCount - steps >= 2 + 4 * 2);
    const s = engine.stats();
    assert.is(s.numRunning, 0);
    assert.is(s.numWaiting, 0);
    assert.is(s.numFreeKvBlocks, s.numKvBlocks);
    assert.is(s.promptTokensTotal, 0);
    assert.is(s.generationTokensTotal, 0);
    assert.is(s.requestsFinishedTotal, 0);
    assert.is(s.prefixCacheQueries, 0);
    const out = await collect(engine.generate(request([BOS], { maxTokens: 60, ignoreEos: true })));
    assert.ok(out.text.startsWith(PUBLISHED_GREEDY_TEXT.slice(0, 120)), `got: ${out.text.slice(0, 160)}`);
  } finally {
    await engine.shutdown();
  }
});

test('an f16 KV cache (--kv-cache-dtype f16) keeps the greedy story and doubles the blocks of a budget', async () => {
  // Blocks from the memory budget (not a fixed --kv-cache-blocks), so the element size shows.
  const budget = { gpuMemoryBytes: 64 * 1024 ** 2, cacheMaxEntryCount: 0.5, kvCacheBlocks: undefined };
  const f32 = await openEngine(budget);
  const f32Blocks = f32.stats().numKvBlocks;
  await f32.shutdown();
  const engine = await openEngine({ ...budget, kvCacheDtype: 'f16' });
  try {
    // f16 K/V rounding may flip a late near-tie, so only the opening sentence is pinned.
    const out = await collect(engine.generate(request([BOS], { maxTokens: 40, ignoreEos: true })));
    assert.ok(out.text.startsWith('Once upon a time, there was a little girl named Lily.'), `got: ${out.text.slice(0, 240)}`);
    const f16Blocks = engine.stats().numKvBlocks;
    assert.ok(f16Blocks === 2 * f32Blocks || f16Blocks === 2 * f32Blocks + 1, `f16 blocks ${f16Blocks} vs f32 ${f32Blocks}`);
  } finally {
    await engine.shutdown();
  }
});

const PROMPTS = [
  'Once upon a time',
  'The cat sat',
  'Tom and Sue went to the park. They',
  'One day, a little bird',
  'Lily was sad because',
  'The sun was',
  'Ben had a red ball and a blue car. He liked to play with them every day. One day',
  'There was a big dog',
];

test('eight prompts together give the same tokens as each run alone', async () => {
  const engine = await openEngine({ enablePrefixCaching: false });
  try {
    const ids = PROMPTS.map((p) => textPromptTokenIds(engine.codec, p));
    const alone: number[][] = [];
    for (const p of ids) alone.push((await collect(engine.generate(request(p, { maxTokens: 24 })))).tokenIds);
    const together = await Promise.all(ids.map((p) => collect(engine.generate(request(p, { maxTokens: 24 })))));
    together.forEach((t, i) => assert.equal(t.tokenIds, alone[i], `prompt ${i}`));
    assert.is(engine.stats().numFreeKvBlocks, engine.stats().numKvBlocks);
  } finally {
    await engine.shutdown();
  }
});

test('a prefix-cache hit gives output identical to a miss and reports cached tokens', async () => {
  const engine = await openEngine({ blockSize: 8 });
  try {
    const prompt = textPromptTokenIds(engine.codec, PROMPTS[6]! + ' ' + PROMPTS[2]!);
    const first = await collect(engine.generate(request(prompt, { maxTokens: 20 })));
    const second = await collect(engine.generate(request(prompt, { maxTokens: 20 })));
    assert.is(first.usage.cachedTokens, 0);
    assert.ok(second.usage.cachedTokens >= 8, `cached ${second.usage.cachedTokens}`);
    assert.equal(second.tokenIds, first.tokenIds);
    assert.ok(engine.stats().prefixCacheHits > 0);
  } finally {
    await engine.shutdown();
  }
});

test('preemption under a tiny KV pool still gives identical output', async () => {
  const roomy = await openEngine({ enablePrefixCaching: false });
  const ids = PROMPTS.slice(0, 6).map((p) => textPromptTokenIds(roomy.codec, p));
  const sampling = (i: number) => greedy({ temperature: 0.8, topP: 0.95, seed: 100 + i });
  let expected: number[][];
  try {
    expected = await Promise.all(
      ids.map((p, i) => collect(roomy.generate(request(p, { maxTokens: 40, sampling: sampling(i) })))).map((c) => c.then((x) => x.tokenIds)),
    );
  } finally {
    await roomy.shutdown();
  }
  // 6 sequences of up to ~60 tokens need ~24 blocks of 16 when all run; 12 forces preemption.
  const tight = await openEngine({ enablePrefixCaching: false, kvCacheBlocks: 12 });
  try {
    const got = await Promise.all(ids.map((p, i) => collect(tight.generate(request(p, { maxTokens: 40, sampling: sampling(i) })))));
    got.forEach((g, i) => assert.equal(g.tokenIds, expected[i], `prompt ${i}`));
    assert.ok(tight.stats().numPreemptionsTotal > 0, 'expected at least one preemption');
    assert.is(tight.stats().numFreeKvBlocks, tight.stats().numKvBlocks);
  } finally {
    await tight.shutdown();
  }
});

test('an aborted request returns its blocks at once', async () => {
  const engine = await openEngine({ enablePrefixCaching: false });
  try {
    const controller = new AbortController();
    const stream = engine.generate(request([BOS], { maxTokens: 400, ignoreEos: true }), controller.signal);
    let n = 0;
    for await (const delta of stream) {
      n += delta.tokenIds.length;
      if (n >= 5) controller.abort();
      if (delta.finishReason) {
        assert.is(delta.finishReason, 'abort');
        break;
      }
    }
    assert.ok(n < 400);
    assert.is(engine.stats().numFreeKvBlocks, engine.stats().numKvBlocks);
    assert.is(engine.stats().numRunning, 0);
  } finally {
    await engine.shutdown();
  }
});

test('stop strings, stop token ids and max_tokens end generation with the right reason', async () => {
  const engine = await openEngine();
  try {
    const stopped = await collect(engine.generate(request([BOS], { maxTokens: 100, stop: ['little girl'] })));
    assert.is(stopped.text, 'Once upon a time, there was a ');
    assert.is(stopped.finishReason, 'stop');
    // The stop string completes on the very token that reaches max_tokens: the text is cut, so 'stop'.
    const stopAtCap = await collect(engine.generate(request([BOS], { maxTokens: 12, stop: ['little girl'] })));
    assert.is(stopAtCap.text, 'Once upon a time, there was a ');
    assert.is(stopAtCap.finishReason, 'stop');
    const lengthCapped = await collect(engine.generate(request([BOS], { maxTokens: 3 })));
    assert.is(lengthCapped.tokenIds.length, 3);
    assert.is(lengthCapped.finishReason, 'length');
    const full = await collect(engine.generate(request([BOS], { maxTokens: 10 })));
    const stopToken = full.tokenIds[4]!;
    const byToken = await collect(engine.generate(request([BOS], { maxTokens: 10, stopTokenIds: [stopToken] })));
    assert.equal(byToken.tokenIds, full.tokenIds.slice(0, full.tokenIds.indexOf(stopToken) + 1));
    assert.is(byToken.finishReason, 'stop');
    assert.is(engine.stats().numFreeKvBlocks, engine.stats().numKvBlocks);
  } finally {
    await engine.shutdown();
  }
});

test.run();
