// The int8 / int4 KV cache (LMDeploy's quant_policy 8 / 4): the quantizing writer against a plain-TS
// quantize-then-scatter, and paged attention over quantized caches on every kernel path against the
// float64 reference on the dequantized K/V (tight) and on f16-rounded K/V (the f16 cache's view; looser).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { AttentionKernel, supportsSubgroupDecode, type AttentionDecodePath } from '../../src/kernels/attention.js';
import { KvCacheKernel, PADDING_SLOT } from '../../src/kernels/kv-cache.js';
import { f16BitsToF32, f32ToF16Bits } from '../../src/common/half.js';
import { KV_QUANT_BITS } from '../../src/common/types.js';
import { kvCacheBytesPerTokenHead } from '../../src/runner/memory.js';
import { assertClose, randomF32, runPass, testDevice } from '../helpers/gpu.js';
import {
  attentionReference,
  buildPagedBatch,
  oneTokenAttentionArgs,
  shuffledSlotMapping,
  type PagedBatch,
  type PagedBatchSpec,
} from '../support/reference-attention.js';
import { dequantizeCache, interleaveParams, packCodes, quantizeCache, quantizeRow, unpackCodes, type KvQuantBits } from '../support/kv-quant.js';

type QuantDtype = keyof typeof KV_QUANT_BITS;
const DTYPES: QuantDtype[] = ['int8', 'int4'];

interface WriteCase {
  numTokens: number;
  numKvHeads: number;
  headDim: number;
  blockSize: number;
  numBlocks: number;
  /** Columns before k, between k and v, and after v in each qkv row. */
  gaps: [number, number, number];
  padEvery?: number;
  /** Scales the random qkv values (and shifts them by `offset`), to reach f16 rounding of big mins. */
  scale?: number;
  offset?: number;
}

/** Runs the writer over random slots and checks every word and pair of both caches against the TS reference. */
async function runWriteCase(c: WriteCase, dtype: QuantDtype, seed: number): Promise<{ codes: number; midpointFlips: number }> {
  const gpu = await testDevice();
  const kernel = await KvCacheKernel.create(gpu, { dtype });
  const bits = KV_QUANT_BITS[dtype] as KvQuantBits;
  const rowWords = (c.headDim * bits) / 32;
  const rowLen = c.numKvHeads * c.headDim;
  const kOffset = c.gaps[0];
  const vOffset = kOffset + rowLen + c.gaps[1];
  const rowStride = vOffset + rowLen + c.gaps[2];
  const qkv = randomF32(c.numTokens * rowStride, seed, c.scale ?? 1).map((x) => x + (c.offset ?? 0));
  const numSlots = c.numBlocks * c.blockSize;
  const slotMapping = shuffledSlotMapping(numSlots, c.numTokens, seed + 100, PADDING_SLOT, c.padEvery);
  // Garbage everywhere first: slots nobody writes must keep it.
  const garbage = (n: number, s: number) => Uint32Array.from({ length: n }, (_, i) => Math.imul(i + 1, 2654435761 + s) >>> 0);
  const numRows = numSlots * c.numKvHeads;
  const kInit = garbage(numRows * rowWords, seed + 1);
  const vInit = garbage(numRows * rowWords, seed + 2);
  const pInit = garbage(numRows * 2, seed + 3);
  const kCache = gpu.upload('k-cache', kInit);
  const vCache = gpu.upload('v-cache', vInit);
  const kvParams = gpu.upload('kv-params', pInit);
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
      kvParams,
    }),
  );
  const wantK = kInit.slice();
  const wantV = vInit.slice();
  const wantP = pInit.slice();
  // Per written row: how close each code was to a rounding midpoint.
  const unrounded = new Map<string, Float32Array>();
  for (let t = 0; t < c.numTokens; t++) {
    const slot = slotMapping[t]!;
    if (slot === PADDING_SLOT) continue;
    for (let h = 0; h < c.numKvHeads; h++) {
      const row = slot * c.numKvHeads + h;
      for (const [which, offset, want] of [
        [0, kOffset, wantK],
        [1, vOffset, wantV],
      ] as const) {
        const src = t * rowStride + offset + h * c.headDim;
        const q = quantizeRow(qkv.subarray(src, src + c.headDim), bits);
        want.set(packCodes(q.codes, bits), row * rowWords);
        wantP[row * 2 + which] = q.params;
        unrounded.set(`${which}:${row}`, q.unrounded);
      }
    }
  }
  // Scale/min pairs: bit-exact (min/max, one multiply and the f16 rounding are exact in WGSL).
  assert.equal(new Uint32Array(await gpu.read(kvParams, wantP.length * 4)), wantP, `${dtype} kv_params`);
  // Codes: bit-exact, except one code step where the value sat within 1e-3 of a rounding midpoint.
  let codes = 0;
  let midpointFlips = 0;
  for (const [which, buffer, want] of [
    [0, kCache, wantK],
    [1, vCache, wantV],
  ] as const) {
    const got = new Uint32Array(await gpu.read(buffer, want.length * 4));
    for (let row = 0; row < numRows; row++) {
      const gotRow = got.subarray(row * rowWords, (row + 1) * rowWords);
      const wantRow = want.subarray(row * rowWords, (row + 1) * rowWords);
      const u = unrounded.get(`${which}:${row}`);
      if (!u) {
        assert.equal(gotRow, wantRow, `${dtype} ${which ? 'v' : 'k'} row ${row} (not written) kept its contents`);
        continue;
      }
      const g = unpackCodes(gotRow, bits, c.headDim);
      const w = unpackCodes(wantRow, bits, c.headDim);
      for (let d = 0; d < c.headDim; d++) {
        codes++;
        if (g[d] === w[d]) continue;
        const nearMidpoint = Math.abs((u[d]! % 1) - 0.5) < 1e-3;
        assert.ok(
          Math.abs(g[d]! - w[d]!) === 1 && nearMidpoint,
          `${dtype} ${which ? 'v' : 'k'} row ${row} element ${d}: code ${g[d]} vs ${w[d]} (unrounded ${u[d]})`,
        );
        midpointFlips++;
      }
    }
  }
  return { codes, midpointFlips };
}

test('writer: int8 and int4 codes and (scale, min) pairs match the TS quantize-then-scatter; other slots untouched', async () => {
  let codes = 0;
  let flips = 0;
  for (const dtype of DTYPES) {
    const cases: WriteCase[] = [
      // head_dim 64 and 128, 1..5 kv heads, block size 16, padding tokens, unaligned k/v offsets.
      { numTokens: 37, numKvHeads: 2, headDim: 64, blockSize: 16, numBlocks: 4, gaps: [5, 3, 1], padEvery: 6 },
      { numTokens: 20, numKvHeads: 5, headDim: 128, blockSize: 16, numBlocks: 2, gaps: [0, 0, 0] },
      { numTokens: 1, numKvHeads: 1, headDim: 64, blockSize: 16, numBlocks: 3, gaps: [64 * 12, 0, 2] },
      { numTokens: 9, numKvHeads: 3, headDim: 128, blockSize: 16, numBlocks: 2, gaps: [8, 4, 12], padEvery: 4 },
      // stories260K's shape: head_dim 8, one u32 word per int4 row.
      { numTokens: 23, numKvHeads: 4, headDim: 8, blockSize: 16, numBlocks: 2, gaps: [64, 0, 0], padEvery: 7 },
      // Big values around an offset: the f16 rounding of min and the clamp at the top code matter.
      { numTokens: 12, numKvHeads: 4, headDim: 64, blockSize: 16, numBlocks: 2, gaps: [4, 0, 4], scale: 30, offset: 1000 },
    ];
    for (const [i, c] of cases.entries()) {
      const r = await runWriteCase(c, dtype, 10 * i + (dtype === 'int8' ? 1 : 2));
      codes += r.codes;
      flips += r.midpointFlips;
    }
  }
  console.log(`  writer: ${codes} codes checked, ${flips} off by one at a rounding midpoint`);
  assert.ok(flips <= codes / 1000, `${flips} midpoint flips of ${codes} codes`);
});

test('writer: constant rows store scale 0 and read back as their f16 value; tiny ranges too', async () => {
  const gpu = await testDevice();
  for (const dtype of DTYPES) {
    const bits = KV_QUANT_BITS[dtype] as KvQuantBits;
    const kernel = await KvCacheKernel.create(gpu, { dtype });
    const headDim = 64;
    const rowWords = (headDim * bits) / 32;
    // Token 0: k constant 0.3, v all zero; token 1: k spans 1e-9 (below f16 subnormals), v = -7 except one 5.
    const qkv = new Float32Array(2 * 2 * headDim);
    qkv.fill(0.3, 0, headDim);
    for (let d = 0; d < headDim; d++) qkv[2 * headDim + d] = 2 + (d % 2) * 1e-9;
    qkv.fill(-7, 3 * headDim, 4 * headDim);
    qkv[3 * headDim + 17] = 5;
    const kCache = gpu.upload('k', new Uint32Array(2 * rowWords).fill(0xffffffff));
    const vCache = gpu.upload('v', new Uint32Array(2 * rowWords).fill(0xffffffff));
    const kvParams = gpu.upload('p', new Uint32Array(4).fill(0xffffffff));
    await runPass(gpu, (pass, u) =>
      kernel.write(pass, u, {
        qkv: gpu.upload('qkv', qkv),
        numTokens: 2,
        rowStride: 2 * headDim,
        kOffset: 0,
        vOffset: headDim,
        numKvHeads: 1,
        headDim,
        kCache,
        vCache,
        slotMapping: gpu.upload('slots', Uint32Array.of(0, 1)),
        kvParams,
      }),
    );
    const params = new Uint32Array(await gpu.read(kvParams, 16));
    const halves = f16BitsToF32(new Uint16Array(params.buffer));
    // [k0 scale, k0 min, v0 scale, v0 min, k1 scale, k1 min, v1 scale, v1 min]
    assert.equal(Array.from(halves.subarray(0, 2)), [0, f16BitsToF32(f32ToF16Bits(Float32Array.of(0.3)))[0]], `${dtype} constant row`);
    assert.equal(Array.from(halves.subarray(2, 4)), [0, 0], `${dtype} zero row`);
    assert.equal(Array.from(halves.subarray(4, 6)), [0, 2], `${dtype} 1e-9 range`);
    assert.is(halves[7], -7, `${dtype} min of the -7/5 row`);
    const k = new Uint32Array(await gpu.read(kCache, 2 * rowWords * 4));
    assert.ok(
      k.every((w) => w === 0),
      `${dtype} degenerate rows hold code 0`,
    );
    const v = unpackCodes(new Uint32Array(await gpu.read(vCache, 2 * rowWords * 4)).subarray(rowWords), bits, headDim);
    assert.is(v[17], 2 ** bits - 1, `${dtype} the max takes the top code`);
    assert.ok(
      v.every((code, d) => d === 17 || code === 0),
      `${dtype} the rest sit at min`,
    );
  }
});

interface AttentionCase extends Omit<PagedBatchSpec, 'seed'> {
  slidingWindow?: number;
}

/** Every kernel path of this device: portable (tiled) and, where supported, the subgroup kernel for every batch. */
async function paths(): Promise<AttentionDecodePath[]> {
  return supportsSubgroupDecode(await testDevice()) ? ['portable', 'subgroup'] : ['portable'];
}

/** Largest |a - b|. */
function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/**
 * Attention over a quantized cache on every path: vs the reference on the dequantized K/V (1e-4, the
 * f32 cache's tolerance) and vs the reference on f16-rounded K/V; returns the largest error against the
 * latter, which the callers bound.
 */
async function runAttentionCase(c: AttentionCase, dtype: QuantDtype, seed: number): Promise<number> {
  const gpu = await testDevice();
  const bits = KV_QUANT_BITS[dtype] as KvQuantBits;
  const batch = buildPagedBatch({ ...c, seed });
  const kq = quantizeCache(batch.kCache, c.headDim, bits);
  const vq = quantizeCache(batch.vCache, c.headDim, bits);
  const dequantized: PagedBatch = { ...batch, kCache: kq.dequantized, vCache: vq.dequantized };
  const halves: PagedBatch = { ...batch, kCache: f16BitsToF32(f32ToF16Bits(batch.kCache)), vCache: f16BitsToF32(f32ToF16Bits(batch.vCache)) };
  const qWidth = c.numHeads * c.headDim;
  const qOffset = 3;
  const rowStride = qOffset + qWidth + 7;
  const qkv = randomF32(batch.numTokens * rowStride, seed + 5);
  for (let t = 0; t < batch.numTokens; t++) qkv.set(batch.q.subarray(t * qWidth, (t + 1) * qWidth), t * rowStride + qOffset);
  const scale = 1 / Math.sqrt(c.headDim);
  const slidingWindow = c.slidingWindow ?? 0;
  const layout = { numHeads: c.numHeads, numKvHeads: c.numKvHeads, headDim: c.headDim, blockSize: c.blockSize, scale, slidingWindow };
  const wantExact = attentionReference(dequantized, layout);
  const wantF16 = attentionReference(halves, layout);
  let worst = 0;
  for (const decodePath of await paths()) {
    const kernel = await AttentionKernel.create(gpu, { decodePath, kvCacheDtype: dtype, subgroupPrefill: decodePath === 'subgroup' });
    const out = gpu.createBuffer('out', batch.numTokens * qWidth * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
    await runPass(gpu, (pass, u) =>
      kernel.attend(pass, u, {
        qkv: gpu.upload('qkv', qkv),
        rowStride,
        qOffset,
        out,
        kCache: gpu.upload('k-cache', kq.words),
        vCache: gpu.upload('v-cache', vq.words),
        kvParams: gpu.upload('kv-params', interleaveParams(kq.params, vq.params)),
        blockTables: gpu.upload('block-tables', batch.blockTables),
        maxBlocksPerSeq: batch.maxBlocksPerSeq,
        tokenSeq: gpu.upload('token-seq', batch.tokenSeq),
        tokenPos: gpu.upload('token-pos', batch.tokenPos),
        numTokens: batch.numTokens,
        numSeqs: batch.numSeqs,
        numHeads: c.numHeads,
        numKvHeads: c.numKvHeads,
        headDim: c.headDim,
        blockSize: c.blockSize,
        scale,
        slidingWindow,
        maxContextLen: batch.maxContextLen,
      }),
    );
    const got = await gpu.readF32(out, batch.numTokens * qWidth);
    assertClose(got, wantExact, 1e-4, 1e-5, `${dtype} attention on dequantized K/V (${kernel.decodePath} decode, ${kernel.prefillPath} prefill)`);
    worst = Math.max(worst, maxAbsDiff(got, wantF16));
    kernel.destroy();
  }
  return worst;
}

// Stated bounds against attention on f16-rounded K/V (values uniform in [-1, 1]): one int8 step is
// 2/255 (element error <= ~0.004), one int4 step 2/15 (<= ~0.07); the output averages V over keys.
const VS_F16_BOUND = { int8: 0.01, int4: 0.12 } as const;

const SHAPES: [string, AttentionCase][] = [
  // Mixed batch: decode, chunked prefill over a cached prefix, prompts crossing 16-token blocks.
  [
    'MHA 3 kv heads, head dim 64, mixed prefill/decode',
    { cachedLens: [0, 3, 70], queryLens: [1, 5, 17], blockSize: 16, numHeads: 3, numKvHeads: 3, headDim: 64 },
  ],
  ['GQA 10q/5kv, head dim 128, chunked prefill', { cachedLens: [40, 0], queryLens: [7, 19], blockSize: 16, numHeads: 10, numKvHeads: 5, headDim: 128 }],
  [
    'MQA 12q/1kv (two head groups), head dim 64, sliding window',
    { cachedLens: [50, 2], queryLens: [4, 3], blockSize: 16, numHeads: 12, numKvHeads: 1, headDim: 64, slidingWindow: 21 },
  ],
  [
    'pure decode GQA 8q/2kv, head dim 128, contexts across blocks',
    { cachedLens: [0, 15, 16, 47, 130], queryLens: [1, 1, 1, 1, 1], blockSize: 16, numHeads: 8, numKvHeads: 2, headDim: 128 },
  ],
  [
    'pure decode 4q/4kv, head dim 64, split-KV (1500 keys)',
    { cachedLens: [1500, 9], queryLens: [1, 1], blockSize: 16, numHeads: 4, numKvHeads: 4, headDim: 64 },
  ],
  [
    'stories260K shape 8q/4kv, head dim 8 (one word per int4 row), mixed',
    { cachedLens: [0, 33], queryLens: [9, 1], blockSize: 16, numHeads: 8, numKvHeads: 4, headDim: 8 },
  ],
  [
    'mixed batch with a long prefix (split-KV prefill), GQA 4q/2kv, head dim 64',
    { cachedLens: [1300, 0], queryLens: [6, 2], blockSize: 16, numHeads: 4, numKvHeads: 2, headDim: 64 },
  ],
];

for (const dtype of DTYPES) {
  test(`attention over an ${dtype} cache, every path: exact on dequantized K/V, within ${VS_F16_BOUND[dtype]} of the f16 cache`, async () => {
    const errors: string[] = [];
    for (const [i, [name, c]] of SHAPES.entries()) {
      const err = await runAttentionCase(c, dtype, 60 + i);
      errors.push(`${name}: ${err.toExponential(2)}`);
      assert.ok(err <= VS_F16_BOUND[dtype], `${dtype} ${name}: max |out - out(f16 K/V)| ${err} > ${VS_F16_BOUND[dtype]}`);
    }
    console.log(`  ${dtype} max |attention - attention on f16 K/V|:\n    ${errors.join('\n    ')}`);
  });
}

test('kv write then attend in one pass on int8 and int4 caches (the runner order), both paths', async () => {
  const gpu = await testDevice();
  const numHeads = 6;
  const numKvHeads = 2;
  const headDim = 64;
  const blockSize = 16;
  for (const dtype of DTYPES) {
    const bits = KV_QUANT_BITS[dtype] as KvQuantBits;
    const kvWrite = await KvCacheKernel.create(gpu, { dtype });
    // A cached prefix of 21 tokens (written by an earlier step) and 12 new tokens crossing a block edge.
    const batch = buildPagedBatch({ cachedLens: [21, 0], queryLens: [12, 3], numHeads, numKvHeads, headDim, blockSize, seed: 80 });
    const qWidth = numHeads * headDim;
    const kvWidth = numKvHeads * headDim;
    const rowStride = qWidth + 2 * kvWidth;
    const qkv = randomF32(batch.numTokens * rowStride, 81);
    for (let t = 0; t < batch.numTokens; t++) {
      batch.q.set(qkv.subarray(t * rowStride, t * rowStride + qWidth), t * qWidth);
      const slot = batch.slotMapping[t]!;
      batch.kCache.set(qkv.subarray(t * rowStride + qWidth, t * rowStride + qWidth + kvWidth), slot * kvWidth);
      batch.vCache.set(qkv.subarray(t * rowStride + qWidth + kvWidth, (t + 1) * rowStride), slot * kvWidth);
    }
    // The host quantizes the prefix; the GPU overwrites the new tokens' rows, which start stale.
    const kq = quantizeCache(batch.kCache, headDim, bits);
    const vq = quantizeCache(batch.vCache, headDim, bits);
    const rowWords = (headDim * bits) / 32;
    const stale = (words: Uint32Array, perRow: number) => {
      for (const slot of batch.slotMapping)
        for (let h = 0; h < numKvHeads; h++) words.fill(0x5a5a5a5a, (slot * numKvHeads + h) * perRow, (slot * numKvHeads + h + 1) * perRow);
      return words;
    };
    const params = interleaveParams(kq.params, vq.params);
    const qkvBuf = gpu.upload('qkv', qkv);
    for (const decodePath of await paths()) {
      const kCache = gpu.upload('k', stale(kq.words.slice(), rowWords));
      const vCache = gpu.upload('v', stale(vq.words.slice(), rowWords));
      const kvParams = gpu.upload('p', stale(params.slice(), 2));
      const attention = await AttentionKernel.create(gpu, { decodePath, kvCacheDtype: dtype, subgroupPrefill: decodePath === 'subgroup' });
      const out = gpu.createBuffer('out', batch.numTokens * qWidth * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
      await runPass(gpu, (pass, u) => {
        kvWrite.write(pass, u, {
          qkv: qkvBuf,
          numTokens: batch.numTokens,
          rowStride,
          kOffset: qWidth,
          vOffset: qWidth + kvWidth,
          numKvHeads,
          headDim,
          kCache,
          vCache,
          kvParams,
          slotMapping: gpu.upload('slots', batch.slotMapping),
        });
        attention.attend(pass, u, {
          qkv: qkvBuf,
          rowStride,
          qOffset: 0,
          out,
          kCache,
          vCache,
          kvParams,
          blockTables: gpu.upload('tables', batch.blockTables),
          maxBlocksPerSeq: batch.maxBlocksPerSeq,
          tokenSeq: gpu.upload('seq', batch.tokenSeq),
          tokenPos: gpu.upload('pos', batch.tokenPos),
          numTokens: batch.numTokens,
          numSeqs: batch.numSeqs,
          numHeads,
          numKvHeads,
          headDim,
          blockSize,
          scale: 0.125,
          slidingWindow: 0,
          maxContextLen: batch.maxContextLen,
        });
      });
      // Attention must read exactly what the write stored: the reference runs on the read-back caches
      // dequantized on the host (the writer's codes themselves are checked against the TS quantizer above).
      const gotParams = new Uint32Array(await gpu.read(kvParams, params.length * 4));
      const kParams = gotParams.filter((_, i) => i % 2 === 0);
      const vParams = gotParams.filter((_, i) => i % 2 === 1);
      const kStored = dequantizeCache(new Uint32Array(await gpu.read(kCache, kq.words.length * 4)), kParams, headDim, bits);
      const vStored = dequantizeCache(new Uint32Array(await gpu.read(vCache, vq.words.length * 4)), vParams, headDim, bits);
      assertClose(kStored, kq.dequantized, 0, 2 / (2 ** bits - 1) + 1e-6, `${dtype} stored K within one code of the host's quantization`);
      assertClose(vStored, vq.dequantized, 0, 2 / (2 ** bits - 1) + 1e-6, `${dtype} stored V within one code of the host's quantization`);
      const want = attentionReference(
        { ...batch, kCache: kStored, vCache: vStored },
        { numHeads, numKvHeads, headDim, blockSize, scale: 0.125, slidingWindow: 0 },
      );
      assertClose(
        await gpu.readF32(out, batch.numTokens * qWidth),
        want,
        1e-4,
        1e-5,
        `${dtype} attention after the quantizing write (${attention.decodePath})`,
      );
      attention.destroy();
    }
  }
});

test('kernels refuse a quantized cache without kvParams, kvParams on a float cache, and int4 with head_dim % 8 != 0', async () => {
  const gpu = await testDevice();
  const b = gpu.upload('x', new Float32Array(256));
  const attnArgs = oneTokenAttentionArgs(b);
  const writeArgs = { qkv: b, numTokens: 1, rowStride: 64, kOffset: 0, vOffset: 32, numKvHeads: 1, headDim: 32, kCache: b, vCache: b, slotMapping: b };
  const int8 = await AttentionKernel.create(gpu, { kvCacheDtype: 'int8' });
  const int4 = await AttentionKernel.create(gpu, { kvCacheDtype: 'int4' });
  const f16 = await AttentionKernel.create(gpu, { kvCacheDtype: 'f16' });
  const write4 = await KvCacheKernel.create(gpu, { dtype: 'int4' });
  const write32 = await KvCacheKernel.create(gpu);
  await runPass(gpu, (pass, u) => {
    assert.throws(() => int8.attend(pass, u, attnArgs), /int8 cache needs kvParams/);
    assert.throws(() => f16.attend(pass, u, { ...attnArgs, kvParams: b }), /only for int8\/int4 caches/);
    assert.throws(() => int4.attend(pass, u, { ...attnArgs, kvParams: b, headDim: 36, rowStride: 72 }), /headDim 36 must be a multiple of 8/);
    assert.throws(() => write4.write(pass, u, writeArgs), /int4 cache needs kvParams/);
    assert.throws(() => write4.write(pass, u, { ...writeArgs, kvParams: b, headDim: 20, vOffset: 20 }), /headDim 20 must be a multiple of 8/);
    assert.throws(() => write32.write(pass, u, { ...writeArgs, kvParams: b }), /only for int8\/int4 caches/);
  });
  for (const k of [int8, int4, f16]) k.destroy();
});

test('bytes per token and kv head, (scale, min) included: int8 ~1.9x and int4 ~3.8x the tokens of f16 at head_dim 128', () => {
  assert.is(kvCacheBytesPerTokenHead('f32', 128), 512);
  assert.is(kvCacheBytesPerTokenHead('f16', 128), 256);
  assert.is(kvCacheBytesPerTokenHead('int8', 128), 132);
  assert.is(kvCacheBytesPerTokenHead('int4', 128), 68);
  assert.is(kvCacheBytesPerTokenHead('int4', 64), 36);
});

test.run();
