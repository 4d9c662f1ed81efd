// The model runner: turns a SchedulerOutput into sampled tokens on one or more shards (tensor
// parallelism with a host-side all-reduce). It owns the GPU side of the model; the scheduler above it
// only ever sees block ids and token ids.
import assert from 'node:assert/strict';
import type { GpuDevice } from '../gpu/index.js';
import type { ShardPlacement } from './worker/placement.js';
import type { LogitsProcessing, SampleResult, SamplingRow } from '../sampling/params.js';
import type { PromptLogprobsChunk, RunnerOutput, SchedulerOutput } from '../scheduler/types.js';
import type { ScoredToken } from '../kernels/prompt-logprobs.js';
import type { ModelConfig } from '../checkpoint/config.js';
import { shardLayout } from './sharding.js';
import type { ShardHandle } from './shard.js';
import { AllReducer } from './all-reduce.js';
import { planMemory, type MemoryPlan } from './memory.js';
import type { RunnerOptions } from './options.js';
import { loadShards } from './shard-loader.js';
import { buildStepMetadata } from './step-metadata.js';
import { openRemoteShards, type RemoteShard } from './worker/host.js';

export type { RunnerOptions } from './options.js';
export { buildStepMetadata } from './step-metadata.js';

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
  get maxBlocksPerSeq(): number {
    return this.plan.maxBlocksPerSeq;
  }

  /** In-process shards, one per device; the checkpoint is read once for all of them. */
  static async load(modelDir: string, config: ModelConfig, devices: GpuDevice[], options: RunnerOptions): Promise<ModelRunner> {
    const targets = devices.map((gpu, rank) => ({ gpu, layout: shardLayout(config, devices.length, rank) }));
    const plan = planMemory(config, targets[0]!.layout, devices[0]!, options);
    const shards = await loadShards(modelDir, config, targets, plan, options);
    return new ModelRunner(config, shards, plan, options.maxNumSeqs);
  }

  /**
   * Shards in worker processes, one per placement, each pinned to its GPU by its environment and
   * loading only its own slices of the weights. Shard 0 plans memory; the others follow its plan.
   */
  static async loadInWorkers(modelDir: string, config: ModelConfig, placements: ShardPlacement[], options: RunnerOptions): Promise<ModelRunner> {
    const shards = await openRemoteShards(modelDir, config, placements, options);
    const plan = shards[0]!.plan;
    assert(plan, 'openRemoteShards returns shards with their plan');
    return new ModelRunner(config, shards, plan, options.maxNumSeqs, shards);
  }

  /** Calls `listener` once when a worker-process shard dies or reports a GPU error outside a request. */
  onShardFailure(listener: (err: Error) => void): void {
    for (const s of this.remoteShards) s.onFailure(listener);
  }

  /**
   * Runs one scheduler step and samples the next token of every sequence whose slice reached its end.
   * 1. Flatten the step into per-token metadata and upload it to every shard (a worker-process shard
   *    sends only the step's changes; its worker rebuilds the same metadata).
   * 2. Record embedding, layers and logits; between the row-parallel matmuls and their consumers the
   *    shards' partial sums are all-reduced on the host (a no-op with one shard).
   * 3. Sample on shard 0 (after gathering vocab-split logits when tp > 1).
   */
  async execute(
    output: SchedulerOutput,
    rowsByRequest: ReadonlyMap<string, SamplingRow>,
    processing: Promise<ReadonlyMap<string, LogitsProcessing>> | null = null,
  ): Promise<RunnerOutput> {
    const samples = new Map<string, SampleResult>();
    if (output.sequences.length === 0) return { samples };
    const meta = buildStepMetadata(output, this.blockSize, this.maxBlocksPerSeq);
    if (meta.shape.numTokens > this.maxTokensPerStep) {
      throw new Error(`step has ${meta.shape.numTokens} tokens, more than the runner's ${this.maxTokensPerStep}`);
    }
    if (meta.shape.numSeqs > this.maxNumSeqs) throw new Error(`step has ${meta.shape.numSeqs} sequences, more than ${this.maxNumSeqs}`);
    const rows = meta.sampledRequestIds.map((id) => {
      const row = rowsByRequest.get(id);
      if (!row) throw new Error(`no sampling row for request ${id}`);
      return row;
    });
    const step = { output, meta, rows };
    for (const shard of this.shards) shard.uploadStep(step);
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
    if (shape.numSampled > 0) {
      const fullLogits = tp > 1 ? await this.gatherLogits(shape.numSampled) : null;
      // The grammar masks were computed on the host while the forward pass ran.
      const byRequest = processing ? await processing : null;
      const rowProcessing = byRequest && byRequest.size > 0 ? meta.sampledRequestIds.map((id) => byRequest.get(id) ?? null) : null;
      const results = await this.shards[0]!.sample(rows, fullLogits, rowProcessing);
      meta.sampledRequestIds.forEach((id, i) => samples.set(id, results[i]!));
    }
    const promptLogprobs = await this.scorePrompts(output);
    if (shape.numSampled === 0 && !promptLogprobs) for (const s of this.shards) s.throwIfFailed();
    return promptLogprobs ? { samples, promptLogprobs } : { samples };
  }

  /**
   * Prompt logprobs of the sequences that want them, from the final hidden states the step left on
   * every shard: lm_head over their rows, at most maxNumSeqs rows at a time (the logits buffer, so
   * memory stays bounded whatever the prompt length), then log-softmax, the target's logprob and rank
   * and the top-k on shard 0's GPU (vocab-split logits are gathered first when tp > 1, as for sampling).
   * Only those numbers are read back. Returns undefined when no sequence scores this step.
   */
  private async scorePrompts(output: SchedulerOutput): Promise<Map<string, PromptLogprobsChunk> | undefined> {
    const rows: number[] = [];
    const targets: number[] = [];
    const owners: { requestId: string; firstIndex: number; numTop: number; first: number; count: number }[] = [];
    let t = 0;
    for (const seq of output.sequences) {
      const want = seq.promptLogprobs;
      if (want && want.targets.length > 0) {
        owners.push({ requestId: seq.requestId, firstIndex: seq.startPosition + 1, numTop: want.numTop, first: rows.length, count: want.targets.length });
        want.targets.forEach((target, i) => {
          rows.push(t + i);
          targets.push(target);
        });
      }
      t += seq.tokenIds.length;
    }
    if (owners.length === 0 && !output.sequences.some((seq) => seq.promptLogprobs)) return undefined;
    const numTop = Math.max(0, ...owners.map((o) => o.numTop));
    const scored: ScoredToken[] = [];
    const chunk = this.maxNumSeqs;
    const tp = this.shards.length;
    for (let first = 0; first < rows.length; first += chunk) {
      const n = Math.min(chunk, rows.length - first);
      const chunkRows = Uint32Array.from(rows.slice(first, first + n));
      for (const s of this.shards) {
        s.begin();
        s.encodeScoreLogits(chunkRows);
        s.submit();
      }
      const fullLogits = tp > 1 ? await this.gatherLogits(n) : null;
      scored.push(...(await this.shards[0]!.scorePrompt(Uint32Array.from(targets.slice(first, first + n)), numTop, fullLogits)));
    }
    const result = new Map<string, PromptLogprobsChunk>();
    for (const seq of output.sequences) if (seq.promptLogprobs) result.set(seq.requestId, { firstIndex: seq.startPosition + 1, entries: [] });
    for (const o of owners) {
      const entries = scored.slice(o.first, o.first + o.count).map((e) => ({ ...e, top: e.top.slice(0, o.numTop) }));
      result.set(o.requestId, { firstIndex: o.firstIndex, entries });
    }
    return result;
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
