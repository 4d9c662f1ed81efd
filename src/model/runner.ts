// The model runner: turns a SchedulerOutput into sampled tokens on one or more shards (tensor
// parallelism with a host-side all-reduce). It owns the GPU side of the model; the scheduler above it
// only ever sees block ids and token ids.
import { type GpuDevice } from '../gpu/index.js';
import { GpuSampler } from '../kernels/sampling.js';
import type { SampleResult, SamplingRow } from '../sampling/params.js';
import type { RunnerOutput, SchedulerOutput } from '../scheduler/types.js';
import type { ModelConfig } from './config.js';
import { ropeInvFreq } from './rope.js';
import { SafetensorsReader } from './safetensors.js';
import { loadCanonicalTensors } from './weights.js';
import { ConsoleLoadProgress } from './progress.js';
import { shardLayout, type ShardLayout } from './sharding.js';
import { ShardWeightBuilder } from './shard-weights.js';
import { Shard, type ShardBuffers, type StepShape } from './shard.js';
import { AllReducer } from './all-reduce.js';
import { planMemory, type MemoryPlan, type MemoryOptions } from './memory.js';

export interface RunnerOptions extends MemoryOptions {
  dtype: 'f16' | 'f32';
  blockSize: number;
  maxNumSeqs: number;
  maxModelLen: number;
  /** Print a progress bar / summary while loading. */
  progress?: boolean;
}

export class ModelRunner {
  private readonly allReducer: AllReducer;
  /** Time spent in host all-reduce (ms) since creation, including waits for shard work; benches read it. */
  get allReduceMs(): number {
    return this.allReducer.totalMs;
  }
  /** The host-only part of allReduceMs: summing partials and queueing writes. */
  get allReduceHostMs(): number {
    return this.allReducer.hostMs;
  }

  private constructor(
    readonly config: ModelConfig,
    readonly shards: Shard[],
    private readonly sampler: GpuSampler,
    private readonly fullLogits: GPUBuffer | null,
    readonly plan: MemoryPlan,
    readonly maxNumSeqs: number,
    readonly maxBlocksPerSeq: number,
  ) {
    this.allReducer = new AllReducer(shards.map((s) => s.gpu));
  }

  get numBlocks(): number {
    return this.plan.numBlocks;
  }
  get blockSize(): number {
    return this.plan.blockSize;
  }
  get maxTokensPerStep(): number {
    return this.plan.maxTokensPerStep;
  }

  static async load(modelDir: string, config: ModelConfig, devices: GpuDevice[], options: RunnerOptions): Promise<ModelRunner> {
    const tp = devices.length;
    const layouts = devices.map((_, rank) => shardLayout(config, tp, rank));
    const reader = await SafetensorsReader.open(modelDir);
    try {
      const plan = planMemory(config, layouts[0]!, devices[0]!, options);
      const builders = devices.map((gpu, rank) => new ShardWeightBuilder(gpu, config, layouts[rank]!, options.dtype));
      const progress = options.progress ? new ConsoleLoadProgress() : undefined;
      await loadCanonicalTensors(reader, config, options.dtype, (t) => {
        for (const b of builders) b.add(t);
      }, progress);
      const { invFreq, attentionScaling } = ropeInvFreq(config.rope, config.maxPositionEmbeddings);
      const maxBlocksPerSeq = Math.ceil(options.maxModelLen / options.blockSize);
      const shards = await Promise.all(
        devices.map(async (gpu, rank) => {
          const weights = builders[rank]!.finish();
          const kernels = await Shard.createKernels(gpu);
          const buffers = allocateBuffers(gpu, config, layouts[rank]!, plan.maxTokensPerStep, options.maxNumSeqs, maxBlocksPerSeq, invFreq);
          return new Shard(gpu, layouts[rank]!, config, weights, kernels, buffers, options.blockSize, plan.numBlocks, attentionScaling);
        }),
      );
      const sampler = await GpuSampler.create(devices[0]!, config.vocabSize);
      const fullLogits = tp > 1 ? devices[0]!.createBuffer('full-logits', options.maxNumSeqs * config.vocabSize * 4, STORAGE) : null;
      for (const gpu of devices) await gpu.sync();
      return new ModelRunner(config, shards, sampler, fullLogits, plan, options.maxNumSeqs, maxBlocksPerSeq);
    } finally {
      await reader.close();
    }
  }

  /**
   * Runs one scheduler step and samples the next token of every sequence whose slice reached its end.
   * 1. Flatten the step into per-token metadata and upload it to every shard.
   * 2. Record embedding, layers and logits; between the row-parallel matmuls and their consumers the
   *    shards' partial sums are all-reduced on the host (a no-op with one shard).
   * 3. Sample on shard 0 (after gathering vocab-split logits when tp > 1).
   */
  async execute(output: SchedulerOutput, rowsByRequest: ReadonlyMap<string, SamplingRow>): Promise<RunnerOutput> {
    const samples = new Map<string, SampleResult>();
    if (output.sequences.length === 0) return { samples };
    const meta = buildStepMetadata(output, this.blockSize, this.maxBlocksPerSeq);
    if (meta.shape.numTokens > this.maxTokensPerStep) {
      throw new Error(`step has ${meta.shape.numTokens} tokens, more than the runner's ${this.maxTokensPerStep}`);
    }
    if (meta.shape.numSeqs > this.maxNumSeqs) throw new Error(`step has ${meta.shape.numSeqs} sequences, more than ${this.maxNumSeqs}`);
    for (const shard of this.shards) this.uploadMetadata(shard, meta);
    const shape = meta.shape;
    const tp = this.shards.length;

    for (const s of this.shards) s.begin();
    for (const s of this.shards) s.encodeEmbedding(shape);
    if (tp > 1) await this.allReduce('residual', shape.numTokens);
    for (let l = 0; l < this.config.numLayers; l++) {
      for (const s of this.shards) s.encodeAttention(l, shape);
      if (tp > 1) await this.allReduce('proj', shape.numTokens);
      for (const s of this.shards) s.encodeMlp(l, shape);
      if (tp > 1) await this.allReduce('proj', shape.numTokens);
    }
    for (const s of this.shards) s.encodeLogits(shape);
    for (const s of this.shards) s.submit();
    if (shape.numSampled === 0) {
      for (const s of this.shards) s.gpu.throwIfFailed();
      return { samples };
    }
    const logits = tp > 1 ? await this.gatherLogits(shape.numSampled) : this.shards[0]!.buffers.logits;
    const rows = meta.sampledRequestIds.map((id) => {
      const row = rowsByRequest.get(id);
      if (!row) throw new Error(`no sampling row for request ${id}`);
      return row;
    });
    const results = await this.sampler.sample(logits, rows);
    meta.sampledRequestIds.forEach((id, i) => samples.set(id, results[i]!));
    return { samples };
  }

  private uploadMetadata(shard: Shard, meta: StepMetadata): void {
    const b = shard.buffers;
    const gpu = shard.gpu;
    const ids = this.shards.length > 1 ? remapToShardVocab(meta.tokenIds, shard.layout) : meta.tokenIds;
    gpu.write(b.tokenIds, ids);
    gpu.write(b.positions, meta.positions);
    gpu.write(b.tokenSeq, meta.tokenSeq);
    gpu.write(b.slotMapping, meta.slotMapping);
    gpu.write(b.blockTables, meta.blockTables);
    if (meta.sampleRows.length) gpu.write(b.sampleRows, meta.sampleRows);
  }

  /** Ends every shard's pass, sums buffer `name` [numTokens, hidden] across shards, writes it back, reopens passes. */
  private async allReduce(name: 'residual' | 'proj', numTokens: number): Promise<void> {
    for (const s of this.shards) s.submit();
    await this.allReducer.sum(this.shards.map((s) => s.buffers[name]), numTokens * this.config.hiddenSize);
    for (const s of this.shards) s.begin();
  }

  /** Reads each shard's vocab slice of the logits and writes the full rows to shard 0 for sampling. */
  private async gatherLogits(numRows: number): Promise<GPUBuffer> {
    const V = this.config.vocabSize;
    const parts = await Promise.all(
      this.shards.map((s) => s.gpu.readF32(s.buffers.logits, numRows * (s.layout.vocabEnd - s.layout.vocabStart))),
    );
    const full = new Float32Array(numRows * V);
    this.shards.forEach((s, i) => {
      const width = s.layout.vocabEnd - s.layout.vocabStart;
      const part = parts[i]!;
      for (let r = 0; r < numRows; r++) full.set(part.subarray(r * width, (r + 1) * width), r * V + s.layout.vocabStart);
    });
    this.shards[0]!.gpu.write(this.fullLogits!, full);
    return this.fullLogits!;
  }

  /** Reads the logits of the last step's sampled rows (tests compare them with the CPU reference). */
  async readLogits(numRows: number): Promise<Float32Array> {
    if (this.shards.length > 1) {
      await this.gatherLogits(numRows);
      return this.shards[0]!.gpu.readF32(this.fullLogits!, numRows * this.config.vocabSize);
    }
    return this.shards[0]!.gpu.readF32(this.shards[0]!.buffers.logits, numRows * this.config.vocabSize);
  }

  destroy(): void {
    this.sampler.destroy();
    this.fullLogits?.destroy();
    for (const s of this.shards) s.destroy();
  }
}

const STORAGE = 0x80 | 0x4 | 0x8; // GPUBufferUsage.STORAGE | COPY_SRC | COPY_DST (globals may not exist at import time)

interface StepMetadata {
  shape: StepShape;
  tokenIds: Uint32Array;
  positions: Uint32Array;
  tokenSeq: Uint32Array;
  slotMapping: Uint32Array;
  blockTables: Uint32Array;
  sampleRows: Uint32Array;
  sampledRequestIds: string[];
}

export function buildStepMetadata(output: SchedulerOutput, blockSize: number, maxBlocksPerSeq: number): StepMetadata {
  const T = output.sequences.reduce((n, s) => n + s.tokenIds.length, 0);
  const S = output.sequences.length;
  const tokenIds = new Uint32Array(T);
  const positions = new Uint32Array(T);
  const tokenSeq = new Uint32Array(T);
  const slotMapping = new Uint32Array(T);
  const blockTables = new Uint32Array(S * maxBlocksPerSeq);
  const sampleRows: number[] = [];
  const sampledRequestIds: string[] = [];
  let t = 0;
  let maxContextLen = 0;
  output.sequences.forEach((seq, si) => {
    if (seq.blockIds.length > maxBlocksPerSeq) throw new Error(`request ${seq.requestId} has ${seq.blockIds.length} blocks, more than ${maxBlocksPerSeq}`);
    blockTables.set(seq.blockIds, si * maxBlocksPerSeq);
    for (let i = 0; i < seq.tokenIds.length; i++, t++) {
      const pos = seq.startPosition + i;
      tokenIds[t] = seq.tokenIds[i]!;
      positions[t] = pos;
      tokenSeq[t] = si;
      const block = seq.blockIds[Math.floor(pos / blockSize)];
      if (block === undefined) throw new Error(`request ${seq.requestId} has no KV block for position ${pos}`);
      slotMapping[t] = block * blockSize + (pos % blockSize);
    }
    maxContextLen = Math.max(maxContextLen, seq.startPosition + seq.tokenIds.length);
    if (seq.sample) {
      sampleRows.push(t - 1);
      sampledRequestIds.push(seq.requestId);
    }
  });
  return {
    shape: { numTokens: T, numSeqs: S, numSampled: sampleRows.length, maxContextLen, maxBlocksPerSeq },
    tokenIds,
    positions,
    tokenSeq,
    slotMapping,
    blockTables,
    sampleRows: Uint32Array.from(sampleRows),
    sampledRequestIds,
  };
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
): ShardBuffers {
  const f32 = (label: string, n: number) => gpu.createBuffer(label, n * 4, STORAGE);
  const H = config.hiddenSize;
  const hd = config.headDim;
  return {
    tokenIds: f32('token_ids', maxTokens),
    positions: f32('positions', maxTokens),
    tokenSeq: f32('token_seq', maxTokens),
    slotMapping: f32('slot_mapping', maxTokens),
    blockTables: f32('block_tables', maxSeqs * maxBlocksPerSeq),
    sampleRows: f32('sample_rows', maxSeqs),
    invFreq: gpu.upload('inv_freq', invFreq),
    residual: f32('residual', maxTokens * H),
    normed: f32('normed', maxTokens * H),
    qkv: f32('qkv', maxTokens * (layout.numHeads + 2 * layout.numKvHeads) * hd),
    attnOut: f32('attn_out', maxTokens * layout.numHeads * hd),
    proj: f32('proj', maxTokens * H),
    gateUp: f32('gate_up', maxTokens * 2 * layout.intermediate),
    act: f32('act', maxTokens * layout.intermediate),
    lastHidden: f32('last_hidden', maxSeqs * H),
    logits: f32('logits', maxSeqs * (layout.vocabEnd - layout.vocabStart)),
  };
}
