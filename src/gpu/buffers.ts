// Reusable GPU buffers. Readback staging buffers and scratch storage buffers are pooled by
// power-of-two size class so steady-state decoding allocates nothing.

function sizeClass(size: number): number {
  return Math.max(256, 2 ** Math.ceil(Math.log2(size)));
}

export class BufferPool {
  private readonly readbacks = new Map<number, GPUBuffer[]>();
  private readonly scratch = new Map<string, GPUBuffer[]>();
  private readonly live = new Set<GPUBuffer>();

  constructor(private readonly device: GPUDevice) {}

  acquireReadback(size: number): GPUBuffer {
    const cls = sizeClass(size);
    const buffer =
      this.readbacks.get(cls)?.pop() ??
      this.device.createBuffer({ label: `readback-${cls}`, size: cls, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.live.add(buffer);
    return buffer;
  }

  releaseReadback(buffer: GPUBuffer): void {
    this.live.delete(buffer);
    const list = this.readbacks.get(buffer.size) ?? [];
    list.push(buffer);
    this.readbacks.set(buffer.size, list);
  }

  /** A storage buffer of at least `size` bytes; contents are undefined. */
  acquire(size: number, usage: GPUBufferUsageFlags = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST): GPUBuffer {
    const cls = sizeClass(size);
    const key = `${cls}:${usage}`;
    const buffer = this.scratch.get(key)?.pop() ?? this.device.createBuffer({ label: `scratch-${cls}`, size: cls, usage });
    this.live.add(buffer);
    return buffer;
  }

  release(buffer: GPUBuffer): void {
    this.live.delete(buffer);
    const key = `${buffer.size}:${buffer.usage}`;
    const list = this.scratch.get(key) ?? [];
    list.push(buffer);
    this.scratch.set(key, list);
  }

  destroy(): void {
    for (const list of [...this.readbacks.values(), ...this.scratch.values()]) for (const b of list) b.destroy();
    for (const b of this.live) b.destroy();
    this.readbacks.clear();
    this.scratch.clear();
    this.live.clear();
  }
}

/**
 * A storage buffer the host can write and read back. A function, not a constant: Dawn installs the
 * GPUBufferUsage global on first use, so it cannot be read at module load.
 */
export function storageUsage(): GPUBufferUsageFlags {
  return GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
}
