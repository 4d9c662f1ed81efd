// The model runner: turns a SchedulerOutput into sampled tokens on one or more shards (tensor
// parallelism with a host-side all-reduce). It owns the GPU side of the model; the scheduler above it
// only ever sees block ids and token ids.
import assert from 'node:assert/strict';
import type { GpuDevice } from '../gpu/index.js';
import type { ShardPlacement } from './worker/placement.js';
import type { SampleResult, SamplingRow } from '../sampling/params.js';
import type { RunnerOutput, SchedulerOutput } from '../scheduler/types.js';
import type { ModelConfig } from '../checkpoint/config.js';
import { ropeInvFreq } from '../checkpoint/rope.js';
import { SafetensorsReader } from '../checkpoint/safetensors.js';
import { loadCanonicalTensors } from '../checkpoint/weights.js';
import { ConsoleLoadProgress } from '../common/progress.js';
import { shardLayout } from './sharding.js';
import { ShardWeightBuilder } from './shard-weights.js';
import { createShard, type ShardHandle, type StepMetadata } from './shard.js';
import { AllReducer } from './all-reduce.js';
import { planMemory, type MemoryPlan } from './memory.js';
import type { RunnerOptions } from './options.js';

export type { RunnerOptions } from './options.js';
import { openRemoteShards, type RemoteShard } from './worker/host.js';

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
    readonly shards: ShardHandle[],
    readonly plan: MemoryPlan,
    readonly maxNumSeqs: number,
    readonly maxBlocksPerSeq: number,
    /** Worker processes when shards run out of process (empty otherwise). */
    readonly remoteShards: RemoteShard[] = [],
  ) {
    this.allReducer = new AllReducer(shards);
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

  /** In-process shards, one per device. */
  static async load(modelDir: string, config: ModelConfig, devices: GpuDevice[], options: RunnerOptions): Promise<ModelRunner> {
    const tp = devices.length;
    const layouts = devices.map((_, rank) => shardLayout(config, tp, rank));
    const reader = await SafetensorsReader.open(modelDir);
    try {
      const plan = planMemory(config, layouts[0]!, devices[0]!, options);
      const builders = devices.map((gpu, rank) => new ShardWeightBuilder(gpu, config, layouts[rank]!, options.dtype));
      const progress = options.progress ? new ConsoleLoadProgress() : undefined;
      await loadCanonicalTensors(
        reader,
        config,
        options.dtype,
        (t) => {
          for (const b of builders) b.add(t);
        },
        progress,
      );
      const { invFreq, attentionScaling } = ropeInvFreq(config.rope, config.maxPositionEmbeddings);
      const maxBlocksPerSeq = Math.ceil(options.maxModelLen / options.blockSize);
      const build = {
        blockSize: options.blockSize,
        numBlocks: plan.numBlocks,
        maxTokensPerStep: plan.maxTokensPerStep,
        maxNumSeqs: options.maxNumSeqs,
        maxBlocksPerSeq,
        invFreq,
        attentionScaling,
        kvCacheDtype: options.kvCacheDtype,
      };
      const shards = await Promise.all(devices.map((gpu, rank) => createShard(gpu, config, layouts[rank]!, builders[rank]!.finish(), build)));
      for (const gpu of devices) await gpu.sync();
      return new ModelRunner(config, shards, plan, options.maxNumSeqs, maxBlocksPerSeq);
    } finally {
      await reader.close();
    }
  }

  /**
   * Shards in worker processes, one per placement, each pinned to its GPU by its environment and
   * loading only its own slices of the weights. Shard 0 plans memory; the others follow its plan.
   */
  static async loadInWorkers(modelDir: string, config: ModelConfig, placements: ShardPlacement[], options: RunnerOptions): Promise<ModelRunner> {
    const shards = await openRemoteShards(modelDir, config, placements, options);
    const plan = shards[0]!.plan;
    assert(plan, 'openRemoteShards returns shards with their plan');
    return new ModelRunner(config, shards, plan, options.maxNumSeqs, Math.ceil(options.maxModelLen / options.blockSize), shards);
  }

  /** Calls `listener` once when a worker-process shard dies or reports a GPU error outside a request. */
  onShardFailure(listener: (err: Error) => void): void {
    for (const s of this.remoteShards) s.onFailure(listener);
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
    for (const shard of this.shards) shard.uploadMetadata(meta);
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
      for (const s of this.shards) s.throwIfFailed();
      return { samples };
    }
    const fullLogits = tp > 1 ? await this.gatherLogits(shape.numSampled) : null;
    const rows = meta.sampledRequestIds.map((id) => {
      const row = rowsByRequest.get(id);
      if (!row) throw new Error(`no sampling row for request ${id}`);
      return row;
    });
    const results = await this.shards[0]!.sample(rows, fullLogits);
    meta.sampledRequestIds.forEach((id, i) => samples.set(id, results[i]!));
    return { samples };
  }

  /** Ends every shard's pass, sums buffer `name` [numTokens, hidden] across shards, writes it back, reopens passes. */
  private async allReduce(name: 'residual' | 'proj', numTokens: number): Promise<void> {
    for (const s of this.shards) s.submit();
    await this.allReducer.sum(name, numTokens * this.config.hiddenSize);
    for (const s of this.shards) s.begin();
  }

  /** Reads each shard's vocab slice of the logits and assembles the full rows on the host. */
  private async gatherLogits(numRows: number): Promise<Float32Array> {
    const V = this.config.vocabSize;
    const parts = await Promise.all(this.shards.map((s) => s.read('logits', numRows * (s.layout.vocabEnd - s.layout.vocabStart))));
    const full = new Float32Array(numRows * V);
    this.shards.forEach((s, i) => {
      const width = s.layout.vocabEnd - s.layout.vocabStart;
      const part = parts[i]!;
      for (let r = 0; r < numRows; r++) full.set(part.subarray(r * width, (r + 1) * width), r * V + s.layout.vocabStart);
    });
    return full;
  }

  /** Reads the logits of the last step's sampled rows (tests compare them with the CPU reference). */
  async readLogits(numRows: number): Promise<Float32Array> {
    if (this.shards.length > 1) return this.gatherLogits(numRows);
    return this.shards[0]!.read('logits', numRows * this.config.vocabSize);
  }

  destroy(): void {
    for (const s of this.shards) s.destroy();
  }
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
