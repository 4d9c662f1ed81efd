// Plain-TS references for the rotary, KV-cache write and paged attention kernels, computed in float64,
// plus a builder for paged batches (shuffled block tables, mixed prefix and query lengths).
import type { Binding } from '../../src/gpu/index.js';
import type { AttentionArgs } from '../../src/kernels/attention.js';
import { rng, seededPermutation } from './random.js';

export interface RotaryRefArgs {
  numTokens: number;
  rowStride: number;
  qOffset: number;
  numHeads: number;
  kOffset: number;
  numKvHeads: number;
  headDim: number;
  rotaryDim: number;
  positions: ArrayLike<number>;
  invFreq: ArrayLike<number>;
  attentionScaling: number;
}

/** qkv after rotate_half RoPE on q and k heads (float64 angles and trig). */
export function rotaryReference(qkv: Float32Array, a: RotaryRefArgs): Float64Array {
  const out = Float64Array.from(qkv);
  const half = a.rotaryDim / 2;
  for (let t = 0; t < a.numTokens; t++) {
    const heads = [
      ...Array.from({ length: a.numHeads }, (_, h) => a.qOffset + h * a.headDim),
      ...Array.from({ length: a.numKvHeads }, (_, h) => a.kOffset + h * a.headDim),
    ];
    for (const headOffset of heads) {
      const base = t * a.rowStride + headOffset;
      for (let i = 0; i < half; i++) {
        const angle = a.positions[t]! * a.invFreq[i]!;
        const c = Math.cos(angle) * a.attentionScaling;
        const s = Math.sin(angle) * a.attentionScaling;
        const x1 = qkv[base + i]!;
        const x2 = qkv[base + i + half]!;
        out[base + i] = x1 * c - x2 * s;
        out[base + i + half] = x2 * c + x1 * s;
      }
    }
  }
  return out;
}

export interface KvLayout {
  numKvHeads: number;
  headDim: number;
  blockSize: number;
}

/** Slot of position `pos` of a sequence with the given block table row. */
export function slotOf(blockTable: ArrayLike<number>, pos: number, blockSize: number): number {
  return blockTable[Math.floor(pos / blockSize)]! * blockSize + (pos % blockSize);
}

export interface PagedBatchSpec {
  /** Per sequence: tokens already in the cache before this step. */
  cachedLens: number[];
  /** Per sequence: new (query) tokens this step. */
  queryLens: number[];
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  blockSize: number;
  /** Unused blocks in the pool beyond what the sequences need (catch stray reads/writes). */
  spareBlocks?: number;
  seed: number;
}

/** A batch laid out as the runner lays it out; caches already hold every token's k and v. */
export interface PagedBatch {
  numTokens: number;
  numSeqs: number;
  numBlocks: number;
  maxBlocksPerSeq: number;
  blockTables: Uint32Array;
  tokenSeq: Uint32Array;
  tokenPos: Uint32Array;
  slotMapping: Uint32Array;
  /** q only: [numTokens, numHeads*headDim]. */
  q: Float32Array;
  kCache: Float32Array;
  vCache: Float32Array;
  maxContextLen: number;
}

/** Builds sequences whose blocks are a random permutation of the pool, so block order matters. */
export function buildPagedBatch(spec: PagedBatchSpec): PagedBatch {
  const r = rng(spec.seed);
  const { numKvHeads, headDim, blockSize } = spec;
  const numSeqs = spec.cachedLens.length;
  const totalLens = spec.cachedLens.map((c, i) => c + spec.queryLens[i]!);
  const blocksNeeded = totalLens.map((n) => Math.ceil(n / blockSize));
  const maxBlocksPerSeq = Math.max(1, ...blocksNeeded);
  const numBlocks = blocksNeeded.reduce((a, b) => a + b, 0) + (spec.spareBlocks ?? 2);
  const ids = Array.from({ length: numBlocks }, (_, i) => i);
  for (let i = ids.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [ids[i], ids[j]] = [ids[j]!, ids[i]!];
  }
  const blockTables = new Uint32Array(numSeqs * maxBlocksPerSeq).fill(0xffffffff);
  let next = 0;
  for (let s = 0; s < numSeqs; s++) for (let b = 0; b < blocksNeeded[s]!; b++) blockTables[s * maxBlocksPerSeq + b] = ids[next++]!;

  const numTokens = spec.queryLens.reduce((a, b) => a + b, 0);
  const tokenSeq = new Uint32Array(numTokens);
  const tokenPos = new Uint32Array(numTokens);
  const slotMapping = new Uint32Array(numTokens);
  let t = 0;
  for (let s = 0; s < numSeqs; s++) {
    const table = blockTables.subarray(s * maxBlocksPerSeq, (s + 1) * maxBlocksPerSeq);
    for (let i = 0; i < spec.queryLens[s]!; i++, t++) {
      tokenSeq[t] = s;
      tokenPos[t] = spec.cachedLens[s]! + i;
      slotMapping[t] = slotOf(table, tokenPos[t]!, blockSize);
    }
  }
  const cacheLen = numBlocks * blockSize * numKvHeads * headDim;
  const random = (n: number) => Float32Array.from({ length: n }, () => r() * 2 - 1);
  return {
    numTokens,
    numSeqs,
    numBlocks,
    maxBlocksPerSeq,
    blockTables,
    tokenSeq,
    tokenPos,
    slotMapping,
    q: random(numTokens * spec.numHeads * headDim),
    kCache: random(cacheLen),
    vCache: random(cacheLen),
    maxContextLen: Math.max(...totalLens),
  };
}

export interface AttentionRefArgs extends KvLayout {
  numHeads: number;
  scale: number;
  slidingWindow: number;
}

/** out[t, h] = softmax(scale * q . K[visible keys]) V, float64, keys read through the block table. */
export function attentionReference(batch: PagedBatch, a: AttentionRefArgs): Float64Array {
  const { numHeads, numKvHeads, headDim, blockSize } = a;
  const group = numHeads / numKvHeads;
  const out = new Float64Array(batch.numTokens * numHeads * headDim);
  for (let t = 0; t < batch.numTokens; t++) {
    const seq = batch.tokenSeq[t]!;
    const pos = batch.tokenPos[t]!;
    const table = batch.blockTables.subarray(seq * batch.maxBlocksPerSeq, (seq + 1) * batch.maxBlocksPerSeq);
    const lo = a.slidingWindow > 0 ? Math.max(0, pos - a.slidingWindow + 1) : 0;
    for (let h = 0; h < numHeads; h++) {
      const kvHead = Math.floor(h / group);
      const qBase = (t * numHeads + h) * headDim;
      const scores = new Float64Array(pos + 1 - lo);
      const bases: number[] = [];
      for (let k = lo; k <= pos; k++) {
        const base = (slotOf(table, k, blockSize) * numKvHeads + kvHead) * headDim;
        bases.push(base);
        let dot = 0;
        for (let d = 0; d < headDim; d++) dot += batch.q[qBase + d]! * batch.kCache[base + d]!;
        scores[k - lo] = dot * a.scale;
      }
      const max = Math.max(...scores);
      let sum = 0;
      for (let i = 0; i < scores.length; i++) sum += scores[i] = Math.exp(scores[i]! - max);
      for (let i = 0; i < scores.length; i++) {
        const p = scores[i]! / sum;
        for (let d = 0; d < headDim; d++) out[qBase + d]! += p * batch.vCache[bases[i]! + d]!;
      }
    }
  }
  return out;
}

/** Attention arguments for one token, one head of 32 and every buffer `b`: the base of argument-refusal tests. */
export function oneTokenAttentionArgs(b: Binding): AttentionArgs {
  return {
    qkv: b,
    rowStride: 64,
    qOffset: 0,
    out: b,
    kCache: b,
    vCache: b,
    blockTables: b,
    maxBlocksPerSeq: 1,
    tokenSeq: b,
    tokenPos: b,
    numTokens: 1,
    numSeqs: 1,
    numHeads: 1,
    numKvHeads: 1,
    headDim: 32,
    blockSize: 16,
    scale: 1,
    slidingWindow: 0,
    maxContextLen: 1,
  };
}

/**
 * A KV write's slot mapping: numTokens distinct slots drawn at random from all numSlots (a Fisher-Yates
 * shuffle seeded by `seed`), every padEvery-th token `paddingSlot` (written nowhere).
 */
export function shuffledSlotMapping(numSlots: number, numTokens: number, seed: number, paddingSlot: number, padEvery?: number): Uint32Array {
  const slots = seededPermutation(numSlots, seed);
  return Uint32Array.from({ length: numTokens }, (_, t) => (padEvery && t % padEvery === padEvery - 1 ? paddingSlot : slots[t]!));
}
