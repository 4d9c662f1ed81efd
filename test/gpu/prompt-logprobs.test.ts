// PromptLogprobsKernel (shaders/prompt_logprobs.wgsl) against a float64 log-softmax on odd shapes.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { PromptLogprobsKernel } from '../../src/kernels/prompt-logprobs.js';
import { randomF32, rng, testDevice } from '../helpers/gpu.js';

function reference(row: Float32Array, target: number, k: number) {
  let m = -Infinity;
  for (const x of row) m = Math.max(m, x);
  let s = 0;
  for (const x of row) s += Math.exp(x - m);
  const lse = m + Math.log(s);
  let rank = 0;
  for (const x of row) if (x >= row[target]!) rank++;
  const order = Array.from(row.keys()).sort((a, b) => row[b]! - row[a]! || a - b);
  return { logprob: row[target]! - lse, rank, top: order.slice(0, k).map((id) => ({ tokenId: id, logprob: row[id]! - lse })) };
}

async function check(vocab: number, numRows: number, k: number, make: (r: number) => Float32Array) {
  const gpu = await testDevice();
  const kernel = await PromptLogprobsKernel.create(gpu, vocab);
  const logits = new Float32Array(vocab * numRows);
  for (let r = 0; r < numRows; r++) logits.set(make(r), r * vocab);
  const random = rng(vocab * 7 + numRows);
  const targets = Uint32Array.from({ length: numRows }, () => Math.floor(random() * vocab));
  const buffer = gpu.upload('logits', logits);
  try {
    const got = await kernel.score(buffer, targets, k);
    assert.is(got.length, numRows);
    got.forEach((g, r) => {
      const want = reference(logits.subarray(r * vocab, (r + 1) * vocab), targets[r]!, k);
      assert.is(g.tokenId, targets[r]);
      assert.ok(Math.abs(g.logprob - want.logprob) < 1e-4, `row ${r}: logprob ${g.logprob} vs ${want.logprob}`);
      assert.is(g.rank, want.rank, `row ${r} rank`);
      assert.equal(
        g.top.map((t) => t.tokenId),
        want.top.map((t) => t.tokenId),
        `row ${r} top ids`,
      );
      g.top.forEach((t, j) => assert.ok(Math.abs(t.logprob - want.top[j]!.logprob) < 1e-4, `row ${r} top ${j}`));
    });
  } finally {
    buffer.destroy();
    kernel.destroy();
  }
}

test('odd vocab, several rows, top 5', async () => {
  await check(1001, 7, 5, (r) => randomF32(1001, 100 + r, 8));
});

test('vocab smaller than the workgroup, k = 0 and k = vocab-capped 20', async () => {
  await check(13, 3, 0, (r) => randomF32(13, 200 + r, 3));
  await check(13, 3, 20, (r) => randomF32(13, 300 + r, 3));
});

test('ties: lowest id first, rank counts ties against the target', async () => {
  await check(300, 4, 20, (r) => Float32Array.from({ length: 300 }, (_, j) => ((j * 7 + r) % 5) - (j % 3 === 0 ? 10 : 0)));
});

test('large logits do not overflow', async () => {
  await check(777, 2, 3, (r) => randomF32(777, 400 + r, 1000));
});

test.run();
