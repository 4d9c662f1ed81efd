// The reference sampler's semantics, checked by hand-worked examples and against vLLM's own
// formulations (sorted cumulative top-p, torch.topk-style top-k) rather than against itself.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  applyPenalties,
  argmax,
  drawIndex,
  keptMask,
  logSumExp,
  penaltyTable,
  penalisedLogit,
  sampleReference,
  scaleByTemperature,
  topLogprobs,
} from '../support/reference-sampling.js';
import { mix32, seedWords, uniformForStep } from '../../src/sampling/rng.js';
import { DEFAULT_SAMPLING, type SamplingParams, type SamplingRow } from '../../src/sampling/params.js';
import { randomF32 } from '../helpers/gpu.js';

function row(params: Partial<SamplingParams>, step = 0, promptTokenIds: number[] = [], outputTokenIds: number[] = []): SamplingRow {
  return { params: { ...DEFAULT_SAMPLING, ...params }, promptTokenIds, outputTokenIds, step };
}

const params = (p: Partial<SamplingParams>): SamplingParams => ({ ...DEFAULT_SAMPLING, ...p });

test('the RNG is a pure function of (seed, step), uniform in [0, 1), and pinned', () => {
  assert.is(uniformForStep(7, 3), uniformForStep(7, 3));
  assert.is.not(uniformForStep(7, 3), uniformForStep(7, 4));
  assert.is.not(uniformForStep(7, 3), uniformForStep(8, 3));
  assert.is.not(uniformForStep(7, 3), uniformForStep(7 + 2 ** 32, 3));
  assert.equal(seedWords(2 ** 32 + 5), [5, 1]);
  assert.equal(seedWords(-1), [0xffffffff, 0xffffffff]);
  // Pinned values: changing the stream changes every seeded completion, so it must be deliberate
  // (and shaders/sampling.wgsl must change with it).
  assert.equal([1, 2, 0xdeadbeef].map(mix32), [0x688990c0, 0xd1132181, 0xe628c683]);
  assert.equal(
    [0, 1, 2].map((s) => uniformForStep(0, s)),
    [0.5793412327766418, 0.6991720199584961, 0.9914671182632446],
  );
  let sum = 0;
  const n = 100_000;
  const buckets = new Array<number>(10).fill(0);
  for (let s = 0; s < n; s++) {
    const u = uniformForStep(12345, s);
    assert.ok(u >= 0 && u < 1);
    sum += u;
    buckets[Math.floor(u * 10)]!++;
  }
  assert.ok(Math.abs(sum / n - 0.5) < 0.005, `mean ${sum / n}`);
  for (const b of buckets) assert.ok(Math.abs(b - n / 10) < 500, `bucket count ${b}`);
});

test('penalties: HF repetition on prompt + output, OpenAI presence/frequency on output only', () => {
  assert.is(penalisedLogit(2, 0, params({ repetitionPenalty: 2 })), 1);
  assert.is(penalisedLogit(-2, 0, params({ repetitionPenalty: 2 })), -4);
  assert.is(penalisedLogit(2, 3, params({ frequencyPenalty: 0.5, presencePenalty: 1 })), -0.5);
  assert.is(penalisedLogit(2, 0, params({ frequencyPenalty: 0.5, presencePenalty: 1 })), 2, 'prompt-only tokens escape presence/frequency');
  // Repetition first, then frequency, then presence: (3 / 1.5) - 2 * 0.25 - 0.5 = 1.
  assert.is(penalisedLogit(3, 2, params({ repetitionPenalty: 1.5, frequencyPenalty: 0.25, presencePenalty: 0.5 })), 1);

  const r = row({ repetitionPenalty: 1.1, frequencyPenalty: 0.1 }, 0, [5, 1, 5, 99], [3, 1, 3, 3]);
  assert.equal(penaltyTable(r, 50), { tokenIds: [1, 3, 5], outputCounts: [1, 3, 0] });
  assert.equal(penaltyTable(row({ frequencyPenalty: 0.1 }, 0, [5, 1], [3]), 50), { tokenIds: [3], outputCounts: [1] });
  assert.equal(penaltyTable(row({}, 0, [5, 1], [3]), 50), { tokenIds: [], outputCounts: [] });

  const logits = new Float32Array([1, 2, 3, 4, 5, 6]);
  const out = applyPenalties(logits, row({ repetitionPenalty: 2, presencePenalty: 1 }, 0, [0], [4, 4]));
  assert.equal(Array.from(out), [0.5, 2, 3, 4, 1.5, 6]);
  assert.equal(Array.from(logits), [1, 2, 3, 4, 5, 6], 'the raw logits are untouched');
});

test('greedy takes the lowest id among tied maxima; top logprobs are best first', () => {
  const logits = new Float32Array([1, 3, 0, 3, 2]);
  assert.is(argmax(logits), 1);
  assert.is(sampleReference(logits, row({ temperature: 0 })).tokenId, 1);
  assert.is(sampleReference(logits, row({ temperature: 1e-6, seed: 4 })).tokenId, 1, 'temperatures below 1e-5 are greedy');
  const top = topLogprobs(logits, 4);
  assert.equal(
    top.map((c) => c.tokenId),
    [1, 3, 4, 0],
  );
  const lse = Math.log(Math.exp(1) + 2 * Math.exp(3) + 1 + Math.exp(2));
  assert.ok(Math.abs(logSumExp(logits) - lse) < 1e-12);
  assert.ok(Math.abs(top[0]!.logprob - (3 - lse)) < 1e-12);
  assert.is(topLogprobs(logits, 20).length, 5, 'never more alternatives than the vocabulary');
});

test('top-k keeps the k best and every token tied with the k-th', () => {
  const z = new Float32Array([0.5, 2, 1, 2, 1, -1]);
  assert.equal(Array.from(keptMask(z, params({ topK: 2 }))), [0, 1, 0, 1, 0, 0]);
  assert.equal(Array.from(keptMask(z, params({ topK: 3 }))), [0, 1, 1, 1, 1, 0]);
  assert.equal(Array.from(keptMask(z, params({ topK: 6 }))), [1, 1, 1, 1, 1, 1]);
});

/** vLLM's top-p: sort ascending, cumulative softmax, drop while cumsum <= 1 - p, always keep the last. */
function vllmTopP(z: Float32Array, p: number): Uint8Array {
  const ids = Array.from(z, (_, i) => i).sort((a, b) => z[a]! - z[b]!);
  const max = Math.max(...z);
  const e = ids.map((i) => Math.exp(z[i]! - max));
  const total = e.reduce((s, v) => s + v, 0);
  const kept = new Uint8Array(z.length);
  let cumsum = 0;
  ids.forEach((id, j) => {
    cumsum += e[j]! / total;
    kept[id] = cumsum <= 1 - p && j < ids.length - 1 ? 0 : 1;
  });
  return kept;
}

test('top-p keeps the smallest most-likely set reaching p (as vLLM does), on random rows', () => {
  // probs 0.5, 0.3, 0.15, 0.05
  const z = new Float32Array([0.5, 0.3, 0.15, 0.05].map(Math.log));
  assert.equal(Array.from(keptMask(z, params({ topP: 0.8 }))), [1, 1, 0, 0]);
  assert.equal(Array.from(keptMask(z, params({ topP: 0.81 }))), [1, 1, 1, 0]);
  assert.equal(Array.from(keptMask(z, params({ topP: 0.4 }))), [1, 0, 0, 0]);
  assert.equal(Array.from(keptMask(z, params({ topP: 0 }))), [1, 0, 0, 0], 'p = 0 still keeps the best token');
  for (let seed = 1; seed <= 30; seed++) {
    const row = randomF32(200, seed, 3);
    const p = 0.05 + (seed % 10) * 0.1;
    const ours = keptMask(row, params({ topP: p }));
    const theirs = vllmTopP(row, p);
    assert.equal(Array.from(ours), Array.from(theirs), `seed ${seed} p ${p}`);
  }
});

test('top-p applies to the renormalised top-k survivors, min-p relative to the best token', () => {
  // probs 0.4, 0.3, 0.2, 0.1: top-k 2 leaves 4/7, 3/7; top-p 0.5 of those keeps only the first.
  const z = new Float32Array([0.4, 0.3, 0.2, 0.1].map(Math.log));
  assert.equal(Array.from(keptMask(z, params({ topK: 2, topP: 0.5 }))), [1, 0, 0, 0]);
  assert.equal(Array.from(keptMask(z, params({ topK: 2, topP: 0.6 }))), [1, 1, 0, 0]);
  assert.equal(Array.from(keptMask(z, params({ topP: 0.6 }))), [1, 1, 0, 0]);
  assert.equal(Array.from(keptMask(z, params({ minP: 0.45 }))), [1, 1, 1, 0]);
  assert.equal(Array.from(keptMask(z, params({ minP: 0.76 }))), [1, 0, 0, 0]);
});

test('the inverse CDF walks kept tokens in id order', () => {
  const z = new Float32Array([0, 0, 0, 0].map(() => 0));
  const kept = new Uint8Array([0, 1, 1, 0]);
  assert.is(drawIndex(z, kept, 0), 1);
  assert.is(drawIndex(z, kept, 0.49), 1);
  assert.is(drawIndex(z, kept, 0.5), 2);
  assert.is(drawIndex(z, kept, 0.999), 2);
});

test('seeded draws follow the filtered, renormalised, temperature-scaled softmax', () => {
  const logits = new Float32Array([2, 1, 0, -1, 1.5, 0.5]);
  const p = { temperature: 0.7, topK: 4, seed: 3 };
  const z = scaleByTemperature(logits, 0.7);
  const kept = keptMask(z, params(p));
  const weights = Array.from(z, (v, i) => (kept[i] ? Math.exp(v) : 0));
  const total = weights.reduce((s, w) => s + w, 0);
  const n = 20_000;
  const counts = new Array<number>(logits.length).fill(0);
  for (let s = 0; s < n; s++) counts[sampleReference(logits, row(p, s)).tokenId]!++;
  let chi2 = 0;
  for (let i = 0; i < logits.length; i++) {
    if (!kept[i]) {
      assert.is(counts[i], 0, `excluded token ${i} drawn`);
      continue;
    }
    const expected = (n * weights[i]!) / total;
    chi2 += (counts[i]! - expected) ** 2 / expected;
  }
  // 3 degrees of freedom: P(chi2 > 16.27) = 0.001.
  assert.ok(chi2 < 16.27, `chi-square ${chi2.toFixed(2)}, counts ${counts.join(',')}`);
  const r = row({ seed: 77, logprobs: 2 }, 9);
  assert.equal(sampleReference(logits, r), sampleReference(logits, r), 'same seed and step, same result');
});

test.run();
