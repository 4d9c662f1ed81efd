// Where each tensor-parallel shard runs: in this process, or in a worker process pinned to its GPU.
import { NoGpuAdapterError } from '../../gpu/errors.js';
import { hasIdenticalGpus, listPhysicalGpus, pinEnvironment, type EnvPatch, type PhysicalGpu } from '../../gpu/physical.js';

/** Where one tensor-parallel shard runs when shards live in worker processes. */
export interface ShardPlacement {
  rank: number;
  /** The index the user gave (--devices). */
  deviceIndex: number;
  /** The adapter index to open inside the worker (0 when the environment pins the GPU). */
  adapterIndex: number;
  env: EnvPatch;
  /** For messages: "shard 1 (GPU 1 NVIDIA H100 0000:19:00.0)". */
  label: string;
}

/**
 * Decides whether shards need worker processes and, if so, how each is pinned.
 * 1. With identical GPUs on the machine, indices are positions in the physical list and every
 *    shard runs in a worker pinned to its GPU (one process cannot address the twins).
 * 2. Otherwise workers only when `force` (--shard-processes); indices keep today's meaning and a
 *    worker opens that adapter index itself.
 * Returns null for today's in-process shards.
 */
export function planShardPlacement(indices: readonly number[], physical: readonly PhysicalGpu[] | null, force: boolean): ShardPlacement[] | null {
  const pinned = physical !== null && hasIdenticalGpus(physical);
  if (!pinned && !force) return null;
  return indices.map((deviceIndex, rank) => {
    if (!pinned) return { rank, deviceIndex, adapterIndex: deviceIndex, env: {}, label: `shard ${rank} (device ${deviceIndex})` };
    const gpu = physical[deviceIndex];
    if (!gpu) {
      throw new NoGpuAdapterError(
        `device index ${deviceIndex} does not exist: this machine has ${physical.length} GPU(s), indices 0..${physical.length - 1}; see \`node dist/cli.js devices\``,
      );
    }
    const where = gpu.pciBus ? ` ${gpu.pciBus}` : '';
    return { rank, deviceIndex, adapterIndex: 0, env: pinEnvironment(gpu, physical), label: `shard ${rank} (GPU ${deviceIndex} ${gpu.name}${where})` };
  });
}

/** Runs planShardPlacement with the machine's physical list, listing only when it can matter. */
export async function shardPlacementFor(indices: readonly number[], force: boolean): Promise<ShardPlacement[] | null> {
  // A lone index 0 is today's default adapter; skip the ~0.1-1 s listing child for it.
  if (!force && indices.every((i) => i === 0) && indices.length === 1) return null;
  return planShardPlacement(indices, await listPhysicalGpus(), force);
}
