// Prefix-cache keys: a full block's hash covers its own tokens chained with the hash of the block
// before it, so equal tokens after a different prefix get a different key (their KV differs).
import { createHash } from 'node:crypto';

/** sha256 (base64) of the parent hash and the block's token ids. */
export type BlockHash = string;

/** Stands in for the parent of a sequence's first block; shorter than any real hash, so it cannot collide. */
const ROOT_PARENT = 'root';

export function hashBlockTokens(parent: BlockHash | null, tokenIds: ArrayLike<number>): BlockHash {
  const tokens = Uint32Array.from(tokenIds as ArrayLike<number>);
  return createHash('sha256')
    .update(parent ?? ROOT_PARENT)
    .update(new Uint8Array(tokens.buffer, tokens.byteOffset, tokens.byteLength))
    .digest('base64');
}

/** What the KV manager needs from a request; the scheduler's Request satisfies it structurally. */
export interface KvSequence {
  readonly requestId: string;
  /** Tokens whose KV is already in the cache. */
  readonly numComputedTokens: number;
  /** Prompt + output so far. */
  readonly numTokens: number;
  readonly numPreemptions: number;
  tokenAt(position: number): number;
  /** Chained hashes of the sequence's full blocks, in order; extended lazily by the KV manager only.
   *  Tokens are only ever appended, so a hash once computed stays valid for the request's lifetime. */
  readonly blockHashes: BlockHash[];
}

/** Extends seq.blockHashes until it holds `numBlocks` hashes (each block must be full of known tokens). */
export function ensureBlockHashes(seq: KvSequence, numBlocks: number, blockSize: number): void {
  const hashes = seq.blockHashes;
  if (hashes.length >= numBlocks) return;
  if (numBlocks * blockSize > seq.numTokens) {
    throw new Error(`cannot hash block ${numBlocks - 1} of request ${seq.requestId}: it is not full (${seq.numTokens} tokens)`);
  }
  const tokens = new Array<number>(blockSize);
  for (let b = hashes.length; b < numBlocks; b++) {
    for (let i = 0; i < blockSize; i++) tokens[i] = seq.tokenAt(b * blockSize + i);
    hashes.push(hashBlockTokens(b === 0 ? null : hashes[b - 1]!, tokens));
  }
}
