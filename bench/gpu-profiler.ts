// GPU timestamp profiling: wraps compute passes with timestamp writes and reports per-label
// durations. Only exists when the device has the timestamp-query feature.

export interface PassTiming {
  label: string;
  ms: number;
}

export class Profiler {
  private readonly capacity = 512;
  private readonly querySet: GPUQuerySet;
  private readonly resolveBuffer: GPUBuffer;
  private readonly readBuffer: GPUBuffer;
  private labels: string[] = [];

  constructor(private readonly device: GPUDevice) {
    this.querySet = device.createQuerySet({ type: 'timestamp', count: this.capacity * 2 });
    this.resolveBuffer = device.createBuffer({
      size: this.capacity * 2 * 8,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    this.readBuffer = device.createBuffer({ size: this.capacity * 2 * 8, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  }

  /** Pass descriptor fields that time this pass, or {} when the profiler is full. */
  timestampWrites(label: string): { timestampWrites?: GPUComputePassTimestampWrites } {
    if (this.labels.length >= this.capacity) return {};
    const i = this.labels.length;
    this.labels.push(label);
    return { timestampWrites: { querySet: this.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } };
  }

  /** Resolves all timed passes since the last collect() and returns their durations. */
  async collect(): Promise<PassTiming[]> {
    const n = this.labels.length;
    if (n === 0) return [];
    const encoder = this.device.createCommandEncoder({ label: 'profiler-resolve' });
    encoder.resolveQuerySet(this.querySet, 0, 2 * n, this.resolveBuffer, 0);
    encoder.copyBufferToBuffer(this.resolveBuffer, 0, this.readBuffer, 0, 2 * n * 8);
    this.device.queue.submit([encoder.finish()]);
    await this.readBuffer.mapAsync(GPUMapMode.READ, 0, 2 * n * 8);
    const stamps = new BigUint64Array(this.readBuffer.getMappedRange(0, 2 * n * 8).slice(0));
    this.readBuffer.unmap();
    const labels = this.labels;
    this.labels = [];
    return labels.map((label, i) => ({ label, ms: Number(stamps[2 * i + 1]! - stamps[2 * i]!) / 1e6 }));
  }

  destroy(): void {
    this.querySet.destroy();
    this.resolveBuffer.destroy();
    this.readBuffer.destroy();
  }
}
