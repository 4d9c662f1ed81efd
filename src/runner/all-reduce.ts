// Host-side all-reduce over shards: read every shard's partial sums (all readbacks in flight at once),
// add them on the host, write the total back to every shard. WebGPU devices cannot see each other's
// memory, so this is the only exchange available; its latency decides how tensor parallelism scales.
// Shards may live in this process or in workers (ShardHandle); the sum is the same.
import type { ExchangeBufferName, ShardHandle } from './shard.js';

export class AllReducer {
  /** Wall time inside sum(), including the wait for each shard's queued work to finish. */
  totalMs = 0;
  /** Host-only part: adding the partial sums and queueing the writes. */
  hostMs = 0;
  numCalls = 0;
  bytesPerCall = 0;
  private sum32 = new Float32Array(0);

  constructor(private readonly shards: readonly ShardHandle[]) {}

  /** Afterwards every shard's buffer `name` holds the elementwise sum of its first `count` floats. */
  async sum(name: ExchangeBufferName, count: number): Promise<void> {
    const t0 = performance.now();
    const parts = await Promise.all(this.shards.map((s) => s.read(name, count)));
    const t1 = performance.now();
    if (this.sum32.length < count) this.sum32 = new Float32Array(count);
    const total = this.sum32.subarray(0, count);
    total.set(parts[0]!);
    for (let p = 1; p < parts.length; p++) {
      const part = parts[p]!;
      for (let i = 0; i < count; i++) total[i]! += part[i]!;
    }
    for (const s of this.shards) s.write(name, total);
    const t2 = performance.now();
    this.hostMs += t2 - t1;
    this.totalMs += t2 - t0;
    this.numCalls++;
    this.bytesPerCall = count * 4;
  }
}
