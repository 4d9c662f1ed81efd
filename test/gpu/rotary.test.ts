import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { RotaryKernel, type RotaryOptions } from '../../src/kernels/rotary.js';
import { ropeInvFreq } from '../../src/checkpoint/rope.js';

/** Plain (unscaled) RoPE frequencies, as the model layer computes them for the kernel. */
const defaultInvFreq = (rotaryDim: number, theta: number) => ropeInvFreq({ theta, rotaryDim, scaling: null }, 0).invFreq;
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
  await runPass(gpu, (pass, u) => kernel.apply(pass, u, { ...args, qkv: qkvBuf, positions, invFreq }));
  const got = await gpu.readF32(qkvBuf, qkv.length);
  const want = rotaryReference(qkv, args);
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
          attentionScaling: 1,
        }),
      /rotaryDim 33/,
    );
  });
});

test.run();
