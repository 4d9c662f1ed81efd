import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { AttentionKernel, planAttention, supportsSubgroupDecode, ATTENTION_SPLIT_LEN, type AttentionDecodePath } from '../../src/kernels/attention.js';
import { KvCacheKernel } from '../../src/kernels/kv-cache.js';
import type { KvCacheDtype } from '../../src/common/types.js';
import { f16BitsToF32, f32ToF16Bits } from '../../src/common/half.js';
import { assertClose, randomF32, runPass, testDevice } from '../helpers/gpu.js';
import { attentionReference, buildPagedBatch, oneTokenAttentionArgs, type PagedBatch, type PagedBatchSpec } from '../support/reference-attention.js';

interface Case extends Omit<PagedBatchSpec, 'seed'> {
  slidingWindow?: number;
  /** Columns of qkv before q; q sits inside a wider row like the runner's fused qkv. */
  qOffset?: number;
  /** Passed instead of the true largest context, to check an understated value drops no keys. */
  maxContextLen?: number;
  /** 'f16': the cache holds the batch's K/V as packed halves, and the reference sees them f16-rounded. */
  kvCacheDtype?: KvCacheDtype;
}

/** q of the batch placed inside a wider qkv row (other columns random), as the fused matmul leaves it. */
function packQkv(batch: PagedBatch, qWidth: number, qOffset: number): { qkv: Float32Array; rowStride: number } {
  const rowStride = qOffset + qWidth + 2 * 8 + 3;
  const qkv = randomF32(batch.numTokens * rowStride, 999);
  for (let t = 0; t < batch.numTokens; t++) qkv.set(batch.q.subarray(t * qWidth, (t + 1) * qWidth), t * rowStride + qOffset);
  return { qkv, rowStride };
}

async function runCase(c: Case, seed: number, decodePath: AttentionDecodePath = 'auto'): Promise<PagedBatch> {
  const gpu = await testDevice();
  const kvCacheDtype = c.kvCacheDtype ?? 'f32';
  // A forced path serves every batch (the subgroup kernel prefill too); 'auto' is what the engine gets.
  const kernel = await AttentionKernel.create(gpu, {
    decodePath,
    kvCacheDtype,
    ...(decodePath === 'auto' ? {} : { subgroupPrefill: decodePath === 'subgroup' }),
  });
  const built = buildPagedBatch({ ...c, seed });
  const kHalves = kvCacheDtype === 'f16' ? f32ToF16Bits(built.kCache) : null;
  const vHalves = kvCacheDtype === 'f16' ? f32ToF16Bits(built.vCache) : null;
  // The reference attends over exactly the values the cache holds: f16-rounded K/V for an f16 cache.
  const batch = kHalves && vHalves ? { ...built, kCache: f16BitsToF32(kHalves), vCache: f16BitsToF32(vHalves) } : built;
  const qOffset = c.qOffset ?? 5;
  const qWidth = c.numHeads * c.headDim;
  const { qkv, rowStride } = packQkv(batch, qWidth, qOffset);
  const scale = 1 / Math.sqrt(c.headDim);
  const slidingWindow = c.slidingWindow ?? 0;
  const out = gpu.createBuffer('out', batch.numTokens * qWidth * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
  await runPass(gpu, (pass, u) =>
    kernel.attend(pass, u, {
      qkv: gpu.upload('qkv', qkv),
      rowStride,
      qOffset,
      out,
      kCache: gpu.upload('k-cache', kHalves ?? batch.kCache),
      vCache: gpu.upload('v-cache', vHalves ?? batch.vCache),
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
      maxContextLen: c.maxContextLen ?? batch.maxContextLen,
    }),
  );
  const got = await gpu.readF32(out, batch.numTokens * qWidth);
  const want = attentionReference(batch, { numHeads: c.numHeads, numKvHeads: c.numKvHeads, headDim: c.headDim, blockSize: c.blockSize, scale, slidingWindow });
  assertClose(got, want, 1e-4, 1e-5, `attention output (${kernel.decodePath} decode path, ${kernel.prefillPath} prefill path, ${kvCacheDtype} cache)`);
  kernel.destroy();
  return batch;
}

// Query lengths 1, 5, 17 over cached prefixes 0, 3, 70 cross block boundaries in both directions.
const MIXED = { cachedLens: [0, 3, 70], queryLens: [1, 5, 17], blockSize: 16 };

/** Runs a prefill or mixed case on the tiled kernel and, where supported, on the subgroup kernel. */
async function runOnEveryPath(c: Case, seed: number): Promise<PagedBatch> {
  let batch: PagedBatch | undefined;
  for (const path of await decodePaths()) batch = await runCase(c, seed, path);
  return batch!;
}

test('MHA (GQA ratio 1), head dim 64, mixed prefill/decode lengths', async () => {
  await runOnEveryPath({ ...MIXED, numHeads: 4, numKvHeads: 4, headDim: 64 }, 1);
});

test('GQA ratio 2, head dim 32, block size 8', async () => {
  await runOnEveryPath({ ...MIXED, blockSize: 8, numHeads: 4, numKvHeads: 2, headDim: 32 }, 2);
});

test('GQA ratio 8, head dim 128', async () => {
  await runOnEveryPath({ ...MIXED, numHeads: 16, numKvHeads: 2, headDim: 128 }, 3);
});

test('MQA with 12 heads (two head groups, one partial), head dim 80', async () => {
  await runOnEveryPath({ ...MIXED, numHeads: 12, numKvHeads: 1, headDim: 80, qOffset: 0 }, 4);
});

test('head dim 256 and head dim 96', async () => {
  await runOnEveryPath({ cachedLens: [9, 0], queryLens: [3, 4], blockSize: 4, numHeads: 2, numKvHeads: 1, headDim: 256 }, 5);
  await runOnEveryPath({ cachedLens: [130], queryLens: [6], blockSize: 32, numHeads: 6, numKvHeads: 3, headDim: 96 }, 6);
});

test('sliding window limits keys to [pos - window + 1, pos]', async () => {
  await runOnEveryPath({ ...MIXED, cachedLens: [0, 3, 150], numHeads: 4, numKvHeads: 2, headDim: 32, slidingWindow: 7 }, 7);
  await runOnEveryPath({ cachedLens: [3000, 40], queryLens: [1, 1], blockSize: 16, numHeads: 2, numKvHeads: 1, headDim: 32, slidingWindow: 100 }, 8);
});

/** Every decode path this device can run: the portable kernel, and the subgroup kernel where supported. */
async function decodePaths(): Promise<AttentionDecodePath[]> {
  return supportsSubgroupDecode(await testDevice()) ? ['portable', 'subgroup'] : ['portable'];
}

/** Runs a pure decode case (one query token per sequence) on every decode path. */
async function runDecodeCase(c: Omit<Case, 'queryLens'>, seed: number): Promise<PagedBatch> {
  let batch: PagedBatch | undefined;
  for (const path of await decodePaths()) batch = await runCase({ ...c, queryLens: c.cachedLens.map(() => 1) }, seed, path);
  return batch!;
}

test('paths: auto picks the subgroup kernel on CPU adapters with 8-lane subgroups (prefill too), portable forces the tiled one', async () => {
  const gpu = await testDevice();
  const auto = await AttentionKernel.create(gpu);
  const expected = gpu.isSoftware && supportsSubgroupDecode(gpu) ? 'subgroup' : 'portable';
  assert.is(auto.decodePath, expected);
  assert.is(auto.prefillPath, expected);
  const portable = await AttentionKernel.create(gpu, { decodePath: 'portable' });
  assert.is(portable.decodePath, 'portable');
  assert.is(portable.prefillPath, 'portable');
  const decodeOnly = await AttentionKernel.create(gpu, { subgroupPrefill: false });
  assert.is(decodeOnly.prefillPath, 'portable');
  for (const k of [auto, portable, decodeOnly]) k.destroy();
});

test('pure decode batches on both paths: MHA, GQA 2/8, MQA with a partial head group', async () => {
  // Contexts 1, 2, 17, 64, 65, 130 straddle block edges; the block-size-16 pool is shuffled.
  const cachedLens = [0, 1, 16, 63, 64, 129];
  await runDecodeCase({ cachedLens, blockSize: 16, numHeads: 4, numKvHeads: 4, headDim: 64 }, 21);
  await runDecodeCase({ cachedLens, blockSize: 8, numHeads: 4, numKvHeads: 2, headDim: 32 }, 22);
  await runDecodeCase({ cachedLens, blockSize: 16, numHeads: 16, numKvHeads: 2, headDim: 128 }, 23);
  await runDecodeCase({ cachedLens, blockSize: 16, numHeads: 12, numKvHeads: 1, headDim: 80, qOffset: 0 }, 24);
});

test('pure decode on both paths: head dims 4, 96 and 256, 12q/4kv bench-model shape with 16 sequences', async () => {
  await runDecodeCase({ cachedLens: [9, 0, 3], blockSize: 4, numHeads: 2, numKvHeads: 1, headDim: 256 }, 25);
  await runDecodeCase({ cachedLens: [130, 5], blockSize: 32, numHeads: 6, numKvHeads: 3, headDim: 96 }, 26);
  await runDecodeCase({ cachedLens: [7, 40], blockSize: 2, numHeads: 3, numKvHeads: 3, headDim: 4 }, 27);
  const cachedLens = Array.from({ length: 16 }, (_, i) => 19 + ((i * 7) % 21));
  await runDecodeCase({ cachedLens, blockSize: 64, numHeads: 12, numKvHeads: 4, headDim: 64 }, 28);
});

test('pure decode with a sliding window on both paths, short and split contexts', async () => {
  await runDecodeCase({ cachedLens: [0, 3, 6, 7, 150], blockSize: 16, numHeads: 4, numKvHeads: 2, headDim: 32, slidingWindow: 7 }, 29);
  await runDecodeCase({ cachedLens: [3000, 40], blockSize: 16, numHeads: 2, numKvHeads: 1, headDim: 32, slidingWindow: 1100 }, 30);
});

test('decode batch with a context longer than one split (split-KV + reduce), both paths', async () => {
  const spec = { cachedLens: [5000, 37, 1200], queryLens: [1, 1, 1], blockSize: 16, numHeads: 8, numKvHeads: 2, headDim: 64 };
  const batch = await runDecodeCase(spec, 9);
  const plan = planAttention({ ...spec, numTokens: batch.numTokens, numSeqs: batch.numSeqs, maxContextLen: batch.maxContextLen });
  assert.is(plan.tokensPerTile, 1);
  assert.is(plan.numSplits, Math.ceil(5001 / ATTENTION_SPLIT_LEN));
});

test('mixed batch with a long prefix also splits', async () => {
  const spec = { cachedLens: [2500, 0], queryLens: [9, 2], blockSize: 32, numHeads: 4, numKvHeads: 1, headDim: 32 };
  const batch = await runOnEveryPath(spec, 10);
  const shape = { ...spec, numTokens: batch.numTokens, numSeqs: batch.numSeqs, maxContextLen: batch.maxContextLen };
  assert.ok(planAttention(shape).numSplits > 1);
  const oneTokenTiles = planAttention(shape, undefined, true);
  assert.is(oneTokenTiles.tokensPerTile, 1);
  assert.ok(oneTokenTiles.numSplits > 1);
});

test('an understated maxContextLen still covers every key (the last split runs to the end), both paths', async () => {
  await runDecodeCase({ cachedLens: [5000, 10], blockSize: 16, numHeads: 2, numKvHeads: 1, headDim: 32, maxContextLen: 2100 }, 14);
});

test('split plans: fewer splits when a batch has enough workgroups or little scratch, spread evenly', () => {
  const decode = { numTokens: 1, numSeqs: 1, numHeads: 8, numKvHeads: 8, headDim: 128, maxContextLen: 32768 };
  assert.is(planAttention(decode).numSplits, 32768 / ATTENTION_SPLIT_LEN);
  assert.is(planAttention({ ...decode, maxContextLen: 1024 }).numSplits, 1);
  const busy = planAttention({ ...decode, numTokens: 512, numSeqs: 512, numKvHeads: 8, numHeads: 32 });
  assert.is(busy.numSplits, 1);
  const tight = planAttention(decode, 5 * 8 * 130 * 4);
  assert.is(tight.numSplits, 5);
  assert.ok(tight.splitLen * tight.numSplits >= 32768 && tight.splitLen % 64 === 0);
  assert.ok(tight.splitLen * (tight.numSplits - 1) < 32768);
});

test('32k-context decode, both paths', async () => {
  await runDecodeCase({ cachedLens: [32767, 100], blockSize: 64, numHeads: 2, numKvHeads: 1, headDim: 32, spareBlocks: 0 }, 11);
});

test('kv write then attend in one pass, as the runner calls them', async () => {
  const gpu = await testDevice();
  const attention = await AttentionKernel.create(gpu);
  const kvWrite = await KvCacheKernel.create(gpu);
  const numHeads = 4,
    numKvHeads = 2,
    headDim = 32,
    blockSize = 8;
  const batch = buildPagedBatch({ cachedLens: [11, 0], queryLens: [3, 10], numHeads, numKvHeads, headDim, blockSize, seed: 12 });
  const qWidth = numHeads * headDim,
    kvWidth = numKvHeads * headDim;
  // Fused row: [q | k | v]; the caches start with garbage in the new tokens' slots.
  const rowStride = qWidth + 2 * kvWidth;
  const qkv = randomF32(batch.numTokens * rowStride, 13);
  const kCacheHost = batch.kCache.slice(),
    vCacheHost = batch.vCache.slice();
  for (let t = 0; t < batch.numTokens; t++) {
    batch.q.set(qkv.subarray(t * rowStride, t * rowStride + qWidth), t * qWidth);
    const slot = batch.slotMapping[t]!;
    batch.kCache.set(qkv.subarray(t * rowStride + qWidth, t * rowStride + qWidth + kvWidth), slot * kvWidth);
    batch.vCache.set(qkv.subarray(t * rowStride + qWidth + kvWidth, t * rowStride + rowStride), slot * kvWidth);
  }
  const qkvBuf = gpu.upload('qkv', qkv);
  const kCache = gpu.upload('k', kCacheHost),
    vCache = gpu.upload('v', vCacheHost);
  const out = gpu.createBuffer('out', batch.numTokens * qWidth * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
  const scale = 0.3;
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
      slotMapping: gpu.upload('slots', batch.slotMapping),
    });
    attention.attend(pass, u, {
      qkv: qkvBuf,
      rowStride,
      qOffset: 0,
      out,
      kCache,
      vCache,
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
      scale,
      slidingWindow: 0,
      maxContextLen: batch.maxContextLen,
    });
  });
  const want = attentionReference(batch, { numHeads, numKvHeads, headDim, blockSize, scale, slidingWindow: 0 });
  assertClose(await gpu.readF32(out, batch.numTokens * qWidth), want, 1e-4, 1e-5, 'attention after kv write');
  attention.destroy();
});

test('f16 cache: prefill/mixed batches, GQA and MQA, head dims 32..256, sliding window and split-KV', async () => {
  const f16 = { kvCacheDtype: 'f16' } as const;
  await runOnEveryPath({ ...MIXED, numHeads: 4, numKvHeads: 2, headDim: 64, ...f16 }, 41);
  await runOnEveryPath({ ...MIXED, numHeads: 12, numKvHeads: 1, headDim: 80, qOffset: 0, slidingWindow: 9, ...f16 }, 42);
  await runOnEveryPath({ cachedLens: [9, 0], queryLens: [3, 4], blockSize: 4, numHeads: 2, numKvHeads: 1, headDim: 256, ...f16 }, 43);
  await runOnEveryPath({ cachedLens: [2500, 0], queryLens: [9, 2], blockSize: 32, numHeads: 4, numKvHeads: 1, headDim: 32, ...f16 }, 44);
});

test('f16 cache: pure decode on both paths, GQA 8, head dim 4, split-KV with a window', async () => {
  const f16 = { kvCacheDtype: 'f16' } as const;
  await runDecodeCase({ cachedLens: [0, 1, 16, 63, 64, 129], blockSize: 16, numHeads: 16, numKvHeads: 2, headDim: 128, ...f16 }, 45);
  await runDecodeCase({ cachedLens: [7, 40], blockSize: 2, numHeads: 3, numKvHeads: 3, headDim: 4, ...f16 }, 46);
  await runDecodeCase({ cachedLens: [3000, 40, 5], blockSize: 16, numHeads: 4, numKvHeads: 2, headDim: 96, slidingWindow: 1100, ...f16 }, 47);
});

test('unsupported shapes are refused with a reason', async () => {
  const gpu = await testDevice();
  const kernel = await AttentionKernel.create(gpu);
  const b = gpu.upload('x', new Float32Array(64));
  const base = { ...oneTokenAttentionArgs(b), numHeads: 2 };
  await runPass(gpu, (pass, u) => {
    assert.throws(() => kernel.attend(pass, u, { ...base, numHeads: 3, numKvHeads: 2 }), /multiple of numKvHeads/);
    assert.throws(() => kernel.attend(pass, u, { ...base, headDim: 30, rowStride: 64 }), /headDim 30/);
    assert.throws(() => kernel.attend(pass, u, { ...base, headDim: 512, rowStride: 1024 }), /headDim 512/);
  });
  kernel.destroy();
});

test.run();
