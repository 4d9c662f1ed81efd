// Loading shards from a checkpoint: the one path for in-process shards (every rank in this process,
// the checkpoint streamed once into every rank's builder) and for a worker process (its own rank).
// 1. Stream the canonical tensors once; every target's ShardWeightBuilder takes its slices.
// 2. Build each shard (kernels, buffers, sampler on rank 0) with the same parameters, from the plan.
import type { GpuDevice } from '../gpu/index.js';
import type { ModelConfig } from '../checkpoint/config.js';
import { ropeInvFreq } from '../checkpoint/rope.js';
import { SafetensorsReader } from '../checkpoint/safetensors.js';
import { loadCanonicalWeights } from '../checkpoint/weights.js';
import { ConsoleLoadProgress } from '../common/progress.js';
import type { MemoryPlan } from './memory.js';
import type { RunnerOptions } from './options.js';
import { ShardWeightBuilder } from './shard-weights.js';
import { createShard, type Shard, type ShardBuildOptions } from './shard.js';
import type { ShardLayout } from './sharding.js';

/** One shard to load: the device it lives on and its slice of the model. */
export interface ShardTarget {
  gpu: GpuDevice;
  layout: ShardLayout;
}

/** The build parameters every shard of a runner shares (sizes from the memory plan, RoPE from the config). */
export function shardBuildOptions(config: ModelConfig, plan: MemoryPlan, options: RunnerOptions): ShardBuildOptions {
  const { invFreq, attentionScaling } = ropeInvFreq(config.rope);
  return {
    blockSize: plan.blockSize,
    numBlocks: plan.numBlocks,
    maxTokensPerStep: plan.maxTokensPerStep,
    maxNumSeqs: options.maxNumSeqs,
    maxBlocksPerSeq: plan.maxBlocksPerSeq,
    invFreq,
    attentionScaling,
    kvCacheDtype: options.kvCacheDtype,
  };
}

/** Loads one shard per target, in target order, reading the checkpoint once for all of them. */
export async function loadShards(
  modelDir: string,
  config: ModelConfig,
  targets: readonly ShardTarget[],
  plan: MemoryPlan,
  options: RunnerOptions,
): Promise<Shard[]> {
  const builders = targets.map((t) => new ShardWeightBuilder(t.gpu, config, t.layout, options.dtype));
  const reader = await SafetensorsReader.open(modelDir);
  try {
    const progress = options.progress ? new ConsoleLoadProgress() : undefined;
    await loadCanonicalWeights(
      reader,
      config,
      options.dtype,
      (t) => {
        for (const b of builders) b.add(t);
      },
      progress,
    );
  } finally {
    await reader.close();
  }
  const build = shardBuildOptions(config, plan, options);
  const shards = await Promise.all(targets.map((t, i) => createShard(t.gpu, config, t.layout, builders[i]!.finish(), build)));
  for (const t of targets) await t.gpu.sync();
  return shards;
}
