import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { KvCacheKernel, PADDING_SLOT, type KvCacheOptions } from '../../src/kernels/kv-cache.js';
import { f32ToF16Bits } from '../../src/common/half.js';
import { randomF32, runPass, testDevice } from '../helpers/gpu.js';
import { shuffledSlotMapping } from '../support/reference-attention.js';

interface Case {
  numTokens: number;
  numKvHeads: number;
  headDim: number;
  blockSize: number;
  numBlocks: number;
  /** Columns before k, between k and v, and after v in each qkv row. */
  gaps: [number, number, number];
  padEvery?: number;
}

async function runCase(c: Case, seed: number, options: KvCacheOptions = {}): Promise<void> {
  const gpu = await testDevice();
  const kernel = await KvCacheKernel.create(gpu, options);
  const rowLen = c.numKvHeads * c.headDim;
  const kOffset = c.gaps[0];
  const vOffset = kOffset + rowLen + c.gaps[1];
  const rowStride = vOffset + rowLen + c.gaps[2];
  const qkv = randomF32(c.numTokens * rowStride, seed);
  // Distinct random slots scattered over all blocks; some tokens are padding.
  const numSlots = c.numBlocks * c.blockSize;
  const slotMapping = shuffledSlotMapping(numSlots, c.numTokens, seed + 100, PADDING_SLOT, c.padEvery);
  // An f16 cache holds halves (element e = half e & 1 of u32 word e >> 1, i.e. little-endian u16 order),
  // so its expected contents are the same scatter of f16-rounded bits (RNE, src/util/half.ts).
  const f16 = options.dtype === 'f16';
  const store = (x: Float32Array): Float32Array | Uint16Array => (f16 ? f32ToF16Bits(x) : x);
  const kInit = store(randomF32(numSlots * rowLen, seed + 1));
  const vInit = store(randomF32(numSlots * rowLen, seed + 2));
  const kCache = gpu.upload('k-cache', kInit);
  const vCache = gpu.upload('v-cache', vInit);
  await runPass(gpu, (pass, u) =>
    kernel.write(pass, u, {
      qkv: gpu.upload('qkv', qkv),
      numTokens: c.numTokens,
      rowStride,
      kOffset,
      vOffset,
      numKvHeads: c.numKvHeads,
      headDim: c.headDim,
      kCache,
      vCache,
      slotMapping: gpu.upload('slots', slotMapping),
    }),
  );
  const wantK = kInit.slice();
  const wantV = vInit.slice();
  for (let t = 0; t < c.numTokens; t++) {
    const slot = slotMapping[t]!;
    if (slot === PADDING_SLOT) continue;
    wantK.set(store(qkv.slice(t * rowStride + kOffset, t * rowStride + kOffset + rowLen)), slot * rowLen);
    wantV.set(store(qkv.slice(t * rowStride + vOffset, t * rowStride + vOffset + rowLen)), slot * rowLen);
  }
  // A copy (or an RNE conversion) is exact: every element of both caches, written or not, must match bit for bit.
  const read = async (b: GPUBuffer, n: number) => (f16 ? new Uint16Array(await gpu.read(b, n * 2)) : await gpu.readF32(b, n));
  assert.equal(await read(kCache, wantK.length), wantK, 'k cache');
  assert.equal(await read(vCache, wantV.length), wantV, 'v cache');
}

// Shapes with row stride, offsets and row length all multiples of 4 take the vec4 entry; the others the scalar one.
test('random slots across blocks; untouched slots stay untouched', async () => {
  await runCase({ numTokens: 37, numKvHeads: 2, headDim: 64, blockSize: 16, numBlocks: 7, gaps: [5, 3, 1] }, 1);
});

test('MQA, odd head dim, block size 1, padding tokens skipped', async () => {
  await runCase({ numTokens: 13, numKvHeads: 1, headDim: 36, blockSize: 1, numBlocks: 20, gaps: [0, 0, 0], padEvery: 4 }, 2);
});

test('a single decode token with 8 kv heads of 128', async () => {
  await runCase({ numTokens: 1, numKvHeads: 8, headDim: 128, blockSize: 32, numBlocks: 3, gaps: [128 * 32, 0, 2] }, 3);
});

test('aligned shapes (vec4 entry, rows of several workgroups) and the same forced scalar', async () => {
  const c: Case = { numTokens: 9, numKvHeads: 5, headDim: 256, blockSize: 4, numBlocks: 5, gaps: [8, 4, 12], padEvery: 5 };
  await runCase(c, 4);
  await runCase(c, 5, { vec4: false });
});

test('f16 cache: vec4 entry, scalar entry on unaligned rows, and the same forced scalar', async () => {
  const aligned: Case = { numTokens: 11, numKvHeads: 3, headDim: 64, blockSize: 4, numBlocks: 4, gaps: [4, 8, 4], padEvery: 3 };
  await runCase(aligned, 6, { dtype: 'f16' });
  await runCase(aligned, 7, { dtype: 'f16', vec4: false });
  // Odd offsets and row stride: the scalar f16 entry (pairs of halves per word).
  await runCase({ numTokens: 7, numKvHeads: 1, headDim: 34, blockSize: 3, numBlocks: 5, gaps: [3, 1, 2] }, 8, { dtype: 'f16' });
});

test('f16 cache rounds to nearest even, subnormals kept', async () => {
  // Values a truncating or flush-to-zero conversion would get wrong; scaled randoms cover the rest.
  const gpu = await testDevice();
  const kernel = await KvCacheKernel.create(gpu, { dtype: 'f16' });
  const special = [1 + 2 ** -11, 1 + 3 * 2 ** -11, -(1 + 2 ** -11 + 2 ** -20), 2 ** -20, -(2 ** -15) * 1.337, 65504, 1e-8, 0.1];
  const headDim = 8;
  const qkv = new Float32Array(2 * headDim);
  qkv.set(special);
  qkv.set(
    special.map((x) => -x / 3),
    headDim,
  );
  const kCache = gpu.upload('k', new Uint16Array(headDim));
  const vCache = gpu.upload('v', new Uint16Array(headDim));
  await runPass(gpu, (pass, u) =>
    kernel.write(pass, u, {
      qkv: gpu.upload('qkv', qkv),
      numTokens: 1,
      rowStride: 2 * headDim,
      kOffset: 0,
      vOffset: headDim,
      numKvHeads: 1,
      headDim,
      kCache,
      vCache,
      slotMapping: gpu.upload('slots', Uint32Array.of(0)),
    }),
  );
  assert.equal(new Uint16Array(await gpu.read(kCache, headDim * 2)), f32ToF16Bits(qkv.slice(0, headDim)), 'k halves');
  assert.equal(new Uint16Array(await gpu.read(vCache, headDim * 2)), f32ToF16Bits(qkv.slice(headDim)), 'v halves');
});

test.run();
