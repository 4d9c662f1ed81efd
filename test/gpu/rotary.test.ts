import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { RotaryKernel, type RotaryOptions } from '../../src/kernels/rotary.js';
import { RmsNormKernel, type RmsNormOptions } from '../../src/kernels/rmsnorm.js';
import { ropeInvFreq } from '../../src/checkpoint/rope.js';

/** Plain (unscaled) RoPE frequencies, as the model layer computes them for the kernel. */
const defaultInvFreq = (rotaryDim: number, theta: number) => ropeInvFreq({ theta, rotaryDim, scaling: null }).invFreq;
import { assertClose, randomF32, runPass, testDevice } from '../helpers/gpu.js';
import { rotaryReference, type RotaryRefArgs } from '../support/reference-attention.js';

interface Case {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rotaryDim: number;
  positions: number[];
  invFreq: Float32Array;
  attentionScaling: number;
  /** Extra columns before q, between k and v, and after v, so offsets and stride are awkward. */
  lead: number;
  tail: number;
  /** Per-sequence frequencies: invFreq holds one rotaryDim/2 row per sequence and token t uses row tokenSeq[t]. */
  tokenSeq?: number[];
}

async function runCase(c: Case, seed: number, options: RotaryOptions = {}): Promise<void> {
  const gpu = await testDevice();
  const kernel = await RotaryKernel.create(gpu, options);
  const numTokens = c.positions.length;
  const qOffset = c.lead;
  const kOffset = qOffset + c.numHeads * c.headDim;
  const vOffset = kOffset + c.numKvHeads * c.headDim;
  const rowStride = vOffset + c.numKvHeads * c.headDim + c.tail;
  const qkv = randomF32(numTokens * rowStride, seed);
  const args: RotaryRefArgs = {
    numTokens,
    rowStride,
    qOffset,
    numHeads: c.numHeads,
    kOffset,
    numKvHeads: c.numKvHeads,
    headDim: c.headDim,
    rotaryDim: c.rotaryDim,
    positions: c.positions,
    invFreq: c.invFreq,
    attentionScaling: c.attentionScaling,
  };
  const qkvBuf = gpu.upload('qkv', qkv);
  const positions = gpu.upload('positions', Uint32Array.from(c.positions));
  const invFreq = gpu.upload('inv-freq', c.invFreq);
  const perSequenceFreq = c.tokenSeq !== undefined;
  const tokenSeq = gpu.upload('token-seq', Uint32Array.from(c.tokenSeq ?? c.positions.map(() => 7)));
  await runPass(gpu, (pass, u) => kernel.apply(pass, u, { ...args, qkv: qkvBuf, positions, invFreq, tokenSeq, perSequenceFreq }));
  const got = await gpu.readF32(qkvBuf, qkv.length);
  let want = rotaryReference(qkv, args);
  if (c.tokenSeq) {
    // Each token's row is rotated with its own sequence's frequencies.
    const half = c.rotaryDim / 2;
    want = new Float64Array(qkv.length);
    for (const [t, seq] of c.tokenSeq.entries()) {
      const row = rotaryReference(qkv, { ...args, invFreq: c.invFreq.subarray(seq * half, (seq + 1) * half) });
      want.set(row.subarray(t * rowStride, (t + 1) * rowStride), t * rowStride);
    }
  }
  assertClose(got, want, 1e-4, 1e-5, 'rotated qkv');
  // v and the padding columns are bit-identical, and dims past rotaryDim pass through.
  for (let t = 0; t < numTokens; t++) {
    for (let i = vOffset; i < rowStride; i++) assert.is(got[t * rowStride + i], qkv[t * rowStride + i]);
    for (let i = 0; i < qOffset; i++) assert.is(got[t * rowStride + i], qkv[t * rowStride + i]);
    for (let d = c.rotaryDim; d < c.headDim; d++) assert.is(got[t * rowStride + kOffset + d], qkv[t * rowStride + kOffset + d]);
  }
}

const LARGE_POSITIONS = [0, 1, 63, 64, 4095, 32767, 7, 32768, 100000];

test('full rotary, GQA heads, positions up to 100k match float64', async () => {
  await runCase(
    {
      numHeads: 4,
      numKvHeads: 2,
      headDim: 64,
      rotaryDim: 64,
      positions: LARGE_POSITIONS,
      invFreq: defaultInvFreq(64, 10000),
      attentionScaling: 1,
      lead: 3,
      tail: 5,
    },
    1,
  );
});

test('partial rotary (rotaryDim < headDim), odd token count, theta 1e6', async () => {
  await runCase(
    {
      numHeads: 3,
      numKvHeads: 1,
      headDim: 32,
      rotaryDim: 16,
      positions: [5, 4095, 32767, 2, 31],
      invFreq: defaultInvFreq(16, 1e6),
      attentionScaling: 1,
      lead: 0,
      tail: 1,
    },
    2,
  );
});

test('attentionScaling multiplies cos and sin; arbitrary host inv_freq is honoured', async () => {
  const invFreq = Float32Array.from({ length: 40 }, (_, i) => (i % 3 === 0 ? 1 : 0.37 / (i + 1)));
  await runCase({ numHeads: 2, numKvHeads: 2, headDim: 80, rotaryDim: 80, positions: [3, 32767, 12345], invFreq, attentionScaling: 1.25, lead: 7, tail: 0 }, 3);
});

test("tiny workgroups: a head's pairs span several workgroups, GPU-sized workgroups leave lanes idle", async () => {
  const c: Case = {
    numHeads: 3,
    numKvHeads: 1,
    headDim: 40,
    rotaryDim: 36,
    positions: [9, 32767, 0, 77],
    invFreq: defaultInvFreq(36, 10000),
    attentionScaling: 1,
    lead: 2,
    tail: 3,
  };
  await runCase(c, 4, { workgroupSize: 8 });
  await runCase(c, 5, { workgroupSize: 64 });
});

test('per-sequence frequencies (dynamic NTK): each token uses its sequence row; odd shapes', async () => {
  // Three sequences, 7 tokens out of order across them, rotaryDim 18 < headDim 22, row of each sequence
  // a different dynamic NTK length (the first one the default frequencies).
  const rope = { theta: 10000, rotaryDim: 18, scaling: { type: 'dynamic' as const, factor: 2, originalMaxPositionEmbeddings: 32 } };
  const half = 9;
  const invFreq = new Float32Array(3 * half);
  [undefined, 40, 33001].forEach((len, s) => invFreq.set(ropeInvFreq(rope, len).invFreq, s * half));
  const c: Case = {
    numHeads: 3,
    numKvHeads: 1,
    headDim: 22,
    rotaryDim: 18,
    positions: [0, 31, 39, 5, 33000, 6, 12],
    tokenSeq: [0, 0, 1, 0, 2, 1, 2],
    invFreq,
    attentionScaling: 1,
    lead: 1,
    tail: 3,
  };
  await runCase(c, 6);
  await runCase(c, 7, { workgroupSize: 8 });
});

// Qwen3's q_norm / k_norm run just before rotary on the same fused qkv rows: rmsnorm's head_norm entry.
test('head_norm: per-head RMSNorm in place on q then k heads (odd head dims, strides, head counts), every reduction', async () => {
  const gpu = await testDevice();
  const reductions: RmsNormOptions['reduction'][] = ['workgroup256', 'workgroup8'];
  if (gpu.hasSubgroups && (gpu.adapter.info.subgroupMinSize ?? 0) >= 8) reductions.push('subgroup8');
  const shapes = [
    { numTokens: 5, numQHeads: 3, numKHeads: 1, headDim: 13, tail: 17 },
    { numTokens: 1, numQHeads: 2, numKHeads: 2, headDim: 64, tail: 128 },
    { numTokens: 9, numQHeads: 4, numKHeads: 2, headDim: 1, tail: 3 },
  ];
  for (const reduction of reductions) {
    const kernel = await RmsNormKernel.create(gpu, { reduction });
    for (const [n, sh] of shapes.entries()) {
      const heads = sh.numQHeads + sh.numKHeads;
      const rowStride = heads * sh.headDim + sh.tail;
      const x = randomF32(sh.numTokens * rowStride, 20 + n, 3);
      const weight = Float32Array.from({ length: 2 * sh.headDim }, (_, i) => 0.5 + ((i * 37) % 11) / 10);
      const eps = 1e-6;
      const want = Float32Array.from(x);
      for (let t = 0; t < sh.numTokens; t++) {
        for (let h = 0; h < heads; h++) {
          const base = t * rowStride + h * sh.headDim;
          let sumSq = 0;
          for (let i = 0; i < sh.headDim; i++) sumSq += x[base + i]! ** 2;
          const inv = 1 / Math.sqrt(sumSq / sh.headDim + eps);
          const w = h < sh.numQHeads ? 0 : sh.headDim;
          for (let i = 0; i < sh.headDim; i++) want[base + i] = x[base + i]! * inv * weight[w + i]!;
        }
      }
      const buf = gpu.upload('qkv', x);
      const wBuf = gpu.upload('qk-norm', weight);
      await runPass(gpu, (pass, u) => kernel.headNorm(pass, u, { qkv: buf, weight: wBuf, ...sh, rowStride, eps }));
      const got = await gpu.readF32(buf, x.length);
      // Normalised heads match float64; v and padding columns are untouched.
      assertClose(got, want, 1e-5, 1e-6, `${reduction} shape ${n}`);
      for (let t = 0; t < sh.numTokens; t++) {
        for (let i = heads * sh.headDim; i < rowStride; i++) assert.is(got[t * rowStride + i], x[t * rowStride + i]);
      }
    }
  }
});

test('rotaryDim must be even and within headDim', async () => {
  const gpu = await testDevice();
  const kernel = await RotaryKernel.create(gpu);
  const b = gpu.upload('x', new Float32Array(64));
  await runPass(gpu, (pass, u) => {
    assert.throws(
      () =>
        kernel.apply(pass, u, {
          qkv: b,
          numTokens: 1,
          rowStride: 64,
          qOffset: 0,
          numHeads: 1,
          kOffset: 32,
          numKvHeads: 1,
          headDim: 32,
          rotaryDim: 33,
          positions: b,
          invFreq: b,
          tokenSeq: b,
          perSequenceFreq: false,
          attentionScaling: 1,
        }),
      /rotaryDim 33/,
    );
  });
});

test.run();
