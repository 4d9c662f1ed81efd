// The one way kernels record work: bind buffers in binding order, write uniforms into a per-step
// arena, and dispatch. Kernel wrappers call dispatch(); they never build bind groups themselves.

/** A buffer, or a byte range of one, bound at the binding of its position in the list. */
export type Binding = GPUBuffer | { buffer: GPUBuffer; offset?: number; size?: number };

const UNIFORM_ALIGN = 256;

/**
 * Uniform parameters for a batch of dispatches. Each alloc() takes a 256-byte-aligned slice of one
 * host array; flush() writes it to the GPU with a single writeBuffer before the batch is submitted.
 * Because queue writes are ordered with submits, the arena can be reused for the next batch at once.
 */
export class UniformArena {
  private buffer: GPUBuffer;
  private host: Uint8Array;
  private used = 0;

  constructor(
    private readonly device: GPUDevice,
    private capacity = 64 * 1024,
  ) {
    this.buffer = this.create(capacity);
    this.host = new Uint8Array(capacity);
  }

  private create(capacity: number): GPUBuffer {
    return this.device.createBuffer({ label: 'uniform-arena', size: capacity, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  }

  /** Copies `data` into the arena and returns the binding that reads it. */
  alloc(data: ArrayBufferView): Binding {
    const size = Math.ceil(data.byteLength / 16) * 16;
    if (this.used + size > this.capacity) this.grow(this.used + size);
    const offset = this.used;
    this.host.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), offset);
    this.used = Math.ceil((offset + size) / UNIFORM_ALIGN) * UNIFORM_ALIGN;
    return { buffer: this.buffer, offset, size };
  }

  private grow(needed: number): void {
    // Growing mid-batch would orphan earlier bindings, so the old buffer stays alive until flush.
    if (this.used > 0) throw new Error(`uniform arena overflow (${needed} > ${this.capacity} bytes): flush() more often or construct a larger arena`);
    this.capacity = Math.max(needed, this.capacity * 2);
    this.buffer.destroy();
    this.buffer = this.create(this.capacity);
    this.host = new Uint8Array(this.capacity);
  }

  /** Writes everything allocated since the last flush and starts over. Call before queue.submit. */
  flush(): void {
    if (this.used === 0) return;
    this.device.queue.writeBuffer(this.buffer, 0, this.host, 0, this.used);
    this.used = 0;
  }

  destroy(): void {
    this.buffer.destroy();
  }
}

export function dispatch(
  device: GPUDevice,
  pass: GPUComputePassEncoder,
  pipeline: GPUComputePipeline,
  bindings: readonly Binding[],
  workgroups: readonly [number, number?, number?],
): void {
  const entries: GPUBindGroupEntry[] = bindings.map((b, binding) =>
    'buffer' in b && !(b instanceof GPUBuffer)
      ? { binding, resource: { buffer: b.buffer, offset: b.offset ?? 0, size: b.size } }
      : { binding, resource: { buffer: b as GPUBuffer } },
  );
  const bindGroup = device.createBindGroup({ label: pipeline.label, layout: pipeline.getBindGroupLayout(0), entries });
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  const [x, y = 1, z = 1] = workgroups;
  pass.dispatchWorkgroups(x, y, z);
}

/** Splits a 1-D workgroup count over x and y when it exceeds the per-dimension limit. */
export function grid1d(numWorkgroups: number, maxPerDim = 65535): [number, number] {
  if (numWorkgroups <= maxPerDim) return [Math.max(1, numWorkgroups), 1];
  const y = Math.ceil(numWorkgroups / maxPerDim);
  return [Math.ceil(numWorkgroups / y), y];
}
