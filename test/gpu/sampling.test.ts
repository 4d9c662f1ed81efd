// GpuSampler against the reference sampler (src/sampling/reference.ts) and against the softmax itself.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GpuSampler } from '../../src/kernels/sampling.js';
import { applyPenalties, argmax, keptMask, sampleReference, scaleByTemperature } from '../support/reference-sampling.js';
import { DEFAULT_SAMPLING, type LogitsProcessing, type SampleResult, type SamplingParams, type SamplingRow } from '../../src/sampling/params.js';
import type { GpuDevice } from '../../src/gpu/index.js';
import { assertClose, randomF32, rng, testDevice, withLimits } from '../helpers/gpu.js';

function row(params: Partial<SamplingParams>, step = 0, promptTokenIds: number[] = [], outputTokenIds: number[] = []): SamplingRow {
  return { params: { ...DEFAULT_SAMPLING, ...params }, promptTokenIds, outputTokenIds, step };
}

const samplers = new Map<number, Promise<GpuSampler>>();
function sampler(gpu: GpuDevice, vocab: number): Promise<GpuSampler> {
  let s = samplers.get(vocab);
  if (!s) samplers.set(vocab, (s = GpuSampler.create(gpu, vocab)));
  return s;
}

/** Samples rows over `logits` ([rows.length, vocab], or one row repeated for every row) on the GPU. */
async function sampleGpu(vocab: number, logits: Float32Array, rows: SamplingRow[]): Promise<SampleResult[]> {
  const gpu = await testDevice();
  const full = logits.length === vocab && rows.length > 1 ? repeatRow(logits, rows.length) : logits;
  const buffer = gpu.upload('logits', full);
  try {
    return await (await sampler(gpu, vocab)).sample(buffer, rows);
  } finally {
    buffer.destroy();
  }
}

function repeatRow(logits: Float32Array, n: number): Float32Array {
  const out = new Float32Array(logits.length * n);
  for (let r = 0; r < n; r++) out.set(logits, r * logits.length);
  return out;
}

function rowOf(logits: Float32Array, vocab: number, r: number): Float32Array {
  return logits.length === vocab ? logits : logits.subarray(r * vocab, (r + 1) * vocab);
}

function compareLogprobs(got: SampleResult, want: SampleResult, what: string): void {
  assertClose([got.logprob], [want.logprob], 1e-4, 1e-5, `${what}: chosen logprob`);
  assert.equal(
    got.topLogprobs.map((c) => c.tokenId),
    want.topLogprobs.map((c) => c.tokenId),
    `${what}: top logprob ids`,
  );
  assertClose(
    got.topLogprobs.map((c) => c.logprob),
    want.topLogprobs.map((c) => c.logprob),
    1e-4,
    1e-5,
    `${what}: top logprobs`,
  );
}

test('greedy picks the argmax (lowest id on ties) at odd vocab sizes', async () => {
  for (const vocab of [1, 2, 257, 32003]) {
    const numRows = 5;
    const logits = randomF32(numRows * vocab, vocab, 10);
    // Row 1: a tie at the maximum; row 2: the max at the very end; row 3: all negative.
    if (vocab > 2) {
      logits[vocab + 7] = 50;
      logits[vocab + vocab - 2] = 50;
      logits[3 * vocab - 1] = 40;
      for (let i = 3 * vocab; i < 4 * vocab; i++) logits[i] = -Math.abs(logits[i]!) - 1;
    }
    const rows = Array.from({ length: numRows }, (_, r) => row({ temperature: 0, logprobs: 0 }, r));
    const got = await sampleGpu(vocab, logits, rows);
    for (let r = 0; r < numRows; r++) {
      const want = argmax(rowOf(logits, vocab, r));
      assert.is(got[r]!.tokenId, want, `vocab ${vocab} row ${r}`);
      compareLogprobs(got[r]!, sampleReference(rowOf(logits, vocab, r), rows[r]!), `vocab ${vocab} row ${r}`);
    }
    if (vocab > 2) assert.is(got[1]!.tokenId, 7, 'tie at the maximum goes to the lowest id');
  }
});

test('logprobs and top logprobs equal log_softmax of the raw logits, ties broken by lowest id', async () => {
  const vocab = 5003;
  const numRows = 4;
  const logits = randomF32(numRows * vocab, 11, 6);
  // Row 2: many equal values straddling the 20th place; row 3: a flat row (every value tied).
  for (const i of [10, 400, 401, 2000, 4999, 5002]) logits[2 * vocab + i] = 30;
  logits.fill(0.25, 3 * vocab, 4 * vocab);
  const rows = [
    row({ temperature: 0, logprobs: 20 }),
    row({ temperature: 0.7, logprobs: 1, seed: 3 }),
    row({ temperature: 0, logprobs: 3 }),
    row({ temperature: 1, logprobs: 20, seed: 9 }),
  ];
  const got = await sampleGpu(vocab, logits, rows);
  for (let r = 0; r < numRows; r++) {
    const want = sampleReference(rowOf(logits, vocab, r), rows[r]!);
    compareLogprobs(got[r]!, want, `row ${r}`);
    assert.is(got[r]!.topLogprobs.length, rows[r]!.params.logprobs!);
  }
  assert.equal(
    got[2]!.topLogprobs.map((c) => c.tokenId),
    [10, 400, 401],
  );
  assert.equal(
    got[3]!.topLogprobs.map((c) => c.tokenId),
    Array.from({ length: 20 }, (_, i) => i),
  );
  // logprobs: null and 0 return no alternatives but still the chosen token's logprob.
  const [none, zero] = await sampleGpu(vocab, logits.subarray(0, vocab), [row({ temperature: 0 }), row({ temperature: 0, logprobs: 0 })]);
  assert.is(none!.topLogprobs.length, 0);
  assert.is(zero!.topLogprobs.length, 0);
  assertClose([none!.logprob], [got[0]!.logprob], 1e-6);
});

test('the same seed and step give the same draw in any batch; another seed gives other draws', async () => {
  const vocab = 1000;
  const logits = randomF32(vocab, 5, 2);
  const a = await sampleGpu(
    vocab,
    logits,
    Array.from({ length: 64 }, (_, s) => row({ seed: 1234 }, s)),
  );
  // The same streams, reversed and interleaved with other requests.
  const mixed: SamplingRow[] = [];
  for (let s = 63; s >= 0; s--) mixed.push(row({ seed: 99, topK: 5 }, s), row({ seed: 1234 }, s));
  const b = await sampleGpu(vocab, logits, mixed);
  for (let s = 0; s < 64; s++) assert.is(b[2 * (63 - s) + 1]!.tokenId, a[s]!.tokenId, `step ${s}`);
  const c = await sampleGpu(
    vocab,
    logits,
    Array.from({ length: 64 }, (_, s) => row({ seed: 1235 }, s)),
  );
  const same = a.filter((x, s) => x.tokenId === c[s]!.tokenId).length;
  assert.ok(same < 16, `seed 1235 repeated ${same}/64 draws of seed 1234`);
  assert.ok(new Set(a.map((x) => x.tokenId)).size > 20, 'draws vary with the step');
  // Seeds past 2^32 use their high word too.
  const hi = await sampleGpu(
    vocab,
    logits,
    Array.from({ length: 64 }, (_, s) => row({ seed: 1234 + 2 ** 32 }, s)),
  );
  assert.ok(hi.filter((x, s) => x.tokenId === a[s]!.tokenId).length < 16, 'the seed high word matters');
});

test('10k draws at temperature 1 follow the softmax (chi-square, p = 0.001) and match the reference', async () => {
  const vocab = 12;
  const logits = new Float32Array([1.5, 0.2, -1, 0.7, 2.1, -0.3, 0.05, 1.1, -2.5, 0.9, 0.4, 1.8]);
  const counts = new Array<number>(vocab).fill(0);
  let mismatches = 0;
  for (let call = 0; call < 10; call++) {
    const rows = Array.from({ length: 1000 }, (_, i) => row({ seed: 42 }, call * 1000 + i));
    const got = await sampleGpu(vocab, logits, rows);
    got.forEach((g, i) => {
      counts[g.tokenId]!++;
      if (g.tokenId !== sampleReference(logits, rows[i]!).tokenId) mismatches++;
    });
  }
  const max = Math.max(...logits);
  const weights = Array.from(logits, (x) => Math.exp(x - max));
  const total = weights.reduce((s, w) => s + w, 0);
  let chi2 = 0;
  for (let i = 0; i < vocab; i++) {
    const expected = (10000 * weights[i]!) / total;
    chi2 += (counts[i]! - expected) ** 2 / expected;
  }
  // 11 degrees of freedom: P(chi2 > 31.26) = 0.001.
  assert.ok(chi2 < 31.26, `chi-square ${chi2.toFixed(2)} over counts ${counts.join(',')}`);
  assert.ok(mismatches <= 5, `${mismatches}/10000 draws differ from the reference sampler`);
});

test('top-k, top-p and min-p never emit an excluded token, and draw like the reference', async () => {
  const vocab = 3001;
  const logits = randomF32(vocab, 77, 4);
  logits[17] = 9; // a dominant token so top-p and min-p cut early
  logits[2000] = 8.5;
  const configs: Partial<SamplingParams>[] = [
    { topK: 7 },
    { topK: 1 },
    { topP: 0.5 },
    { topP: 0.95, temperature: 1.3 },
    { minP: 0.05 },
    { minP: 0.3, temperature: 0.5 },
    { topK: 50, topP: 0.6, minP: 0.02, temperature: 0.8 },
    { topP: 0 },
  ];
  for (const cfg of configs) {
    const rows = Array.from({ length: 500 }, (_, s) => row({ ...cfg, seed: 5 }, s));
    const got = await sampleGpu(vocab, logits, rows);
    const z = scaleByTemperature(applyPenalties(logits, rows[0]!), rows[0]!.params.temperature);
    const kept = keptMask(z, rows[0]!.params);
    const numKept = kept.reduce((s, k) => s + k, 0);
    let mismatches = 0;
    const seen = new Set<number>();
    got.forEach((g, s) => {
      assert.ok(kept[g.tokenId], `${JSON.stringify(cfg)}: step ${s} drew excluded token ${g.tokenId}`);
      seen.add(g.tokenId);
      if (g.tokenId !== sampleReference(logits, rows[s]!).tokenId) mismatches++;
    });
    assert.ok(mismatches <= 2, `${JSON.stringify(cfg)}: ${mismatches}/500 draws differ from the reference`);
    assert.ok(seen.size >= Math.min(numKept, 3) || numKept > 50, `${JSON.stringify(cfg)}: only ${seen.size} of ${numKept} kept tokens drawn`);
    assert.ok(numKept < vocab, `${JSON.stringify(cfg)} excludes something`);
  }
});

test('penalties change exactly the tokens they should', async () => {
  const vocab = 4099;
  const logits = randomF32(vocab, 8, 1);
  // Positive and negative logits among the penalised tokens. Unpenalised order: 100 > 4097 > 4098 > 200;
  // 4097 is in the prompt only, so repetition moves the argmax to 4098, presence/frequency to 4097.
  logits[100] = 6;
  logits[200] = 5.9;
  logits[300] = -2;
  logits[301] = 5.5;
  logits[4097] = 5.97;
  logits[4098] = 5.95;
  const prompt = [300, 7, 7, 4097];
  const output = [100, 200, 200, 300, 301, 9999 /* out of vocab: ignored */];
  const cases: Partial<SamplingParams>[] = [
    { repetitionPenalty: 1.3 },
    { presencePenalty: 0.5 },
    { frequencyPenalty: 0.2 },
    { repetitionPenalty: 0.8, presencePenalty: -0.3, frequencyPenalty: 0.1 },
    { repetitionPenalty: 2, frequencyPenalty: 1.5 },
  ];
  const rows = cases.flatMap((cfg) => [
    row({ ...cfg, temperature: 0, logprobs: 5 }, 0, prompt, output),
    row({ ...cfg, temperature: 0.9, seed: 11 }, 3, prompt, output),
  ]);
  const got = await sampleGpu(vocab, logits, rows);
  rows.forEach((r, i) => {
    const want = sampleReference(logits, r);
    assert.is(got[i]!.tokenId, want.tokenId, `${JSON.stringify(r.params)}`);
    compareLogprobs(got[i]!, want, `${JSON.stringify(r.params)}`);
  });
  assert.equal(
    got.filter((_, i) => i % 2 === 0).map((g) => g.tokenId),
    [4098, 4097, 4097, 100, 4098],
    'penalised greedy choices',
  );
  // The penalised logits themselves: draws over a tiny vocab at high temperature see every change.
  const small = new Float32Array([2, 1, 0.5, -1, 3, 0]);
  const smallRows = Array.from({ length: 400 }, (_, s) =>
    row({ repetitionPenalty: 1.5, presencePenalty: 0.4, frequencyPenalty: 0.3, seed: 2 }, s, [0, 3], [4, 4, 1]),
  );
  const smallGot = await sampleGpu(small.length, small, smallRows);
  const mismatches = smallGot.filter((g, s) => g.tokenId !== sampleReference(small, smallRows[s]!).tokenId).length;
  assert.ok(mismatches <= 1, `${mismatches}/400 penalised draws differ from the reference`);
});

async function mixedBatch(vocab: number, numRows: number): Promise<void> {
  const r = rng(vocab);
  const logits = randomF32(numRows * vocab, vocab + 1, 8);
  const rows: SamplingRow[] = [];
  for (let i = 0; i < numRows; i++) {
    const history = Array.from({ length: 30 }, () => Math.floor(r() * vocab));
    rows.push(
      row(
        {
          temperature: i % 4 === 0 ? 0 : 0.5 + r(),
          topK: i % 3 === 0 ? 40 : 0,
          topP: i % 5 === 1 ? 0.9 : 1,
          minP: i % 7 === 2 ? 0.1 : 0,
          repetitionPenalty: i % 6 === 3 ? 1.2 : 1,
          frequencyPenalty: i % 8 === 5 ? 0.5 : 0,
          seed: 1000 + i,
          logprobs: i % 2 === 0 ? i % 21 : null,
        },
        i * 3,
        history.slice(0, 20),
        history.slice(20),
      ),
    );
  }
  const got = await sampleGpu(vocab, logits, rows);
  let mismatches = 0;
  rows.forEach((rw, i) => {
    const want = sampleReference(rowOf(logits, vocab, i), rw);
    if (got[i]!.tokenId !== want.tokenId) mismatches++;
    else compareLogprobs(got[i]!, want, `vocab ${vocab} row ${i}`);
  });
  assert.ok(mismatches <= 1, `vocab ${vocab}: ${mismatches}/${numRows} rows differ from the reference`);
}

test('a batch of rows with different params at vocab 32003', () => mixedBatch(32003, 24));

test('a batch of rows with different params at vocab 151936', () => mixedBatch(151_936, 12));

test('rows beyond one storage binding are split into groups with unaligned offsets', async () => {
  // The split is taken on every device: the sampler sees a binding limit of 8 MiB (13 rows of this
  // vocab), under any real device's (lavapipe's is 128 MiB, discrete GPUs' several GiB). An odd vocab:
  // rows of 151936 f32 are 256-byte multiples, so groups would start aligned.
  const real = await testDevice();
  const gpu = withLimits(real, { maxStorageBufferBindingSize: Math.min(8 << 20, real.limits.maxStorageBufferBindingSize) });
  const vocab = 151_939;
  const maxRows = Math.floor((gpu.limits.maxStorageBufferBindingSize - gpu.limits.minStorageBufferOffsetAlignment) / (vocab * 4));
  const numRows = 2 * maxRows + 3;
  assert.ok((maxRows * vocab * 4) % gpu.limits.minStorageBufferOffsetAlignment !== 0, 'the second group starts at an unaligned offset');
  const s = await GpuSampler.create(gpu, vocab);
  const logits = randomF32(numRows * vocab, 3, 5);
  const rows = Array.from({ length: numRows }, (_, i) => row({ temperature: 0, repetitionPenalty: i >= maxRows ? 1.5 : 1 }, 0, [], [i]));
  const buffer = gpu.upload('logits', logits);
  try {
    const got = await s.sample(buffer, rows);
    for (const i of [0, maxRows - 1, maxRows, maxRows + 1, 2 * maxRows - 1, 2 * maxRows, numRows - 1]) {
      assert.is(got[i]!.tokenId, sampleReference(rowOf(logits, vocab, i), rows[i]!).tokenId, `row ${i}`);
    }
  } finally {
    buffer.destroy();
    s.destroy();
  }
});

/** A random allowed-token bitmask with about `fraction` of the vocab allowed (at least one token). */
function randomMask(vocab: number, fraction: number, next: () => number): Uint32Array {
  const mask = new Uint32Array(Math.ceil(vocab / 32));
  for (let i = 0; i < vocab; i++) if (next() < fraction) mask[i >> 5]! |= 1 << (i & 31);
  const any = Math.floor(next() * vocab);
  mask[any >> 5]! |= 1 << (any & 31);
  return mask;
}

function allowed(mask: Uint32Array, id: number): boolean {
  return ((mask[id >> 5]! >>> (id & 31)) & 1) === 1;
}

test('grammar masks and logit bias: every sampler stage and the logprobs see them (odd vocab sizes)', async () => {
  const next = rng(1234);
  for (const vocab of [33, 257, 32003]) {
    const gpu = await testDevice();
    const s = await sampler(gpu, vocab);
    const params: Partial<SamplingParams>[] = [
      { temperature: 0, logprobs: 3 },
      { temperature: 0.8, topK: 5, seed: 7, logprobs: 2 },
      { temperature: 1, topP: 0.7, seed: 9, repetitionPenalty: 1.3, frequencyPenalty: 0.5 },
      { temperature: 1.2, minP: 0.05, seed: 3, logprobs: 0 },
      { temperature: 0, logprobs: 1 }, // bias only
      { temperature: 0 }, // no processing: today's path inside a processed batch
    ];
    const rows = params.map((p, i) => row(p, i + 1, [1, 2], [i % vocab, (3 * i) % vocab]));
    const logits = randomF32(rows.length * vocab, 40 + vocab, 4);
    const processing = rows.map((_, i): LogitsProcessing | null => {
      if (i === rows.length - 1) return null;
      const mask = i === 4 ? null : randomMask(vocab, 0.3, next);
      const biasIds = [0, vocab - 1, Math.floor(vocab / 2)].filter((v, k, a) => a.indexOf(v) === k);
      return {
        allowedMask: mask,
        biasTokenIds: Uint32Array.from(biasIds),
        biasValues: Float32Array.from(biasIds.map((_, k) => (k === 0 ? 100 : k === 1 ? Number.NEGATIVE_INFINITY : -2.5))),
      };
    });
    const buffer = gpu.upload('logits', logits);
    try {
      const got = await s.sample(buffer, rows, 'sampling', 1, processing);
      rows.forEach((r, i) => {
        const want = sampleReference(rowOf(logits, vocab, i), r, processing[i]);
        assert.is(got[i]!.tokenId, want.tokenId, `vocab ${vocab} row ${i}: token`);
        compareLogprobs(got[i]!, want, `vocab ${vocab} row ${i}`);
        const m = processing[i]?.allowedMask;
        if (m) assert.ok(allowed(m, got[i]!.tokenId), `vocab ${vocab} row ${i}: sampled a masked token`);
        if (processing[i]) assert.is.not(got[i]!.tokenId, vocab - 1, `vocab ${vocab} row ${i}: sampled a -inf biased token`);
      });
      // The unprocessed row is exactly what a batch without any processing gives.
      const plain = await s.sample(buffer, rows);
      assert.equal(got[rows.length - 1], plain[rows.length - 1]);
    } finally {
      buffer.destroy();
    }
  }
});

test('a masked row never draws a disallowed token in 2000 seeded draws', async () => {
  const vocab = 1001;
  const gpu = await testDevice();
  const s = await sampler(gpu, vocab);
  const mask = randomMask(vocab, 0.05, rng(99));
  const logits = randomF32(vocab, 5, 3);
  const rows = Array.from({ length: 2000 }, (_, i) => row({ temperature: 1.5, seed: 11 }, i));
  const buffer = gpu.upload('logits', repeatRow(logits, rows.length));
  try {
    const got = await s.sample(
      buffer,
      rows,
      'sampling',
      1,
      rows.map(() => ({ allowedMask: mask, biasTokenIds: new Uint32Array(0), biasValues: new Float32Array(0) })),
    );
    const seen = new Set(got.map((g) => g.tokenId));
    for (const id of seen) assert.ok(allowed(mask, id), `drew masked token ${id}`);
    assert.ok(seen.size > 1, 'draws vary');
  } finally {
    buffer.destroy();
  }
});

test('a logits buffer too small for the rows is refused with what to do', async () => {
  const gpu = await testDevice();
  const s = await sampler(gpu, 100);
  const small = gpu.createBuffer('small', 100 * 4, GPUBufferUsage.STORAGE);
  try {
    await s.sample(small, [row({}), row({})]);
    assert.unreachable('should throw');
  } catch (err) {
    assert.match((err as Error).message, /need 2 rows x 100 f32/);
  }
});

test.run();
