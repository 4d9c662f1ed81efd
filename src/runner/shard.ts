// One tensor-parallel shard: its device, kernels, weights, KV cache and activation buffers, and the
// recording of the forward pass into compute passes. The runner drives shards through ShardHandle
// (this class in-process, RemoteShard in a worker process); a shard never talks to another shard.
import { storageUsage, tokenBucket, UniformArena, type GpuDevice } from '../gpu/index.js';
import { GpuSampler } from '../kernels/sampling.js';
import { PromptLogprobsKernel, type ScoredToken } from '../kernels/prompt-logprobs.js';
import type { LogitsProcessing, SampleResult, SamplingRow } from '../sampling/params.js';
import type { SchedulerOutput } from '../scheduler/types.js';
import { ActivationKernel } from '../kernels/activation.js';
import { AttentionKernel } from '../kernels/attention.js';
import { EmbeddingKernel } from '../kernels/embedding.js';
import { KvCacheKernel } from '../kernels/kv-cache.js';
import { MatmulKernels } from '../kernels/matmul.js';
import { RmsNormKernel } from '../kernels/rmsnorm.js';
import { RotaryKernel, type QkHeads } from '../kernels/rotary.js';
import { HadamardKernel } from '../kernels/hadamard.js';
import { PermuteKernel } from '../kernels/permute.js';
import { destroyWeight, type GpuWeight } from '../kernels/weight.js';
import type { ModelConfig } from '../checkpoint/config.js';
import { dynamicNtkRows, ropeInvFreq } from '../checkpoint/rope.js';
import { KV_QUANT_PARAM_BYTES, kvCacheDataBytesPerTokenHead } from './memory.js';
import { isQuantizedKvCache, type KvCacheDtype } from '../common/types.js';
import type { ShardLayout } from './sharding.js';
import type { ShardWeights } from './shard-weights.js';

/** The buffers the runner exchanges with a shard: all-reduce inputs/outputs and vocab-split logits. */
export type ExchangeBufferName = 'residual' | 'proj' | 'logits';

/** One step's flattened metadata, shared by every shard (plain typed arrays: it crosses processes). */
export interface StepMetadata {
  shape: StepShape;
  tokenIds: Uint32Array;
  positions: Uint32Array;
  tokenSeq: Uint32Array;
  slotMapping: Uint32Array;
  blockTables: Uint32Array;
  sampleRows: Uint32Array;
  sampledRequestIds: string[];
}

/**
 * One step as the runner hands it to every shard: the flattened metadata, and the scheduler output
 * and sampling rows it was built from. An in-process shard uploads `meta`; a worker-process shard
 * sends only what changed since the last step and its worker rebuilds `meta` and `rows`.
 */
export interface StepInput {
  output: SchedulerOutput;
  meta: StepMetadata;
  /** The sampling rows of meta.sampledRequestIds, in that order. */
  rows: readonly SamplingRow[];
}

/**
 * What the runner needs from a shard wherever it lives. Encode calls only record work; submit()
 * sends it to the GPU; read() is the only call that waits. A worker-process shard queues everything
 * up to submit() into one message, so a step costs one message per all-reduce plus the reads.
 */
export interface ShardHandle {
  readonly layout: ShardLayout;
  begin(): void;
  encodeEmbedding(s: StepShape): void;
  encodeAttention(l: number, s: StepShape): void;
  encodeMlp(l: number, s: StepShape): void;
  encodeLogits(s: StepShape): void;
  submit(): void;
  /** Uploads the step's metadata; the encode calls that follow get its `meta.shape`. */
  uploadStep(step: StepInput): void;
  /** The first `count` floats of `name` once submitted work has finished. */
  read(name: ExchangeBufferName, count: number): Promise<Float32Array>;
  write(name: ExchangeBufferName, data: Float32Array): void;
  /**
   * Samples one token per row (shard 0 only); `rows` are the uploaded step's rows (a worker-process
   * shard already holds them). `fullLogits` are the gathered rows when tp > 1; with null the shard
   * samples its own logits buffer (tp = 1, no readback).
   */
  sample(rows: readonly SamplingRow[], fullLogits: Float32Array | null, processing?: readonly (LogitsProcessing | null)[] | null): Promise<SampleResult[]>;
  /**
   * Records lm_head over the given rows of the last step's final hidden states (prompt logprobs) into
   * the logits buffer, in the open pass; at most maxNumSeqs rows (the logits buffer's capacity).
   */
  encodeScoreLogits(rows: Uint32Array): void;
  /**
   * Prompt logprobs of the rows encodeScoreLogits computed (shard 0 only): row r against targets[r],
   * with numTop alternatives. `fullLogits` are the gathered rows when tp > 1, as in sample().
   */
  scorePrompt(targets: Uint32Array, numTop: number, fullLogits: Float32Array | null): Promise<ScoredToken[]>;
  /** Throws the first GPU error (or worker failure) seen since the last check. */
  throwIfFailed(): void;
  destroy(): void;
}

export interface ShardBuffers {
  tokenIds: GPUBuffer; // u32 [maxTokens] (ids remapped into this shard's vocab rows when tp > 1)
  positions: GPUBuffer; // u32 [maxTokens]
  tokenSeq: GPUBuffer; // u32 [maxTokens]
  slotMapping: GPUBuffer; // u32 [maxTokens]
  blockTables: GPUBuffer; // u32 [maxSeqs * maxBlocksPerSeq]
  sampleRows: GPUBuffer; // u32 [maxSeqs]
  invFreq: GPUBuffer; // f32 [rotaryDim / 2]; dynamic NTK: [maxSeqs, rotaryDim / 2], one row per sequence of the step
  residual: GPUBuffer; // f32 [maxTokens, hidden]
  normed: GPUBuffer; // f32 [maxTokens, hidden]
  qkv: GPUBuffer; // f32 [maxTokens, (heads + 2 kvHeads) * headDim]
  attnOut: GPUBuffer; // f32 [maxTokens, heads * headDim]
  proj: GPUBuffer; // f32 [maxTokens, hidden]: o_proj / down_proj output (partial sums when tp > 1)
  gateUp: GPUBuffer; // f32 [maxTokens, 2 * intermediate]
  act: GPUBuffer; // f32 [maxTokens, intermediate]
  /** Activation-ordered 4-bit weights (GPTQ desc_act): a matmul's input gathered by the weight's inputPerm; null otherwise. */
  permuted: GPUBuffer | null; // f32 [maxTokens, max(hidden, heads * headDim, intermediate)]
  lastHidden: GPUBuffer; // f32 [maxSeqs, hidden]
  logits: GPUBuffer; // f32 [maxSeqs, shard vocab]
}

export interface ShardKernels {
  matmul: MatmulKernels;
  norm: RmsNormKernel;
  act: ActivationKernel;
  embed: EmbeddingKernel;
  rotary: RotaryKernel;
  /** Quantized KV caches only: rotates q and k after RoPE so that k quantizes with less error; null otherwise. */
  hadamard: HadamardKernel | null;
  /** 4-bit models: gathers a matmul's input for activation-ordered weights; null otherwise. */
  permute: PermuteKernel | null;
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

/**
 * Calibration (the quantize command): buffers the forward copies layer `layer`'s linear inputs into,
 * f32 [numTokens, width] each: what q/k/v, o_proj, gate/up and down_proj read.
 */
export interface LinearInputCapture {
  layer: number;
  qkv: GPUBuffer;
  o: GPUBuffer;
  gateUp: GPUBuffer;
  down: GPUBuffer;
}

export class Shard implements ShardHandle {
  /** Set by runner/calibration.ts around a calibration prefill; null in serving. */
  capture: LinearInputCapture | null = null;
  private encoder: GPUCommandEncoder | null = null;
  private sampler: GpuSampler | null = null;
  private scorer: PromptLogprobsKernel | null = null;
  private fullLogits: GPUBuffer | null = null;
  /** Tokens in the step being recorded and reads issued in it: the wait kinds of its readbacks. */
  private stepTokens = 0;
  private readsThisStep = 0;
  private pass: GPUComputePassEncoder | null = null;
  /** Dynamic NTK RoPE: the default frequencies and scratch for the per-sequence rows uploaded each step. */
  private readonly dynamicNtk: { base: Float32Array; rows: Float32Array; seqLens: Uint32Array } | null = null;
  readonly uniforms: UniformArena;
  readonly kCaches: GPUBuffer[];
  readonly vCaches: GPUBuffer[];
  /** Int8/int4 caches: per layer, u32 [numBlocks, blockSize, numKvHeads, 2], each row's (k, v) f16 (scale, min); null otherwise. */
  readonly kvParams: GPUBuffer[] | null;

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
    if (config.rope.scaling?.type === 'dynamic') {
      const half = config.rope.rotaryDim / 2;
      this.dynamicNtk = {
        base: ropeInvFreq(config.rope).invFreq,
        rows: new Float32Array(buffers.invFreq.size / 4),
        seqLens: new Uint32Array(buffers.invFreq.size / 4 / half),
      };
    }
    // The KV write kernel decides the element type (f16 caches are packed u32 pairs); attention must agree.
    if (kernels.attn.kvCacheDtype !== kernels.kv.dtype)
      throw new Error(
        `shard: attention reads ${kernels.attn.kvCacheDtype} caches but the KV write stores ${kernels.kv.dtype}; create both kernels with the same kvCacheDtype`,
      );
    const rowsPerLayer = numBlocks * blockSize * layout.numKvHeads;
    const bytesPerLayer = rowsPerLayer * kvCacheDataBytesPerTokenHead(kernels.kv.dtype, config.headDim);
    const usage = storageUsage();
    this.kCaches = Array.from({ length: config.numLayers }, (_, l) => gpu.createBuffer(`k_cache.${l}`, bytesPerLayer, usage));
    this.vCaches = Array.from({ length: config.numLayers }, (_, l) => gpu.createBuffer(`v_cache.${l}`, bytesPerLayer, usage));
    this.kvParams = isQuantizedKvCache(kernels.kv.dtype)
      ? Array.from({ length: config.numLayers }, (_, l) => gpu.createBuffer(`kv_params.${l}`, rowsPerLayer * 2 * KV_QUANT_PARAM_BYTES, usage))
      : null;
  }

  /** q4: also compile the 4-bit matmul kernels (a checkpoint with quantization_config). */
  static async createKernels(gpu: GpuDevice, kvCacheDtype: KvCacheDtype = 'f32', q4 = false): Promise<ShardKernels> {
    const [matmul, norm, act, embed, rotary, hadamard, permute, kv, attn] = await Promise.all([
      MatmulKernels.create(gpu, { q4 }),
      RmsNormKernel.create(gpu),
      ActivationKernel.create(gpu),
      EmbeddingKernel.create(gpu),
      RotaryKernel.create(gpu),
      isQuantizedKvCache(kvCacheDtype) ? HadamardKernel.create(gpu) : null,
      q4 ? PermuteKernel.create(gpu) : null,
      KvCacheKernel.create(gpu, { dtype: kvCacheDtype }),
      AttentionKernel.create(gpu, { kvCacheDtype }),
    ]);
    return { matmul, norm, act, embed, rotary, hadamard, permute, kv, attn };
  }

  /** Makes this shard the one that samples (rank 0): a GPU sampler, plus a full-vocab logits buffer when tp > 1. */
  async enableSampling(maxNumSeqs: number): Promise<void> {
    this.sampler = await GpuSampler.create(this.gpu, this.config.vocabSize);
    this.scorer = await PromptLogprobsKernel.create(this.gpu, this.config.vocabSize);
    if (this.layout.tp > 1) this.fullLogits = this.gpu.createBuffer('full-logits', maxNumSeqs * this.config.vocabSize * 4, storageUsage());
  }

  get kvCacheBytes(): number {
    return 2 * this.kCaches.reduce((n, b) => n + b.size, 0) + (this.kvParams ?? []).reduce((n, b) => n + b.size, 0);
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

  uploadStep(step: StepInput): void {
    this.uploadMetadata(step.meta);
  }

  uploadMetadata(meta: StepMetadata): void {
    const { buffers: b, gpu } = this;
    this.stepTokens = meta.shape.numTokens;
    this.readsThisStep = 0;
    gpu.write(b.tokenIds, this.layout.tp > 1 ? remapToShardVocab(meta.tokenIds, this.layout) : meta.tokenIds);
    gpu.write(b.positions, meta.positions);
    gpu.write(b.tokenSeq, meta.tokenSeq);
    if (this.dynamicNtk) this.writeDynamicNtkRows(meta);
    gpu.write(b.slotMapping, meta.slotMapping);
    gpu.write(b.blockTables, meta.blockTables);
    if (meta.sampleRows.length) gpu.write(b.sampleRows, meta.sampleRows);
  }

  /**
   * transformers' dynamic NTK, per sequence: every token of a sequence is rotated with the frequencies
   * for seq_len = (its last position in this step) + 1, the default ones up to the original
   * max_position_embeddings. Keys are cached rotated, so each keeps the frequencies of the step that wrote it.
   */
  private writeDynamicNtkRows(meta: StepMetadata): void {
    const d = this.dynamicNtk!;
    const S = meta.shape.numSeqs;
    const seqLens = d.seqLens.subarray(0, S).fill(0);
    for (let t = 0; t < meta.shape.numTokens; t++) {
      const s = meta.tokenSeq[t]!;
      seqLens[s] = Math.max(seqLens[s]!, meta.positions[t]! + 1);
    }
    const rows = d.rows.subarray(0, (S * this.config.rope.rotaryDim) / 2);
    dynamicNtkRows(this.config.rope, d.base, seqLens, rows);
    this.gpu.write(this.buffers.invFreq, rows);
  }

  read(name: ExchangeBufferName, count: number): Promise<Float32Array> {
    // The k-th read of a step waits for the same stretch of the forward pass every step (the
    // embedding, one layer's attention or MLP, the logits), so each position is its own wait kind.
    const kind = `read${this.readsThisStep++}:${name}:${tokenBucket(this.stepTokens)}`;
    return this.gpu.readF32(this.buffers[name], count, 0, kind, this.stepTokens);
  }

  write(name: ExchangeBufferName, data: Float32Array): void {
    this.gpu.write(this.buffers[name], data);
  }

  sample(
    rows: readonly SamplingRow[],
    fullLogits: Float32Array | null,
    processing: readonly (LogitsProcessing | null)[] | null = null,
  ): Promise<SampleResult[]> {
    if (!this.sampler) throw new Error(`shard ${this.layout.rank} does not sample (only rank 0 does)`);
    if (fullLogits) {
      this.gpu.write(this.fullLogits!, fullLogits);
      return this.sampler.sample(this.fullLogits!, rows, 'sample:gathered', 1, processing);
    }
    // The readback waits for the whole forward step submitted just before it.
    return this.sampler.sample(this.buffers.logits, rows, `step:${tokenBucket(this.stepTokens)}`, this.stepTokens, processing);
  }

  scorePrompt(targets: Uint32Array, numTop: number, fullLogits: Float32Array | null): Promise<ScoredToken[]> {
    if (!this.scorer) throw new Error(`shard ${this.layout.rank} does not score prompts (only rank 0 does)`);
    const kind = `score:${tokenBucket(targets.length)}`;
    if (fullLogits) {
      this.gpu.write(this.fullLogits!, fullLogits);
      return this.scorer.score(this.fullLogits!, targets, numTop, kind);
    }
    return this.scorer.score(this.buffers.logits, targets, numTop, kind, targets.length);
  }

  throwIfFailed(): void {
    this.gpu.throwIfFailed();
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
    k.matmul.matmul(this.p, u, this.matmulInput(b.normed, w.qkv, T), w.qkv, b.qkv, T, w.qkvBias ?? undefined);
    this.captureInput(l, 'qkv', b.normed, T * c.hiddenSize);
    const hd = c.headDim;
    const rowStride = (layout.numHeads + 2 * layout.numKvHeads) * hd;
    const kOffset = layout.numHeads * hd;
    const vOffset = kOffset + layout.numKvHeads * hd;
    if (w.qkNorm) {
      // Qwen3: RMSNorm over each q and k head (after the bias, before RoPE).
      k.norm.headNorm(this.p, u, {
        qkv: b.qkv,
        weight: w.qkNorm,
        numTokens: T,
        rowStride,
        numQHeads: layout.numHeads,
        numKHeads: layout.numKvHeads,
        headDim: hd,
        eps,
      });
    }
    const qkHeads: QkHeads = {
      qkv: b.qkv,
      numTokens: T,
      rowStride,
      qOffset: 0,
      numHeads: layout.numHeads,
      kOffset,
      numKvHeads: layout.numKvHeads,
      headDim: hd,
    };
    k.rotary.apply(this.p, u, {
      ...qkHeads,
      rotaryDim: c.rope.rotaryDim,
      positions: b.positions,
      invFreq: b.invFreq,
      tokenSeq: b.tokenSeq,
      perSequenceFreq: this.dynamicNtk !== null,
      attentionScaling: this.attentionScaling,
    });
    // A quantized cache stores k in the Hadamard basis (q follows, so scores are unchanged).
    k.hadamard?.apply(this.p, u, qkHeads);
    k.kv.write(this.p, u, {
      qkv: b.qkv,
      numTokens: T,
      rowStride,
      kOffset,
      vOffset,
      numKvHeads: layout.numKvHeads,
      headDim: hd,
      kCache: this.kCaches[l]!,
      vCache: this.vCaches[l]!,
      kvParams: this.kvParams?.[l],
      slotMapping: b.slotMapping,
    });
    k.attn.attend(this.p, u, {
      qkv: b.qkv,
      rowStride,
      qOffset: 0,
      out: b.attnOut,
      kCache: this.kCaches[l]!,
      vCache: this.vCaches[l]!,
      kvParams: this.kvParams?.[l],
      blockTables: b.blockTables,
      maxBlocksPerSeq: s.maxBlocksPerSeq,
      tokenSeq: b.tokenSeq,
      tokenPos: b.positions,
      numTokens: T,
      numSeqs: s.numSeqs,
      numHeads: layout.numHeads,
      numKvHeads: layout.numKvHeads,
      headDim: hd,
      blockSize: this.blockSize,
      scale: 1 / Math.sqrt(hd),
      slidingWindow: c.slidingWindow ?? 0,
      maxContextLen: s.maxContextLen,
    });
    k.matmul.matmul(this.p, u, this.matmulInput(b.attnOut, w.o, T), w.o, b.proj, T, w.oBias ?? undefined);
    this.captureInput(l, 'o', b.attnOut, T * layout.numHeads * hd);
  }

  /** Layer `l`'s MLP block: residual += attention output, then (partial) down_proj output in buffers.proj. */
  encodeMlp(l: number, s: StepShape): void {
    const { config: c, layout, buffers: b, kernels: k, uniforms: u } = this;
    const w = this.weights.layers[l]!;
    const T = s.numTokens;
    k.norm.addNorm(this.p, u, { x: b.proj, residual: b.residual, weight: w.postNorm, out: b.normed, numRows: T, dim: c.hiddenSize, eps: c.rmsNormEps });
    k.matmul.matmul(this.p, u, this.matmulInput(b.normed, w.gateUp, T), w.gateUp, b.gateUp, T);
    this.captureInput(l, 'gateUp', b.normed, T * c.hiddenSize);
    k.act.siluAndMul(this.p, u, { gateUp: b.gateUp, out: b.act, numRows: T, intermediate: layout.intermediate });
    k.matmul.matmul(this.p, u, this.matmulInput(b.act, w.down, T), w.down, b.proj, T);
    this.captureInput(l, 'down', b.act, T * layout.intermediate);
  }

  /** x itself, or for an activation-ordered 4-bit weight x's columns gathered into its input order. */
  private matmulInput(x: GPUBuffer, w: GpuWeight, numRows: number): GPUBuffer {
    if (w.dtype !== 'q4' || !w.inputPerm) return x;
    const { permute } = this.kernels;
    const out = this.buffers.permuted;
    if (!permute || !out) throw new Error(`shard: ${w.label} has activation-ordered groups but the shard has no gather buffer`);
    permute.gatherColumns(this.p, this.uniforms, { x, perm: w.inputPerm, out, numRows, cols: w.cols });
    return out;
  }

  /** With a capture of layer `l` set, copies `count` floats of `src` aside (a copy is an encoder command, so the pass is ended and reopened). */
  private captureInput(l: number, point: 'qkv' | 'o' | 'gateUp' | 'down', src: GPUBuffer, count: number): void {
    const c = this.capture;
    if (!c || c.layer !== l || !this.encoder) return;
    this.p.end();
    this.encoder.copyBufferToBuffer(src, 0, c[point], 0, count * 4);
    this.pass = this.encoder.beginComputePass({ label: `${this.gpu.label}:forward` });
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

  /** lm_head over `rows` of the final normed hidden states (they stay in buffers.normed after the step). */
  encodeScoreLogits(rows: Uint32Array): void {
    const { config: c, buffers: b, kernels: k, uniforms: u } = this;
    if (rows.length === 0) return;
    if (rows.length * 4 > b.sampleRows.size) throw new Error(`encodeScoreLogits: ${rows.length} rows exceed the ${b.sampleRows.size / 4}-row logits buffer`);
    this.gpu.write(b.sampleRows, rows);
    k.embed.gatherRows(this.p, u, { src: b.normed, rows: b.sampleRows, out: b.lastHidden, numRows: rows.length, dim: c.hiddenSize });
    k.matmul.matmul(this.p, u, b.lastHidden, this.weights.lmHead, b.logits, rows.length);
  }

  destroy(): void {
    this.sampler?.destroy();
    this.scorer?.destroy();
    this.fullLogits?.destroy();
    for (const buf of [...this.kCaches, ...this.vCaches, ...(this.kvParams ?? []), ...Object.values(this.buffers)]) buf?.destroy();
    const w = this.weights;
    destroyWeight(w.embed);
    if (w.lmHead.chunks !== w.embed.chunks) destroyWeight(w.lmHead);
    w.norm.destroy();
    for (const l of w.layers) {
      l.inputNorm.destroy();
      l.postNorm.destroy();
      l.qkvBias?.destroy();
      l.qkNorm?.destroy();
      l.oBias?.destroy();
      for (const m of [l.qkv, l.o, l.gateUp, l.down]) destroyWeight(m);
    }
    this.kernels.attn.destroy();
    this.uniforms.destroy();
  }
}

/** What building a shard needs beyond its device, layout and weights. */
export interface ShardBuildOptions {
  blockSize: number;
  numBlocks: number;
  maxTokensPerStep: number;
  maxNumSeqs: number;
  maxBlocksPerSeq: number;
  invFreq: Float32Array;
  attentionScaling: number;
  /** KV cache element type (default 'f32'). */
  kvCacheDtype?: KvCacheDtype;
}

/** Kernels, activation buffers and (rank 0) the sampler around uploaded weights: the same in-process and in a worker. */
export async function createShard(gpu: GpuDevice, config: ModelConfig, layout: ShardLayout, weights: ShardWeights, o: ShardBuildOptions): Promise<Shard> {
  const kernels = await Shard.createKernels(gpu, o.kvCacheDtype, config.quantization !== null);
  // The weights decide (each g_idx does), not config.json's desc_act: static groups keep inputs in order.
  const gathers = weights.layers.some((l) => [l.qkv, l.o, l.gateUp, l.down].some((w) => w.dtype === 'q4' && w.inputPerm !== null));
  const buffers = allocateBuffers(gpu, config, layout, o.maxTokensPerStep, o.maxNumSeqs, o.maxBlocksPerSeq, o.invFreq, gathers);
  const shard = new Shard(gpu, layout, config, weights, kernels, buffers, o.blockSize, o.numBlocks, o.attentionScaling);
  if (layout.rank === 0) await shard.enableSampling(o.maxNumSeqs);
  return shard;
}

/** Ids outside this shard's vocab rows point at its zero row (index vocabEnd - vocabStart). */
function remapToShardVocab(ids: Uint32Array, layout: ShardLayout): Uint32Array {
  const out = new Uint32Array(ids.length);
  const zeroRow = layout.vocabEnd - layout.vocabStart;
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    out[i] = id >= layout.vocabStart && id < layout.vocabEnd ? id - layout.vocabStart : zeroRow;
  }
  return out;
}

function allocateBuffers(
  gpu: GpuDevice,
  config: ModelConfig,
  layout: ShardLayout,
  maxTokens: number,
  maxSeqs: number,
  maxBlocksPerSeq: number,
  invFreq: Float32Array,
  gathers: boolean,
): ShardBuffers {
  const f32 = (label: string, n: number) => gpu.createBuffer(label, n * 4, storageUsage());
  const H = config.hiddenSize;
  const hd = config.headDim;
  return {
    tokenIds: f32('token_ids', maxTokens),
    positions: f32('positions', maxTokens),
    tokenSeq: f32('token_seq', maxTokens),
    slotMapping: f32('slot_mapping', maxTokens),
    blockTables: f32('block_tables', maxSeqs * maxBlocksPerSeq),
    sampleRows: f32('sample_rows', maxSeqs),
    // Dynamic NTK: one row per sequence, rewritten every step (Shard.writeDynamicNtkRows).
    invFreq: config.rope.scaling?.type === 'dynamic' ? f32('inv_freq', maxSeqs * invFreq.length) : gpu.upload('inv_freq', invFreq),
    residual: f32('residual', maxTokens * H),
    normed: f32('normed', maxTokens * H),
    qkv: f32('qkv', maxTokens * (layout.numHeads + 2 * layout.numKvHeads) * hd),
    attnOut: f32('attn_out', maxTokens * layout.numHeads * hd),
    proj: f32('proj', maxTokens * H),
    gateUp: f32('gate_up', maxTokens * 2 * layout.intermediate),
    act: f32('act', maxTokens * layout.intermediate),
    permuted: gathers ? f32('permuted', maxTokens * Math.max(H, layout.numHeads * hd, layout.intermediate)) : null,
    lastHidden: f32('last_hidden', maxSeqs * H),
    logits: f32('logits', maxSeqs * (layout.vocabEnd - layout.vocabStart)),
  };
}
