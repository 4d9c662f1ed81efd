// Decode attention cases for bench/kernels.ts: one sequence, one query token at the end of a long
// context, read from the paged KV cache (src/kernels/attention.ts). Attention decode is a stream
// over the cached keys and values, so GB/s counts the K and V bytes of the context and the
// streaming-read baseline reads the same bytes.
import { AttentionKernel } from '../src/kernels/attention.js';
import { randomHost } from './common.js';
import type { KernelCase } from './kernels.js';

export interface AttentionShape {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  blockSize: number;
}

/** A Llama-3-8B-like layer: 32 query heads sharing 8 KV heads of 128 dims, 64-token KV blocks. */
export const DEFAULT_ATTENTION_SHAPE: AttentionShape = { numHeads: 32, numKvHeads: 8, headDim: 128, blockSize: 64 };

export function attentionDecodeCases(contextLens: readonly number[], shape: AttentionShape = DEFAULT_ATTENTION_SHAPE): KernelCase[] {
  return contextLens.map((contextLen) => attentionDecodeCase(contextLen, shape));
}

function attentionDecodeCase(contextLen: number, shape: AttentionShape): KernelCase {
  const { numHeads, numKvHeads, headDim, blockSize } = shape;
  const label = contextLen % 1024 === 0 ? `${contextLen / 1024}k` : String(contextLen);
  return {
    group: 'attention',
    name: `decode attention ${label} ctx ${numHeads}q/${numKvHeads}kv x ${headDim}, block ${blockSize}`,
    async setup(gpu) {
      const kernel = await AttentionKernel.create(gpu);
      const numBlocks = Math.ceil(contextLen / blockSize);
      const kvBytes = numBlocks * blockSize * numKvHeads * headDim * 4;
      if (kvBytes > gpu.limits.maxStorageBufferBindingSize) {
        throw new Error(`attention bench: a ${contextLen}-token K cache (${kvBytes} bytes) exceeds one storage binding; use a shorter context`);
      }
      // Blocks in reverse order, so the block table is really followed rather than read linearly.
      const table = new Uint32Array(numBlocks).map((_, i) => numBlocks - 1 - i);
      const qWidth = numHeads * headDim;
      const buffers = {
        qkv: gpu.upload('bench.q', randomHost(qWidth, 11)),
        kCache: gpu.upload('bench.k-cache', randomHost(kvBytes / 4, 12)),
        vCache: gpu.upload('bench.v-cache', randomHost(kvBytes / 4, 13)),
        blockTables: gpu.upload('bench.block-table', table),
        tokenSeq: gpu.upload('bench.token-seq', new Uint32Array([0])),
        tokenPos: gpu.upload('bench.token-pos', new Uint32Array([contextLen - 1])),
        out: gpu.createBuffer('bench.out', qWidth * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC),
      };
      const contextBytes = contextLen * numKvHeads * headDim * 4;
      return {
        record: (pass, uniforms) =>
          kernel.attend(pass, uniforms, {
            ...buffers, rowStride: qWidth, qOffset: 0, maxBlocksPerSeq: numBlocks,
            numTokens: 1, numSeqs: 1, numHeads, numKvHeads, headDim, blockSize,
            scale: 1 / Math.sqrt(headDim), slidingWindow: 0, maxContextLen: contextLen,
          }),
        bytes: 2 * contextBytes + qWidth * 4,
        // q.k and p.v: two multiply-adds per (head, key, dim).
        flops: 4 * numHeads * contextLen * headDim,
        streamed: [
          { buffer: buffers.kCache, bytes: contextBytes },
          { buffer: buffers.vCache, bytes: contextBytes },
        ],
        destroy: () => {
          kernel.destroy();
          for (const b of Object.values(buffers)) b.destroy();
        },
      };
    },
  };
}
