// Per-request block tables on top of the block pool, plus prefix caching (vLLM v1's KVCacheManager
// shape). Deals only in block ids, counts and hashes; the model runner owns the actual buffers.
import assert from 'node:assert/strict';
import { BlockPool } from './block-pool.js';
import { ensureBlockHashes, type KvSequence } from './block-hash.js';

export type { KvSequence } from './block-hash.js';

export interface KvCacheManagerOptions {
  numBlocks: number;
  /** Tokens per block. */
  blockSize: number;
  enablePrefixCaching: boolean;
}

export class KvCacheManager {
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly enablePrefixCaching: boolean;
  private readonly pool: BlockPool;
  private readonly blockIdsByRequest = new Map<string, number[]>();
  /** How many leading blocks of each request have been offered to the prefix cache already. */
  private readonly numCachedBlocksByRequest = new Map<string, number>();
  private numQueryTokens = 0;
  private numHitTokens = 0;

  constructor(options: KvCacheManagerOptions) {
    assert(Number.isInteger(options.blockSize) && options.blockSize > 0, `blockSize must be a positive integer, got ${options.blockSize}`);
    this.numBlocks = options.numBlocks;
    this.blockSize = options.blockSize;
    this.enablePrefixCaching = options.enablePrefixCaching;
    this.pool = new BlockPool(options.numBlocks);
  }

  /** Longest run of full cached blocks matching the start of req's tokens. Leaves at least one token
   *  uncovered, so the model still runs on the last token and produces logits. Reads nothing but the cache:
   *  stats are counted when allocateSlots admits the request, so a retried lookup is not counted twice. */
  getComputedBlocks(req: KvSequence): { blockIds: number[]; numTokens: number } {
    if (!this.enablePrefixCaching || req.numTokens <= 1) return { blockIds: [], numTokens: 0 };
    const maxBlocks = Math.floor((req.numTokens - 1) / this.blockSize);
    const blockIds: number[] = [];
    for (let b = 0; b < maxBlocks; b++) {
      ensureBlockHashes(req, b + 1, this.blockSize); // hash lazily: stop paying at the first miss
      const hit = this.pool.lookup(req.blockHashes[b]!);
      if (hit === undefined) break;
      blockIds.push(hit);
    }
    return { blockIds, numTokens: blockIds.length * this.blockSize };
  }

  /** Ensures req has blocks for numComputedTokens + (computed tokens) + numNewTokens tokens. `computedBlocks`
   *  (from getComputedBlocks, only for a request holding no blocks yet) cover the next
   *  computedBlocks.length * blockSize tokens; they are taken first and their ref counts bumped. Returns the
   *  freshly allocated block ids ([] when none were needed), or null when there is no room, and then
   *  changes nothing. */
  allocateSlots(req: KvSequence, numNewTokens: number, computedBlocks: readonly number[] = []): number[] | null {
    assert(Number.isInteger(numNewTokens) && numNewTokens >= 0, `numNewTokens must be a non-negative integer, got ${numNewTokens}`);
    const blockIds = this.blockIdsByRequest.get(req.requestId);
    assert(
      computedBlocks.length === 0 || (blockIds === undefined && req.numComputedTokens === 0),
      `computed blocks can only seed request ${req.requestId} before it holds any blocks`,
    );
    // 1. How many blocks the request needs in all, and how many of them must come off the free queue.
    const numTotalTokens = req.numComputedTokens + computedBlocks.length * this.blockSize + numNewTokens;
    const numRequired = Math.ceil(numTotalTokens / this.blockSize);
    const numHeld = (blockIds?.length ?? 0) + computedBlocks.length;
    const numNewBlocks = Math.max(0, numRequired - numHeld);
    let numEvictableHits = 0;
    for (const b of computedBlocks) if (this.pool.refCount(b) === 0) numEvictableHits++;
    if (numNewBlocks + numEvictableHits > this.pool.numFreeBlocks) return null;
    // 2. Take the cache hits, then fresh blocks.
    this.pool.touch(computedBlocks);
    const fresh = this.pool.allocate(numNewBlocks);
    const table = blockIds ?? [];
    if (blockIds === undefined) {
      this.blockIdsByRequest.set(req.requestId, table);
      this.numCachedBlocksByRequest.set(req.requestId, computedBlocks.length);
      this.recordLookup(req, computedBlocks.length * this.blockSize);
    }
    table.push(...computedBlocks, ...fresh);
    return fresh;
  }

  /** Registers req's full blocks up to numComputedTokens in the prefix cache. Call after each step. */
  cacheFullBlocks(req: KvSequence): void {
    if (!this.enablePrefixCaching) return;
    const table = this.blockIdsByRequest.get(req.requestId);
    if (table === undefined) return;
    const numFull = Math.min(Math.floor(req.numComputedTokens / this.blockSize), table.length);
    const numDone = this.numCachedBlocksByRequest.get(req.requestId) ?? 0;
    if (numFull <= numDone) return;
    ensureBlockHashes(req, numFull, this.blockSize);
    for (let b = numDone; b < numFull; b++) {
      const blockId = table[b]!;
      if (this.pool.hashOf(blockId) === null) this.pool.registerHash(blockId, req.blockHashes[b]!);
    }
    this.numCachedBlocksByRequest.set(req.requestId, numFull);
  }

  /** Drops req's references (tail first, so its deepest blocks are evicted first). Freed blocks keep
   *  their hashes until reused. Safe to call for a request that holds nothing. */
  free(req: KvSequence): void {
    const table = this.blockIdsByRequest.get(req.requestId);
    if (table === undefined) return;
    this.pool.release(table.slice().reverse());
    this.blockIdsByRequest.delete(req.requestId);
    this.numCachedBlocksByRequest.delete(req.requestId);
  }

  blockIds(requestId: string): readonly number[] {
    return this.blockIdsByRequest.get(requestId) ?? [];
  }

  /** Free or evictable blocks. */
  get numFreeBlocks(): number {
    return this.pool.numFreeBlocks;
  }

  /** Blocks referenced by live requests. */
  get numUsedBlocks(): number {
    return this.numBlocks - this.pool.numFreeBlocks;
  }

  /** Fraction of blocks referenced by live requests, 0..1. */
  get usage(): number {
    return this.numUsedBlocks / this.numBlocks;
  }

  /** Prompt tokens looked up in the prefix cache (first admission of each request only). */
  get prefixCacheQueries(): number {
    return this.numQueryTokens;
  }

  /** Of those, tokens served from the cache. */
  get prefixCacheHits(): number {
    return this.numHitTokens;
  }

  /** Zeroes the prefix-cache query and hit counts (the engine's warmup requests do not count). */
  resetStats(): void {
    this.numQueryTokens = 0;
    this.numHitTokens = 0;
  }

  /** Forgets all cached prefixes; blocks in use stay allocated but are no longer shared with newcomers. */
  resetPrefixCache(): void {
    this.pool.resetHashes();
    // Every held block is unhashed now: let cacheFullBlocks offer them again.
    for (const requestId of this.numCachedBlocksByRequest.keys()) this.numCachedBlocksByRequest.set(requestId, 0);
  }

  private recordLookup(req: KvSequence, numHitTokens: number): void {
    // A preempted request re-looks-up its own blocks: counting it would inflate the hit rate clients see.
    if (!this.enablePrefixCaching || req.numPreemptions > 0) return;
    this.numQueryTokens += req.numTokens;
    this.numHitTokens += numHitTokens;
  }
}
