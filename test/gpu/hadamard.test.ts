// The Walsh-Hadamard rotation of q and k heads (shaders/hadamard.wgsl) against the explicit Sylvester
// matrix product in float64 (test/support/kv-quant.ts), on awkward offsets, odd head counts and every block size the runner picks;
// and the property it exists for: q.k scores unchanged.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { HadamardKernel, hadamardBlockSize } from '../../src/kernels/hadamard.js';
import { assertClose, randomF32, runPass, testDevice } from '../helpers/gpu.js';
import { hadamardRotate } from '../support/kv-quant.js';

interface Case {
  numTokens: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  /** Columns before q, between k and v (v's place), and after v. */
  lead: number;
  tail: number;
}

function layout(c: Case) {
  const qOffset = c.lead;
  const kOffset = qOffset + c.numHeads * c.headDim;
  const vOffset = kOffset + c.numKvHeads * c.headDim;
  const rowStride = vOffset + c.numKvHeads * c.headDim + c.tail;
  return { qOffset, kOffset, vOffset, rowStride };
}

function reference(qkv: Float32Array, c: Case): Float32Array {
  const { qOffset, kOffset, rowStride } = layout(c);
  const out = Float32Array.from(qkv);
  for (let t = 0; t < c.numTokens; t++) {
    const heads = [
      ...Array.from({ length: c.numHeads }, (_, i) => qOffset + i * c.headDim),
      ...Array.from({ length: c.numKvHeads }, (_, i) => kOffset + i * c.headDim),
    ];
    for (const start of heads) hadamardRotate(out.subarray(t * rowStride + start, t * rowStride + start + c.headDim), hadamardBlockSize(c.headDim));
  }
  return out;
}

async function rotate(c: Case, qkv: Float32Array): Promise<Float32Array> {
  const gpu = await testDevice();
  const kernel = await HadamardKernel.create(gpu);
  const { qOffset, kOffset, rowStride } = layout(c);
  const buf = gpu.upload('qkv', qkv);
  await runPass(gpu, (pass, u) =>
    kernel.apply(pass, u, {
      qkv: buf,
      numTokens: c.numTokens,
      rowStride,
      qOffset,
      numHeads: c.numHeads,
      kOffset,
      numKvHeads: c.numKvHeads,
      headDim: c.headDim,
    }),
  );
  return gpu.readF32(buf, qkv.length);
}

test('block size: the largest power of two dividing head_dim', () => {
  assert.equal([8, 64, 80, 96, 128, 12, 6, 7, 256].map(hadamardBlockSize), [8, 64, 16, 32, 128, 4, 2, 1, 256]);
});

const CASES: Case[] = [
  { numTokens: 3, numHeads: 8, numKvHeads: 4, headDim: 8, lead: 0, tail: 0 }, // stories260K
  { numTokens: 5, numHeads: 3, numKvHeads: 1, headDim: 128, lead: 4, tail: 3 },
  { numTokens: 2, numHeads: 5, numKvHeads: 5, headDim: 96, lead: 1, tail: 0 }, // three blocks of 32
  { numTokens: 7, numHeads: 2, numKvHeads: 2, headDim: 12, lead: 0, tail: 5 }, // three blocks of 4
  { numTokens: 1, numHeads: 1, numKvHeads: 1, headDim: 256, lead: 0, tail: 0 },
  { numTokens: 37, numHeads: 4, numKvHeads: 2, headDim: 64, lead: 2, tail: 2 }, // rows past one workgroup
];

for (const [n, c] of CASES.entries()) {
  test(`q and k heads match the explicit matrix product; v and padding untouched (${c.numTokens} tokens, ${c.numHeads}/${c.numKvHeads} heads, head_dim ${c.headDim})`, async () => {
    const { vOffset, rowStride } = layout(c);
    const qkv = randomF32(c.numTokens * rowStride, 300 + n);
    const got = await rotate(c, qkv);
    assertClose(got, reference(qkv, c), 2e-5, 1e-6, 'rotated qkv');
    for (let t = 0; t < c.numTokens; t++) {
      for (let i = vOffset; i < rowStride; i++) assert.is(got[t * rowStride + i], qkv[t * rowStride + i], 'v and tail untouched');
      for (let i = 0; i < c.lead; i++) assert.is(got[t * rowStride + i], qkv[t * rowStride + i], 'lead untouched');
    }
  });
}

test('q.k scores are unchanged (the rotation is orthonormal); applying it twice gives the input back', async () => {
  const c: Case = { numTokens: 4, numHeads: 2, numKvHeads: 2, headDim: 64, lead: 0, tail: 0 };
  const { kOffset, rowStride } = layout(c);
  const qkv = randomF32(c.numTokens * rowStride, 77);
  const once = await rotate(c, qkv);
  const dot = (x: Float32Array, a: number, b: number) => {
    let s = 0;
    for (let d = 0; d < c.headDim; d++) s += x[a + d]! * x[b + d]!;
    return s;
  };
  for (let t = 0; t < c.numTokens; t++) {
    for (let h = 0; h < 2; h++) {
      const q = t * rowStride + h * c.headDim;
      const k = t * rowStride + kOffset + h * c.headDim;
      const before = dot(qkv, q, k);
      assert.ok(Math.abs(dot(once, q, k) - before) < 1e-4 * (1 + Math.abs(before)), `token ${t} head ${h}: ${dot(once, q, k)} vs ${before}`);
    }
  }
  assertClose(await rotate(c, once), qkv, 1e-5, 1e-6, 'H H x = x');
});

test('head_dim with no even factor (7): nothing is dispatched and the activation is unchanged', async () => {
  const c: Case = { numTokens: 2, numHeads: 2, numKvHeads: 1, headDim: 7, lead: 0, tail: 0 };
  const qkv = randomF32(c.numTokens * layout(c).rowStride, 5);
  assert.equal(Array.from(await rotate(c, qkv)), Array.from(qkv));
});

test.run();
