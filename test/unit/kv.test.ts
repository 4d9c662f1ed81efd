// KV block pool and prefix cache, no GPU: ref counts, the LRU free queue, chained block hashes.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BlockPool } from '../../src/kv/block-pool.js';
import { hashBlockTokens } from '../../src/kv/block-hash.js';
import { KvCacheManager } from '../../src/kv/kv-manager.js';
import { Request } from '../../src/scheduler/request.js';
import { DEFAULT_SAMPLING } from '../../src/sampling/params.js';

let nextId = 0;
function makeRequest(promptTokenIds: number[]): Request {
  return new Request({ requestId: `r${nextId++}`, promptTokenIds, sampling: { ...DEFAULT_SAMPLING }, maxTokens: 16, stopTokenIds: [] });
}

const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i);

/** Admits req the way the scheduler does: look up the cache, allocate, mark the prompt computed, cache. */
function prefill(kv: KvCacheManager, req: Request): { hitTokens: number; fresh: number[] } {
  const computed = kv.getComputedBlocks(req);
  const fresh = kv.allocateSlots(req, req.numTokens - computed.numTokens, computed.blockIds);
  assert.ok(fresh, `no room for ${req.requestId}`);
  req.numComputedTokens = req.numTokens;
  kv.cacheFullBlocks(req);
  return { hitTokens: computed.numTokens, fresh };
}

test('block pool: ref counts, free count and release order', () => {
  const pool = new BlockPool(5);
  assert.is(pool.numFreeBlocks, 5);
  const a = pool.allocate(3);
  assert.equal(a, [0, 1, 2]);
  assert.is(pool.numFreeBlocks, 2);
  pool.touch([1]);
  assert.is(pool.refCount(1), 2);
  pool.release([2, 1, 0]);
  assert.is(pool.refCount(1), 1);
  assert.is(pool.numFreeBlocks, 4);
  // Free queue order: never-used 3, 4, then 2 and 0 in release order.
  assert.equal(pool.allocate(4), [3, 4, 2, 0]);
  assert.throws(() => pool.allocate(1), /free blocks/);
  assert.throws(() => pool.release([3, 3]), /released more often/);
});

test('allocateSlots grows a block table and returns null (allocating nothing) when out of room', () => {
  const kv = new KvCacheManager({ numBlocks: 4, blockSize: 4, enablePrefixCaching: false });
  const a = makeRequest(range(6)),
    b = makeRequest(range(9, 100));
  assert.equal(kv.allocateSlots(a, 6), [0, 1]);
  a.numComputedTokens = 6;
  assert.equal(kv.allocateSlots(a, 1), [], 'token 7 still fits in block 1');
  a.numComputedTokens = 8;
  assert.is(kv.allocateSlots(b, 9), null, 'b needs 3 blocks, only 2 free');
  assert.is(kv.numFreeBlocks, 2);
  assert.equal(kv.blockIds(b.requestId), []);
  assert.equal(kv.allocateSlots(a, 1), [2], 'token 9 opens block 2');
  assert.equal(kv.blockIds(a.requestId), [0, 1, 2]);
  assert.is(kv.numUsedBlocks, 3);
  assert.is(kv.usage, 0.75);
  kv.free(a);
  kv.free(a); // idempotent
  assert.is(kv.numFreeBlocks, 4);
  assert.is(kv.usage, 0);
});

test('hash chain: the same block tokens after a different prefix hash differently', () => {
  const h0 = hashBlockTokens(null, [1, 2, 3, 4]);
  assert.is(hashBlockTokens(null, [1, 2, 3, 4]), h0, 'deterministic');
  assert.is.not(hashBlockTokens(h0, [5, 6, 7, 8]), hashBlockTokens(hashBlockTokens(null, [9, 2, 3, 4]), [5, 6, 7, 8]));
  assert.is.not(hashBlockTokens(null, [1, 2, 3, 4]), hashBlockTokens(null, [1, 2, 3, 5]));
  // Through the manager: a second request sharing only block 1's tokens gets no hit at all.
  const kv = new KvCacheManager({ numBlocks: 8, blockSize: 4, enablePrefixCaching: true });
  const a = makeRequest([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  prefill(kv, a);
  const b = makeRequest([0, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.is(kv.getComputedBlocks(b).numTokens, 0);
  const c = makeRequest([1, 2, 3, 4, 5, 6, 7, 0, 9]);
  assert.is(kv.getComputedBlocks(c).numTokens, 4, 'only the first block matches');
  assert.equal(kv.getComputedBlocks(c).blockIds, [kv.blockIds(a.requestId)[0]]);
  kv.free(a);
  assert.is(kv.numFreeBlocks, 8);
});

test('partial blocks are never cached; a hit always leaves at least one token to compute', () => {
  const kv = new KvCacheManager({ numBlocks: 16, blockSize: 4, enablePrefixCaching: true });
  const a = makeRequest(range(10)); // blocks [0..3] [4..7] full, [8, 9] partial
  prefill(kv, a);
  const longer = makeRequest(range(12));
  assert.is(kv.getComputedBlocks(longer).numTokens, 8, 'the partial third block of a is not reusable');
  const exact = makeRequest(range(8)); // exactly two full cached blocks
  const hit = kv.getComputedBlocks(exact);
  assert.is(hit.numTokens, 4, 'the last block is recomputed so the model sees the last token');
  const { fresh } = prefill(kv, exact);
  assert.is(fresh.length, 1);
  assert.is(kv.blockIds(exact.requestId)[0], kv.blockIds(a.requestId)[0], 'block 0 is shared');
  // The shared block now has two references: freeing one request keeps it in use.
  kv.free(a);
  assert.is(kv.numUsedBlocks, 2);
  kv.free(exact);
  assert.is(kv.numFreeBlocks, 16);
  const one = makeRequest([0]);
  assert.is(kv.getComputedBlocks(one).numTokens, 0);
});

test('freed blocks keep their hash and can be hit later; reset forgets them', () => {
  const kv = new KvCacheManager({ numBlocks: 8, blockSize: 4, enablePrefixCaching: true });
  const a = makeRequest(range(13, 50));
  prefill(kv, a);
  const aBlocks = kv.blockIds(a.requestId).slice();
  kv.free(a);
  assert.is(kv.numFreeBlocks, 8);
  const b = makeRequest(range(13, 50));
  const { hitTokens } = prefill(kv, b);
  assert.is(hitTokens, 12);
  assert.equal(kv.blockIds(b.requestId).slice(0, 3), aBlocks.slice(0, 3));
  assert.is(kv.numFreeBlocks, 4, 'the evictable hit blocks left the free queue');
  assert.is(kv.prefixCacheQueries, 26);
  assert.is(kv.prefixCacheHits, 12);
  kv.free(b);
  kv.resetPrefixCache();
  const c = makeRequest(range(13, 50));
  assert.is(kv.getComputedBlocks(c).numTokens, 0);
  assert.is(kv.numFreeBlocks, 8);
});

test('eviction is LRU: the blocks freed longest ago are reused first', () => {
  const kv = new KvCacheManager({ numBlocks: 6, blockSize: 2, enablePrefixCaching: true });
  const old = makeRequest([1, 2, 3, 4, 0]),
    recent = makeRequest([5, 6, 7, 8, 0]);
  prefill(kv, old); // blocks 0,1,2
  prefill(kv, recent); // blocks 3,4,5
  kv.free(old);
  kv.free(recent);
  // 2 fresh blocks needed: they come from old's blocks (its tail first), so recent's prefix survives.
  const filler = makeRequest([9, 9, 9]);
  prefill(kv, filler);
  assert.equal(kv.blockIds(filler.requestId), [2, 1]);
  assert.is(kv.getComputedBlocks(makeRequest([5, 6, 7, 8, 0])).numTokens, 4, 'recent prefix still cached');
  assert.is(kv.getComputedBlocks(makeRequest([1, 2, 3, 4, 0])).numTokens, 2, 'old block 1 was evicted: the chain stops after block 0');
  // A hit on an evictable block counts against the free blocks a new allocation may use.
  const big = makeRequest([5, 6, 7, 8, 1, 2, 3, 4, 5]); // hits 2 evictable blocks, needs 3 more: only 4 free in all
  const hit = kv.getComputedBlocks(big);
  assert.is(hit.numTokens, 4);
  assert.is(kv.allocateSlots(big, 5, hit.blockIds), null);
  assert.is(kv.numFreeBlocks, 4, 'a failed allocation touched nothing');
  kv.free(filler);
  assert.ok(kv.allocateSlots(big, 5, hit.blockIds));
  kv.free(big);
  assert.is(kv.numFreeBlocks, 6);
});

test('two requests computing the same prefix at once: only the first is cached, both free cleanly', () => {
  const kv = new KvCacheManager({ numBlocks: 8, blockSize: 4, enablePrefixCaching: true });
  const a = makeRequest(range(9)),
    b = makeRequest(range(9));
  assert.ok(kv.allocateSlots(a, 9));
  assert.ok(kv.allocateSlots(b, 9));
  a.numComputedTokens = 9;
  b.numComputedTokens = 9;
  kv.cacheFullBlocks(a);
  kv.cacheFullBlocks(b);
  const c = makeRequest(range(9));
  assert.equal(kv.getComputedBlocks(c).blockIds, kv.blockIds(a.requestId).slice(0, 2));
  kv.free(a);
  kv.free(b);
  assert.is(kv.numFreeBlocks, 8);
});

test('without prefix caching nothing is looked up or counted', () => {
  const kv = new KvCacheManager({ numBlocks: 8, blockSize: 4, enablePrefixCaching: false });
  const a = makeRequest(range(9));
  prefill(kv, a);
  kv.free(a);
  const { hitTokens } = prefill(kv, makeRequest(range(9)));
  assert.is(hitTokens, 0);
  assert.is(kv.prefixCacheQueries, 0);
});

test.run();
