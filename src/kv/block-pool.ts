// The physical KV blocks: reference counts, a free queue in LRU order, and the prefix-cache index
// (hash -> block). A block whose count drops to 0 goes to the back of the free queue but keeps its
// hash, so a later request with the same prefix can still reuse it until it is handed out again.
import assert from 'node:assert/strict';
import type { BlockHash } from './block-hash.js';

export class BlockPool {
  readonly numBlocks: number;
  private readonly refCounts: Int32Array;
  private readonly hashByBlock: (BlockHash | null)[];
  private readonly blockByHash = new Map<BlockHash, number>();
  // Free queue: a doubly linked list over block ids with a sentinel at index numBlocks, so a cache hit
  // can pull an evictable block out of the middle in O(1). Head = least recently freed = evicted first.
  private readonly prevFree: Int32Array;
  private readonly nextFree: Int32Array;
  private readonly isFree: Uint8Array;
  private numFree = 0;

  constructor(numBlocks: number) {
    assert(Number.isInteger(numBlocks) && numBlocks > 0, `numBlocks must be a positive integer, got ${numBlocks}`);
    this.numBlocks = numBlocks;
    this.refCounts = new Int32Array(numBlocks);
    this.hashByBlock = new Array<BlockHash | null>(numBlocks).fill(null);
    this.prevFree = new Int32Array(numBlocks + 1);
    this.nextFree = new Int32Array(numBlocks + 1);
    this.isFree = new Uint8Array(numBlocks);
    const sentinel = numBlocks;
    this.prevFree[sentinel] = sentinel;
    this.nextFree[sentinel] = sentinel;
    for (let b = 0; b < numBlocks; b++) this.pushFree(b);
  }

  /** Free or evictable (cached but unreferenced) blocks. */
  get numFreeBlocks(): number {
    return this.numFree;
  }

  refCount(blockId: number): number {
    return this.refCounts[blockId]!;
  }

  hashOf(blockId: number): BlockHash | null {
    return this.hashByBlock[blockId]!;
  }

  /** The cached block holding this hash, referenced or evictable. */
  lookup(hash: BlockHash): number | undefined {
    return this.blockByHash.get(hash);
  }

  /** Takes n blocks from the head of the free queue (evicting their cached hashes), each with ref count 1. */
  allocate(n: number): number[] {
    assert(n <= this.numFree, `allocate(${n}) with only ${this.numFree} free blocks: check numFreeBlocks first`);
    const sentinel = this.numBlocks;
    const blockIds: number[] = [];
    for (let i = 0; i < n; i++) {
      const b = this.nextFree[sentinel]!;
      this.unlinkFree(b);
      this.evictHash(b);
      this.refCounts[b] = 1;
      blockIds.push(b);
    }
    return blockIds;
  }

  /** One more reference to each (cached) block; an evictable one leaves the free queue. */
  touch(blockIds: readonly number[]): void {
    for (const b of blockIds) {
      if (this.refCounts[b] === 0) this.unlinkFree(b);
      this.refCounts[b]!++;
    }
  }

  /** One reference less on each block; blocks reaching 0 join the back of the free queue in the given
   *  order (so pass a sequence's blocks tail first: its deepest blocks are the least likely to be shared). */
  release(blockIds: readonly number[]): void {
    for (const b of blockIds) {
      assert(this.refCounts[b]! > 0, `block ${b} released more often than it was referenced`);
      if (--this.refCounts[b]! === 0) this.pushFree(b);
    }
  }

  /** Makes a full, computed block findable by hash. Returns false (and leaves the block unhashed) when
   *  another block already holds the same content, e.g. two requests computed the same prefix at once. */
  registerHash(blockId: number, hash: BlockHash): boolean {
    assert(this.refCounts[blockId]! > 0, `block ${blockId} must be referenced to be cached`);
    assert(this.hashByBlock[blockId] === null, `block ${blockId} is already cached`);
    if (this.blockByHash.has(hash)) return false;
    this.hashByBlock[blockId] = hash;
    this.blockByHash.set(hash, blockId);
    return true;
  }

  /** Forgets every hash (referenced blocks stay allocated, just unshared from now on). */
  resetHashes(): void {
    this.blockByHash.clear();
    this.hashByBlock.fill(null);
  }

  private evictHash(b: number): void {
    const hash = this.hashByBlock[b];
    if (hash === null || hash === undefined) return;
    this.blockByHash.delete(hash);
    this.hashByBlock[b] = null;
  }

  private pushFree(b: number): void {
    const sentinel = this.numBlocks;
    const last = this.prevFree[sentinel]!;
    this.nextFree[last] = b;
    this.prevFree[b] = last;
    this.nextFree[b] = sentinel;
    this.prevFree[sentinel] = b;
    this.isFree[b] = 1;
    this.numFree++;
  }

  private unlinkFree(b: number): void {
    assert(this.isFree[b] === 1, `block ${b} is not in the free queue`);
    const prev = this.prevFree[b]!,
      next = this.nextFree[b]!;
    this.nextFree[prev] = next;
    this.prevFree[next] = prev;
    this.isFree[b] = 0;
    this.numFree--;
  }
}
