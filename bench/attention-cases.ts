// Decode attention cases for bench/kernels.ts, read from the paged KV cache (src/kernels/attention.ts):
// - long context: one sequence, one query token at the end of a 1k..16k context. Attention decode is a
//   stream over the cached keys and values, so GB/s counts the K and V bytes of the context and the
//   streaming-read baseline reads the same bytes.
// - short-context batch: 16 sequences of 20..40 tokens with the bench model's layer shape (one layer's
//   attention of a batch-16 decode step), where per-workgroup overhead, not bandwidth, decides.
// Each case runs on the kernel's default path and, where that differs, on the portable path
// (`[portable]`), so one run gives before/after numbers; the long-context cases also run on an f16
// KV cache (`[f16 kv]`, `--kv-cache-dtype f16`: half the bytes, unpacked in the kernel).
import { AttentionKernel, type AttentionDecodePath } from '../src/kernels/attention.js';
import type { GpuDevice } from '../src/gpu/index.js';
import type { KvCacheDtype } from '../src/common/types.js';
import { f32ToF16Bits } from '../src/common/half.js';
import { randomHost } from './common.js';
import type { KernelCase } from './kernel-case.js';

export interface AttentionShape {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  blockSize: number;
}

/** A Llama-3-8B-like layer: 32 query heads sharing 8 KV heads of 128 dims, 64-token KV blocks. */
export const DEFAULT_ATTENTION_SHAPE: AttentionShape = { numHeads: 32, numKvHeads: 8, headDim: 128, blockSize: 64 };
/** The 76M bench model's layer (bench/bench-model.ts): 12 query heads over 4 KV heads of 64 dims. */
export const BENCH_MODEL_ATTENTION_SHAPE: AttentionShape = { numHeads: 12, numKvHeads: 4, headDim: 64, blockSize: 64 };
/** Contexts of a batch-16 decode step a few dozen tokens into generation. */
const SHORT_BATCH_CONTEXTS = Array.from({ length: 16 }, (_, i) => 20 + ((i * 7) % 21));

const PATHS: readonly AttentionDecodePath[] = ['auto', 'portable'];

/** Long-context single-sequence cases for `shape`, then the batch-16 short-context cases, each on both paths. */
export function attentionDecodeCases(contextLens: readonly number[], shape: AttentionShape = DEFAULT_ATTENTION_SHAPE): KernelCase[] {
  const long = contextLens.flatMap((contextLen) => {
    const label = contextLen % 1024 === 0 ? `${contextLen / 1024}k` : String(contextLen);
    const name = `decode attention ${label} ctx ${shapeLabel(shape)}`;
    return [...PATHS.map((path) => decodeBatchCase(name, [contextLen], shape, path)), decodeBatchCase(name, [contextLen], shape, 'auto', 'f16')];
  });
  const short = PATHS.map((path) =>
    decodeBatchCase(`decode attention 16 seqs x 20-40 ctx ${shapeLabel(BENCH_MODEL_ATTENTION_SHAPE)}`, SHORT_BATCH_CONTEXTS, BENCH_MODEL_ATTENTION_SHAPE, path),
  );
  return [...long, ...short];
}

function shapeLabel(s: AttentionShape): string {
  return `${s.numHeads}q/${s.numKvHeads}kv x ${s.headDim}, block ${s.blockSize}`;
}

/** One decode token per sequence at the end of its context; sequences' blocks interleaved in reverse. */
function decodeBatchCase(
  baseName: string,
  contextLens: readonly number[],
  shape: AttentionShape,
  path: AttentionDecodePath,
  kvCacheDtype: KvCacheDtype = 'f32',
): KernelCase {
  const { numHeads, numKvHeads, headDim, blockSize } = shape;
  const numSeqs = contextLens.length;
  const tags = [...(path === 'auto' ? [] : [path]), ...(kvCacheDtype === 'f32' ? [] : [`${kvCacheDtype} kv`])];
  const elemBytes = kvCacheDtype === 'f16' ? 2 : 4;
  /** Random K/V contents in the cache's element type. */
  const cacheData = (elems: number, seed: number) => {
    const values = randomHost(elems, seed);
    return kvCacheDtype === 'f16' ? new Uint32Array(f32ToF16Bits(values).buffer) : values;
  };
  return {
    group: 'attention',
    name: tags.length ? `${baseName} [${tags.join(', ')}]` : baseName,
    async setup(gpu: GpuDevice) {
      const kernel = await AttentionKernel.create(gpu, { decodePath: path, kvCacheDtype });
      const blocksPerSeq = contextLens.map((n) => Math.ceil(n / blockSize));
      const maxBlocksPerSeq = Math.max(...blocksPerSeq);
      const numBlocks = blocksPerSeq.reduce((a, b) => a + b, 0);
      const kvBytes = numBlocks * blockSize * numKvHeads * headDim * elemBytes;
      if (kvBytes > gpu.limits.maxStorageBufferBindingSize) {
        throw new Error(`attention bench: a ${kvBytes}-byte K cache exceeds one storage binding; use shorter contexts`);
      }
      // Blocks handed out in reverse order, so the block table is really followed rather than read linearly.
      const table = new Uint32Array(numSeqs * maxBlocksPerSeq);
      let next = numBlocks;
      for (let s = 0; s < numSeqs; s++) for (let b = 0; b < blocksPerSeq[s]!; b++) table[s * maxBlocksPerSeq + b] = --next;
      const qWidth = numHeads * headDim;
      const buffers = {
        qkv: gpu.upload('bench.q', randomHost(numSeqs * qWidth, 11)),
        kCache: gpu.upload('bench.k-cache', cacheData(kvBytes / elemBytes, 12)),
        vCache: gpu.upload('bench.v-cache', cacheData(kvBytes / elemBytes, 13)),
        blockTables: gpu.upload('bench.block-table', table),
        tokenSeq: gpu.upload(
          'bench.token-seq',
          Uint32Array.from(contextLens, (_, s) => s),
        ),
        tokenPos: gpu.upload(
          'bench.token-pos',
          Uint32Array.from(contextLens, (n) => n - 1),
        ),
        out: gpu.createBuffer('bench.out', numSeqs * qWidth * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC),
      };
      const totalContext = contextLens.reduce((a, b) => a + b, 0);
      const contextBytes = totalContext * numKvHeads * headDim * elemBytes;
      return {
        record: (pass, uniforms) =>
          kernel.attend(pass, uniforms, {
            ...buffers,
            rowStride: qWidth,
            qOffset: 0,
            maxBlocksPerSeq,
            numTokens: numSeqs,
            numSeqs,
            numHeads,
            numKvHeads,
            headDim,
            blockSize,
            scale: 1 / Math.sqrt(headDim),
            slidingWindow: 0,
            maxContextLen: Math.max(...contextLens),
          }),
        bytes: 2 * contextBytes + numSeqs * qWidth * 4,
        // q.k and p.v: two multiply-adds per (head, key, dim).
        flops: 4 * numHeads * totalContext * headDim,
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
