// GenerateDelta.timing from the real engine (stories260K): the last delta of every request says
// where its time went (queue -> first scheduled step -> first token -> finish, vLLM's phases), which
// /metrics turns into vllm:request_{queue,prefill,decode}_time_seconds. A request that waits behind a
// full batch shows it as queue time; one aborted before it ran has no prefill or decode.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { collect, openEngine, request } from '../helpers/engine.js';

test('queue, prefill and decode: present on the last delta only, within the wall time', async () => {
  const engine = await openEngine({ maxBatchSize: 1 });
  try {
    const t0 = performance.now();
    // With one seat in the batch, the second request waits for the first to finish.
    const [first, second] = await Promise.all([
      collect(engine.generate(request([1, 400, 401], { maxTokens: 24, ignoreEos: true }))),
      collect(engine.generate(request([1, 402], { maxTokens: 8, ignoreEos: true }))),
    ]);
    const wall = (performance.now() - t0) / 1000;
    for (const out of [first, second]) {
      assert.ok(
        out.deltas.slice(0, -1).every((d) => d.timing === undefined),
        'only the last delta has timing',
      );
      const t = out.deltas.at(-1)!.timing!;
      assert.ok(t, 'the last delta has timing');
      assert.ok(t.queueSeconds !== null && t.queueSeconds >= 0);
      assert.ok(t.prefillSeconds !== null && t.prefillSeconds > 0, 'prefill ran');
      assert.ok(t.decodeSeconds !== null && t.decodeSeconds > 0, 'decode ran');
      assert.ok(t.queueSeconds + t.prefillSeconds + t.decodeSeconds <= wall + 1e-3, 'within the wall time');
    }
    const firstTiming = first.deltas.at(-1)!.timing!;
    const secondTiming = second.deltas.at(-1)!.timing!;
    assert.ok(
      secondTiming.queueSeconds! >= firstTiming.decodeSeconds! * 0.5,
      `the second waited for the first: ${JSON.stringify([firstTiming, secondTiming])}`,
    );
  } finally {
    await engine.shutdown();
  }
});

test('a request aborted while it waits has queue time but no prefill or decode', async () => {
  const engine = await openEngine({ maxBatchSize: 1 });
  try {
    const running = collect(engine.generate(request([1, 400], { maxTokens: 16, ignoreEos: true })));
    const controller = new AbortController();
    const waiting = collect(engine.generate(request([1, 401], { maxTokens: 16, ignoreEos: true }), controller.signal));
    controller.abort();
    const aborted = await waiting;
    await running;
    assert.is(aborted.finishReason, 'abort');
    const t = aborted.deltas.at(-1)!.timing!;
    assert.equal([t.queueSeconds, t.prefillSeconds, t.decodeSeconds], [null, null, null], JSON.stringify(t));
  } finally {
    await engine.shutdown();
  }
});

test.run();
