// A Dawn device with what every kernel needs: a pipeline cache, a buffer pool, upload/readback,
// error surfacing that names the kernel, and device-loss reporting.
import { describeAdapter, enumerateAdapters, requestAdapter, WANTED_FEATURES, type AdapterDescription } from './adapters.js';
import { DeviceLostError, GpuError } from './errors.js';
import { PipelineCache } from './pipelines.js';
import { BufferPool } from './buffers.js';
import { WaitPacer } from './wait-pacer.js';

export interface DeviceHealth {
  healthy: boolean;
  lostReason?: string;
}

type Listener = (err: Error) => void;

export class GpuDevice {
  readonly pipelines: PipelineCache;
  readonly pool: BufferPool;
  readonly features: ReadonlySet<string>;
  readonly hasF16: boolean;
  readonly hasSubgroups: boolean;
  /** A CPU implementation (lavapipe, SwiftShader): kernels pick shapes measured there instead of GPU shapes. */
  readonly isSoftware: boolean;
  readonly limits: GPUSupportedLimits;
  /** Sleeps through most of a known wait instead of letting Dawn's event polling spin a core (wait-pacer.ts). */
  readonly pacer: WaitPacer;
  private pendingError: GpuError | null = null;
  private lost: DeviceLostError | null = null;
  private readonly lostListeners = new Set<Listener>();

  constructor(
    readonly device: GPUDevice,
    readonly adapter: GPUAdapter,
    readonly adapterIndex: number,
    readonly label: string,
  ) {
    this.features = new Set([...device.features].map(String));
    this.hasF16 = this.features.has('shader-f16');
    this.hasSubgroups = this.features.has('subgroups');
    this.isSoftware = adapter.info.architecture === 'software' || /llvmpipe|swiftshader/i.test(adapter.info.description);
    this.limits = device.limits;
    this.pacer = new WaitPacer({ enabled: waitPacingEnabled(this.isSoftware) });
    this.pipelines = new PipelineCache(device, this.features);
    this.pool = new BufferPool(device);
    device.onuncapturederror = (ev: GPUUncapturedErrorEvent) => {
      // Dawn puts the labels of the objects involved (pipelines are labelled with the kernel name)
      // into its message; surface it on the next sync point as a thrown error.
      const kernel = /\[(?:ComputePipeline|BindGroupDescriptor|BindGroup) "([^"]+)"\]/.exec(ev.error.message)?.[1];
      this.pendingError ??= new GpuError(`${this.label}: kernel ${kernel ?? '(unknown)'}: ${ev.error.message}`, kernel);
    };
    void device.lost.then((info) => {
      if (info.reason === 'destroyed') return;
      this.lost = new DeviceLostError(this.label, String(info.reason), info.message);
      for (const listener of this.lostListeners) listener(this.lost);
    });
  }

  get health(): DeviceHealth {
    return this.lost ? { healthy: false, lostReason: this.lost.message } : { healthy: true };
  }

  onLost(listener: Listener): () => void {
    this.lostListeners.add(listener);
    return () => this.lostListeners.delete(listener);
  }

  /** Throws the first uncaptured GPU error or device loss seen since the last check. */
  throwIfFailed(): void {
    if (this.lost) throw this.lost;
    const err = this.pendingError;
    if (err) {
      this.pendingError = null;
      throw err;
    }
  }

  createBuffer(label: string, size: number, usage: GPUBufferUsageFlags): GPUBuffer {
    return this.device.createBuffer({ label, size: align(Math.max(size, 4), 4), usage });
  }

  /** A storage buffer initialised from `data` (padded to 4 bytes). */
  upload(label: string, data: ArrayBufferView, extraUsage: GPUBufferUsageFlags = 0): GPUBuffer {
    const size = align(Math.max(data.byteLength, 4), 4);
    const buffer = this.device.createBuffer({
      label,
      size,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC | extraUsage,
      mappedAtCreation: true,
    });
    new Uint8Array(buffer.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    buffer.unmap();
    return buffer;
  }

  write(buffer: GPUBuffer, data: ArrayBufferView, offset = 0): void {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const padded = bytes.byteLength % 4 === 0 ? bytes : padTo4(bytes);
    this.device.queue.writeBuffer(buffer, offset, padded);
  }

  /**
   * Copies `byteLength` bytes of `buffer` back to the host. `waitKind` names what the readback waits
   * for (submitted work of a repeating cost) and `waitWork` how much of it, so the pacer can sleep
   * through it (WaitPacer.wait); omit them for one-offs.
   */
  async read(buffer: GPUBuffer, byteLength = buffer.size, offset = 0, waitKind?: string, waitWork = 1): Promise<ArrayBuffer> {
    const encoder = this.device.createCommandEncoder({ label: 'readback' });
    return this.submitAndRead(encoder, buffer, byteLength, offset, waitKind, waitWork, `${this.label}: readback`);
  }

  /**
   * Appends a copy of `byteLength` bytes of `buffer` to `encoder` (so kernels read their results
   * back in the same submission as their passes), submits it and waits, paced like read().
   * Flush any uniform arena the passes use first. A failed map is reported as "`what` failed".
   */
  async submitAndRead(
    encoder: GPUCommandEncoder,
    buffer: GPUBuffer,
    byteLength: number,
    offset = 0,
    waitKind?: string,
    waitWork = 1,
    what = `${this.label}: readback`,
    kernel?: string,
  ): Promise<ArrayBuffer> {
    const size = align(byteLength, 4);
    const staging = this.pool.acquireReadback(size);
    try {
      encoder.copyBufferToBuffer(buffer, offset, staging, 0, size);
      this.device.queue.submit([encoder.finish()]);
      try {
        const map = () => staging.mapAsync(GPUMapMode.READ, 0, size);
        await (waitKind === undefined ? map() : this.pacer.wait(waitKind, map, waitWork));
      } catch (err) {
        this.throwIfFailed();
        throw new GpuError(`${what} failed: ${(err as Error).message}`, kernel);
      }
      const copy = staging.getMappedRange(0, size).slice(0, byteLength);
      staging.unmap();
      this.throwIfFailed();
      return copy;
    } finally {
      this.pool.releaseReadback(staging);
    }
  }

  async readF32(buffer: GPUBuffer, count: number, offsetElems = 0, waitKind?: string, waitWork = 1): Promise<Float32Array> {
    return new Float32Array(await this.read(buffer, count * 4, offsetElems * 4, waitKind, waitWork));
  }

  async readU32(buffer: GPUBuffer, count: number, offsetElems = 0): Promise<Uint32Array> {
    return new Uint32Array(await this.read(buffer, count * 4, offsetElems * 4));
  }

  /** Waits until all submitted work has finished, then surfaces any GPU error. */
  async sync(): Promise<void> {
    await this.device.queue.onSubmittedWorkDone();
    this.throwIfFailed();
  }

  destroy(): void {
    this.pool.destroy();
    this.device.destroy();
  }
}

export interface OpenDeviceOptions {
  /** Allow the same adapter index more than once (each gets its own requestAdapter()); tests use it to emulate shards. */
  allowRepeatedAdapters?: boolean;
}

export interface OpenedDeviceInfo extends AdapterDescription {
  featuresInUse: string[];
}

/**
 * Opens one device per requested adapter index. An adapter can create one device only, so a
 * repeated index gets a fresh adapter from another requestAdapter() call.
 */
export async function openDevices(indices: readonly number[], options: OpenDeviceOptions = {}): Promise<GpuDevice[]> {
  if (indices.length === 0) throw new Error('openDevices: no device indices given');
  const adapters = await enumerateAdapters();
  const seen = new Set<number>();
  const devices: GpuDevice[] = [];
  for (const index of indices) {
    if (!Number.isInteger(index) || index < 0 || index >= adapters.length) {
      throw new Error(
        `device index ${index} does not exist: this machine has ${adapters.length} adapter(s), indices 0..${adapters.length - 1}; see \`node dist/cli.js devices\``,
      );
    }
    if (seen.has(index) && !options.allowRepeatedAdapters) {
      throw new Error(`device index ${index} is listed twice; pass the same index twice only to emulate shards on one adapter`);
    }
    const adapter = seen.has(index) ? await requestAdapterLike(adapters[index]!) : adapters[index]!;
    seen.add(index);
    devices.push(await openDevice(adapter, index, `gpu${devices.length}`));
  }
  return devices;
}

async function requestAdapterLike(like: GPUAdapter): Promise<GPUAdapter> {
  const adapter = await requestAdapter();
  if (adapter.info.description !== like.info.description) {
    throw new Error(`could not get another adapter like "${like.info.description}"`);
  }
  return adapter;
}

export async function openDevice(adapter: GPUAdapter, adapterIndex = 0, label = 'gpu0'): Promise<GpuDevice> {
  const requiredFeatures = WANTED_FEATURES.filter((f) => adapter.features.has(f));
  const requiredLimits: Record<string, number> = {};
  for (const key of limitNames(adapter.limits)) {
    const value = (adapter.limits as unknown as Record<string, unknown>)[key];
    if (typeof value === 'number') requiredLimits[key] = value;
  }
  const device = await adapter.requestDevice({ label, requiredFeatures, requiredLimits });
  return new GpuDevice(device, adapter, adapterIndex, label);
}

/** Opens the default adapter's device: the common case for tests and single-GPU serving. */
export async function openDefaultDevice(): Promise<GpuDevice> {
  return openDevice(await requestAdapter());
}

export function describeOpened(dev: GpuDevice): OpenedDeviceInfo {
  return { ...describeAdapter(dev.adapter, dev.adapterIndex), featuresInUse: [...dev.features].sort() };
}

function limitNames(limits: GPUSupportedLimits): string[] {
  const names = new Set<string>();
  for (let proto: object | null = limits; proto && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
    for (const key of Object.getOwnPropertyNames(proto)) if (key !== 'constructor') names.add(key);
  }
  return [...names];
}

export function align(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

function padTo4(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(align(bytes.byteLength, 4));
  out.set(bytes);
  return out;
}

/**
 * Wait pacing is on for software adapters (measured there: docs/benchmarks.md) unless
 * WEBGPU_LLM_WAIT_PACING is 0; 1 turns it on for any adapter.
 */
function waitPacingEnabled(isSoftware: boolean): boolean {
  const env = process.env.WEBGPU_LLM_WAIT_PACING;
  if (env === '0' || env === '1') return env === '1';
  return isSoftware;
}
