// Finding adapters and describing them. Dawn's node binding hands out one adapter per
// requestAdapter() call (the first that matches its adapter= flag), so distinct adapters are
// found by asking with each power preference and de-duplicating by identity. Identical GPUs look
// like one adapter to a process: physical.ts lists them through Mesa's device-select layer.
import { getGpu } from './dawn.js';
import { NoGpuAdapterError } from './errors.js';

export const LLM_LIMITS = [
  'maxBufferSize',
  'maxStorageBufferBindingSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
] as const;

export type LlmLimitName = (typeof LLM_LIMITS)[number];

export interface AdapterDescription {
  index: number;
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  backend: string;
  isFallbackAdapter: boolean;
  limits: Record<LlmLimitName, number>;
  features: string[];
  /** Set when the index is a position in Mesa's physical device list (machines with identical GPUs). */
  physical?: PhysicalGpu;
}

/** One GPU as Mesa's device-select layer lists it (physical.ts). */
export interface PhysicalGpu {
  /** Position in the layer's list: what --devices and `devices` mean on machines with identical GPUs. */
  index: number;
  vendorId: number;
  deviceId: number;
  name: string;
  /** "discrete GPU", "integrated GPU", "virtual GPU", "CPU" or "other". */
  type: string;
  /** "DDDD:BB:DD.F", or null when the driver does not report its bus. */
  pciBus: string | null;
}

/** Features that help LLM kernels; requested whenever the adapter offers them. */
export const WANTED_FEATURES: readonly GPUFeatureName[] = ['shader-f16', 'subgroups', 'timestamp-query'];

export async function requestAdapter(): Promise<GPUAdapter> {
  let adapter: GPUAdapter | null = null;
  let detail = '';
  try {
    adapter = await getGpu().requestAdapter({ powerPreference: 'high-performance' });
  } catch (err) {
    detail = (err as Error).message;
  }
  if (!adapter) throw new NoGpuAdapterError(detail);
  return adapter;
}

function identity(adapter: GPUAdapter): string {
  const i = adapter.info;
  return [i.vendor, i.architecture, i.device, i.description].join('|');
}

/** All distinct adapters this process can reach, in a stable order (index = position). */
export async function enumerateAdapters(): Promise<GPUAdapter[]> {
  const found: GPUAdapter[] = [];
  const seen = new Set<string>();
  const gpu = getGpu();
  for (const powerPreference of ['high-performance', 'low-power'] as const) {
    let adapter: GPUAdapter | null = null;
    try {
      adapter = await gpu.requestAdapter({ powerPreference });
    } catch {
      adapter = null;
    }
    if (adapter && !seen.has(identity(adapter))) {
      seen.add(identity(adapter));
      found.push(adapter);
    }
  }
  if (found.length === 0) throw new NoGpuAdapterError();
  return found;
}

export function describeAdapter(adapter: GPUAdapter, index: number): AdapterDescription {
  const info = adapter.info as GPUAdapterInfo & { backendType?: string; isFallbackAdapter?: boolean };
  const limits = {} as Record<LlmLimitName, number>;
  for (const name of LLM_LIMITS) limits[name] = Number(adapter.limits[name]);
  return {
    index,
    vendor: info.vendor ?? '',
    architecture: info.architecture ?? '',
    device: info.device ?? '',
    description: info.description ?? '',
    backend: info.backendType ?? 'vulkan',
    isFallbackAdapter: Boolean(info.isFallbackAdapter),
    limits,
    features: [...adapter.features].map(String).sort(),
  };
}
