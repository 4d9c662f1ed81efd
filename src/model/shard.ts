// One tensor-parallel shard: its device, kernels, weights, KV cache and activation buffers, and the
// recording of the forward pass into compute passes. The runner drives shards; a shard never talks
// to another shard.
import { UniformArena, type GpuDevice } from '../gpu/index.js';
import { ActivationKernel } from '../kernels/activation.js';
import { AttentionKernel } from '../kernels/attention.js';
import { EmbeddingKernel } from '../kernels/embedding.js';
import { KvCacheKernel } from '../kernels/kv-cache.js';
import { MatmulKernels } from '../kernels/matmul.js';
import { RmsNormKernel } from '../kernels/rmsnorm.js';
import { RotaryKernel } from '../kernels/rotary.js';
import { destroyWeight } from '../kernels/weight.js';
import type { ModelConfig } from './config.js';
import type { ShardLayout } from './sharding.js';
import type { ShardWeights } from './shard-weights.js';

export interface ShardBuffers {
  tokenIds: GPUBuffer;       // u32 [maxTokens] (ids remapped into this shard's vocab rows when tp > 1)
  positions: GPUBuffer;      // u32 [maxTokens]
  tokenSeq: GPUBuffer;       // u32 [maxTokens]
  slotMapping: GPUBuffer;    // u32 [maxTokens]
  blockTables: GPUBuffer;    // u32 [maxSeqs * maxBlocksPerSeq]
  sampleRows: GPUBuffer;     // u32 [maxSeqs]
  invFreq: GPUBuffer;        // f32 [rotaryDim / 2]
  residual: GPUBuffer;       // f32 [maxTokens, hidden]
  normed: GPUBuffer;         // f32 [maxTokens, hidden]
  qkv: GPUBuffer;            // f32 [maxTokens, (heads + 2 kvHeads) * headDim]
  attnOut: GPUBuffer;        // f32 [maxTokens, heads * headDim]
  proj: GPUBuffer;           // f32 [maxTokens, hidden]: o_proj / down_proj output (partial sums when tp > 1)
  gateUp: GPUBuffer;         // f32 [maxTokens, 2 * intermediate]
  act: GPUBuffer;            // f32 [maxTokens, intermediate]
  lastHidden: GPUBuffer;     // f32 [maxSeqs, hidden]
  logits: GPUBuffer;         // f32 [maxSeqs, shard vocab]
}

export interface ShardKernels {
  matmul: MatmulKernels;
  norm: RmsNormKernel;
  act: ActivationKernel;
  embed: EmbeddingKernel;
  rotary: RotaryKernel;
  kv: KvCacheKernel;
  attn: AttentionKernel;
}

/** What the runner hands every shard for one step (shared host metadata, already uploaded). */
export interface StepShape {
  numTokens: number;
  numSeqs: number;
  numSampled: number;
  maxContextLen: number;
  maxBlocksPerSeq: number;
}

export class Shard {
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  readonly uniforms: UniformArena;
  readonly kCaches: GPUBuffer[];
  readonly vCaches: GPUBuffer[];

  constructor(
    readonly gpu: GpuDevice,
    readonly layout: ShardLayout,
    readonly config: ModelConfig,
    readonly weights: ShardWeights,
    readonly kernels: ShardKernels,
    readonly buffers: ShardBuffers,
    readonly blockSize: number,
    readonly numBlocks: number,
    readonly attentionScaling: number,
  ) {
    this.uniforms = new UniformArena(gpu.device);
    const bytesPerLayer = numBlocks * blockSize * layout.numKvHeads * config.headDim * 4;
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    this.kCaches = Array.from({ length: config.numLayers }, (_, l) => gpu.createBuffer(`k_cache.${l}`, bytesPerLayer, usage));
    this.vCaches = Array.from({ length: config.numLayers }, (_, l) => gpu.createBuffer(`v_cache.${l}`, bytesPerLayer, usage));
  }

  static async createKernels(gpu: GpuDevice): Promise<ShardKernels> {
    const [matmul, norm, act, embed, rotary, kv, attn] = await Promise.all([
      MatmulKernels.create(gpu),
      RmsNormKernel.create(gpu),
      ActivationKernel.create(gpu),
      EmbeddingKernel.create(gpu),
      RotaryKernel.create(gpu),
      KvCacheKernel.create(gpu),
      AttentionKernel.create(gpu),
    ]);
    return { matmul, norm, act, embed, rotary, kv, attn };
  }

  get kvCacheBytes(): number {
    return 2 * this.kCaches.reduce((n, b) => n + b.size, 0);
  }

  begin(): GPUComputePassEncoder {
    this.encoder = this.gpu.device.createCommandEncoder({ label: `${this.gpu.label}:step` });
    this.pass = this.encoder.beginComputePass({ label: `${this.gpu.label}:forward` });
    return this.pass;
  }

  /** Ends the open pass and submits it. */
  submit(): void {
    if (!this.encoder || !this.pass) return;
    this.pass.end();
    this.uniforms.flush();
    this.gpu.device.queue.submit([this.encoder.finish()]);
    this.encoder = null;
    this.pass = null;
  }

  private get p(): GPUComputePassEncoder {
    if (!this.pass) throw new Error('shard: no open pass (call begin() first)');
    return this.pass;
  }

  encodeEmbedding(s: StepShape): void {
    this.kernels.embed.gather(this.p, this.uniforms, {
      table: this.weights.embed,
      ids: this.buffers.tokenIds,
      out: this.buffers.residual,
      numTokens: s.numTokens,
    });
  }

  /** Layer `l`'s attention block; leaves this shard's (partial) o_proj output in buffers.proj. */
  encodeAttention(l: number, s: StepShape): void {
    const { config: c, layout, buffers: b, kernels: k, uniforms: u } = this;
    const w = this.weights.layers[l]!;
    const T = s.numTokens;
    const eps = c.rmsNormEps;
    if (l === 0) {
      k.norm.norm(this.p, u, { x: b.residual, weight: w.inputNorm, out: b.normed, numRows: T, dim: c.hiddenSize, eps });
    } else {
      k.norm.addNorm(this.p, u, { x: b.proj, residual: b.residual, weight: w.inputNorm, out: b.normed, numRows: T, dim: c.hiddenSize, eps });
    }
    k.matmul.matmul(this.p, u, b.normed, w.qkv, b.qkv, T, w.qkvBias ?? undefined);
    const hd = c.headDim;
    const rowStride = (layout.numHeads + 2 * layout.numKvHeads) * hd;
    const kOffset = layout.numHeads * hd;
    const vOffset = kOffset + layout.numKvHeads * hd;
    k.rotary.apply(this.p, u, {
      qkv: b.qkv, numTokens: T, rowStride, qOffset: 0, numHeads: layout.numHeads, kOffset,
      numKvHeads: layout.numKvHeads, headDim: hd, rotaryDim: c.rope.rotaryDim, positions: b.positions,
      invFreq: b.invFreq, attentionScaling: this.attentionScaling,
    });
    k.kv.write(this.p, u, {
      qkv: b.qkv, numTokens: T, rowStride, kOffset, vOffset, numKvHeads: layout.numKvHeads, headDim: hd,
      kCache: this.kCaches[l]!, vCache: this.vCaches[l]!, slotMapping: b.slotMapping,
    });
    k.attn.attend(this.p, u, {
      qkv: b.qkv, rowStride, qOffset: 0, out: b.attnOut, kCache: this.kCaches[l]!, vCache: this.vCaches[l]!,
      blockTables: b.blockTables, maxBlocksPerSeq: s.maxBlocksPerSeq, tokenSeq: b.tokenSeq, tokenPos: b.positions,
      numTokens: T, numSeqs: s.numSeqs, numHeads: layout.numHeads, numKvHeads: layout.numKvHeads, headDim: hd,
      blockSize: this.blockSize, scale: 1 / Math.sqrt(hd), slidingWindow: c.slidingWindow ?? 0, maxContextLen: s.maxContextLen,
    });
    k.matmul.matmul(this.p, u, b.attnOut, w.o, b.proj, T, w.oBias ?? undefined);
  }

  /** Layer `l`'s MLP block: residual += attention output, then (partial) down_proj output in buffers.proj. */
  encodeMlp(l: number, s: StepShape): void {
    const { config: c, layout, buffers: b, kernels: k, uniforms: u } = this;
    const w = this.weights.layers[l]!;
    const T = s.numTokens;
    k.norm.addNorm(this.p, u, { x: b.proj, residual: b.residual, weight: w.postNorm, out: b.normed, numRows: T, dim: c.hiddenSize, eps: c.rmsNormEps });
    k.matmul.matmul(this.p, u, b.normed, w.gateUp, b.gateUp, T);
    k.act.siluAndMul(this.p, u, { gateUp: b.gateUp, out: b.act, numRows: T, intermediate: layout.intermediate });
    k.matmul.matmul(this.p, u, b.act, w.down, b.proj, T);
  }

  /** Final norm over every token, then lm_head on the rows that sample. */
  encodeLogits(s: StepShape): void {
    const { config: c, buffers: b, kernels: k, uniforms: u } = this;
    const T = s.numTokens;
    k.norm.addNorm(this.p, u, { x: b.proj, residual: b.residual, weight: this.weights.norm, out: b.normed, numRows: T, dim: c.hiddenSize, eps: c.rmsNormEps });
    if (s.numSampled === 0) return;
    k.embed.gatherRows(this.p, u, { src: b.normed, rows: b.sampleRows, out: b.lastHidden, numRows: s.numSampled, dim: c.hiddenSize });
    k.matmul.matmul(this.p, u, b.lastHidden, this.weights.lmHead, b.logits, s.numSampled);
  }

  destroy(): void {
    for (const buf of [...this.kCaches, ...this.vCaches, ...Object.values(this.buffers)]) buf.destroy();
    const w = this.weights;
    destroyWeight(w.embed);
    if (w.lmHead.chunks !== w.embed.chunks) destroyWeight(w.lmHead);
    w.norm.destroy();
    for (const l of w.layers) {
      l.inputNorm.destroy();
      l.postNorm.destroy();
      l.qkvBias?.destroy();
      l.oBias?.destroy();
      for (const m of [l.qkv, l.o, l.gateUp, l.down]) destroyWeight(m);
    }
    this.kernels.attn.destroy();
    this.uniforms.destroy();
  }
}
