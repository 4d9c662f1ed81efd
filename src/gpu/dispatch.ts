// The one way kernels record work: bind buffers in binding order, write uniforms into a per-batch
// arena, and dispatch. Kernel wrappers call dispatch(); they never build bind groups themselves
// (dispatch() keeps them per pipeline and bound ranges, so a repeated step creates none).

/** A buffer, or a byte range of one, bound at the binding of its position in the list. */
export type Binding = GPUBuffer | { buffer: GPUBuffer; offset?: number; size?: number };

const UNIFORM_ALIGN = 256;
const PAGE_BYTES = 64 * 1024;

interface Page {
  buffer: GPUBuffer;
  host: Uint8Array;
  used: number;
}

/**
 * Uniform parameters for a batch of dispatches. Each alloc() takes a 256-byte-aligned slice of a
 * host-side page; flush() writes the used pages to the GPU (one writeBuffer each) before the batch is
 * submitted. Queue writes are ordered with submits, so the arena can be refilled for the next batch at once.
 */
export class UniformArena {
  private readonly pages: Page[] = [];
  private current = 0;

  constructor(private readonly device: GPUDevice) {}

  /** Copies `data` into the arena and returns the binding that reads it. */
  alloc(data: ArrayBufferView): Binding {
    const size = Math.ceil(Math.max(data.byteLength, 16) / 16) * 16;
    if (size > PAGE_BYTES) throw new Error(`uniform block of ${size} bytes exceeds the ${PAGE_BYTES}-byte arena page`);
    let page = this.pages[this.current];
    if (page && page.used + size > PAGE_BYTES) {
      this.current++;
      page = this.pages[this.current];
    }
    if (!page) {
      page = {
        buffer: this.device.createBuffer({ label: 'uniform-arena', size: PAGE_BYTES, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST }),
        host: new Uint8Array(PAGE_BYTES),
        used: 0,
      };
      this.pages[this.current] = page;
    }
    const offset = page.used;
    page.host.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), offset);
    page.used = Math.ceil((offset + size) / UNIFORM_ALIGN) * UNIFORM_ALIGN;
    return { buffer: page.buffer, offset, size };
  }

  /** Writes everything allocated since the last flush and starts over. Call before queue.submit. */
  flush(): void {
    for (const page of this.pages) {
      if (page.used === 0) continue;
      this.device.queue.writeBuffer(page.buffer, 0, page.host, 0, page.used);
      page.used = 0;
    }
    this.current = 0;
  }

  destroy(): void {
    for (const page of this.pages) page.buffer.destroy();
    this.pages.length = 0;
  }
}

export function dispatch(
  device: GPUDevice,
  pass: GPUComputePassEncoder,
  pipeline: GPUComputePipeline,
  bindings: readonly Binding[],
  workgroups: readonly [number, number?, number?],
): void {
  let cache = bindGroupCaches.get(device);
  if (!cache) bindGroupCaches.set(device, (cache = new BindGroupCache(device)));
  const bindGroup = cache.get(pipeline, bindings);
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

/**
 * Bind groups by pipeline and bound ranges. A decode step dispatches the same ~130 (pipeline,
 * buffers, uniform-arena offset) combinations every step, and creating a bind group costs ~20 us
 * through the Node binding: ~2.5 ms of host time per step that the GPU waits for (docs/benchmarks.md).
 * Entries hold their buffers alive until the cache is next cleared (when it outgrows MAX_ENTRIES).
 */
class BindGroupCache {
  private static readonly MAX_ENTRIES = 4096;
  private readonly groups = new Map<string, GPUBindGroup>();

  constructor(private readonly device: GPUDevice) {}

  get(pipeline: GPUComputePipeline, bindings: readonly Binding[]): GPUBindGroup {
    let key = String(objectId(pipeline));
    for (const b of bindings) {
      key += b instanceof GPUBuffer ? `|${objectId(b)}` : `|${objectId(b.buffer)}:${b.offset ?? 0}:${b.size ?? ''}`;
    }
    let group = this.groups.get(key);
    if (!group) {
      const entries: GPUBindGroupEntry[] = bindings.map((b, binding) =>
        b instanceof GPUBuffer ? { binding, resource: { buffer: b } } : { binding, resource: { buffer: b.buffer, offset: b.offset ?? 0, size: b.size } },
      );
      group = this.device.createBindGroup({ label: pipeline.label, layout: pipeline.getBindGroupLayout(0), entries });
      if (this.groups.size >= BindGroupCache.MAX_ENTRIES) this.groups.clear();
      this.groups.set(key, group);
    }
    return group;
  }
}

const bindGroupCaches = new WeakMap<GPUDevice, BindGroupCache>();
const objectIds = new WeakMap<object, number>();
let nextObjectId = 1;

function objectId(o: object): number {
  let id = objectIds.get(o);
  if (id === undefined) objectIds.set(o, (id = nextObjectId++));
  return id;
}
