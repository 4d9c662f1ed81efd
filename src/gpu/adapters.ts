// Finding adapters and describing them. Dawn's node binding hands out one adapter per
// requestAdapter() call (the first that matches its adapter= flag), so distinct adapters are
// found by asking with each power preference and de-duplicating by identity. Identical GPUs look
// like one adapter to a process; Mesa's device-select Vulkan layer lists them all and pins a child
// process to one of them (the second half of this file).
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
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

// ---------------------------------------------------------------------------------------------
// Physical GPUs through Mesa's device-select layer (VkLayer_MESA_device_select, installed with
// mesa-vulkan-drivers and loaded in front of every vendor's ICD, NVIDIA's and AMD's included).
// - MESA_VK_DEVICE_SELECT=list makes the first vkEnumeratePhysicalDevices print
//     selectable devices:
//       GPU 0: 10de:2330 "NVIDIA H100 80GB HBM3" discrete GPU 0000:18:00.0
//   to stderr and exit(0). vid:did are hex; the PCI address is there only when the driver offers
//   VK_EXT_pci_bus_info (lavapipe does not).
// - DRI_PRIME=pci-DDDD_BB_DD_F makes that bus the default device, MESA_VK_DEVICE_SELECT=vid:did the
//   first device with those ids (it is read before DRI_PRIME, so it must be unset for a bus pin),
//   and MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE=1 hides every other device, so Dawn in that
//   process can only find the pinned GPU.

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

/** Environment changes for a child process; undefined deletes the variable. */
export type EnvPatch = Record<string, string | undefined>;

const GPU_LINE = /^\s*GPU (\d+): ([0-9a-f]+):([0-9a-f]+) "(.*)" (.*?)(?: ([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-9a-f]))?\s*$/i;

/** Parses MESA_VK_DEVICE_SELECT=list output; null when the layer did not print its list. */
export function parseDeviceSelectList(text: string): PhysicalGpu[] | null {
  const lines = text.split('\n');
  const start = lines.findIndex((l) => l.trim() === 'selectable devices:');
  if (start < 0) return null;
  const gpus: PhysicalGpu[] = [];
  for (const line of lines.slice(start + 1)) {
    const m = GPU_LINE.exec(line);
    if (!m) break; // the list ends at the first other line (e.g. a second "selectable devices:")
    const [, index, vid, did, name, type, domain, bus, dev, fn] = m;
    gpus.push({
      index: Number(index),
      vendorId: parseInt(vid!, 16),
      deviceId: parseInt(did!, 16),
      name: name!,
      type: type!.trim(),
      pciBus: domain ? `${domain}:${bus}:${dev}.${fn}` : null,
    });
  }
  return gpus;
}

function vidDid(gpu: PhysicalGpu): string {
  return `${gpu.vendorId.toString(16)}:${gpu.deviceId.toString(16)}`;
}

/** True when two GPUs share vendor and device ids: one process cannot tell them apart. */
export function hasIdenticalGpus(gpus: readonly PhysicalGpu[]): boolean {
  return new Set(gpus.map(vidDid)).size < gpus.length;
}

/** The environment that leaves `gpu` as the only Vulkan device a process sees. */
export function pinEnvironment(gpu: PhysicalGpu, all: readonly PhysicalGpu[]): EnvPatch {
  const force = { MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE: '1', NODEVICE_SELECT: undefined };
  if (gpu.pciBus) {
    const [domain, bus, devFn] = gpu.pciBus.split(':') as [string, string, string];
    const [dev, fn] = devFn.split('.') as [string, string];
    // The layer formats the function as %1u (decimal).
    return { ...force, MESA_VK_DEVICE_SELECT: undefined, DRI_PRIME: `pci-${domain}_${bus}_${dev}_${parseInt(fn, 16)}` };
  }
  const twin = all.find((g) => g.index !== gpu.index && vidDid(g) === vidDid(gpu));
  if (twin) {
    throw new NoGpuAdapterError(
      `GPUs ${gpu.index} and ${twin.index} are both "${gpu.name}" (${vidDid(gpu)}) and the driver reports no PCI bus ` +
        '(VK_EXT_pci_bus_info), so no process can pick one of them; update the Vulkan driver or use only one of them',
    );
  }
  return { ...force, DRI_PRIME: undefined, MESA_VK_DEVICE_SELECT: vidDid(gpu) };
}

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

// A tiny ESM program run in a child: asks Dawn for an adapter and prints its description as JSON.
// Under MESA_VK_DEVICE_SELECT=list the layer prints its list and exits before that.
function probeScript(): string {
  const webgpu = pathToFileURL(createRequire(import.meta.url).resolve('webgpu')).href;
  return `
const { create, globals } = await import(${JSON.stringify(webgpu)});
Object.assign(globalThis, globals);
const flags = (process.env.WEBGPU_DAWN_FLAGS ?? '').split(',').map((s) => s.trim()).filter(Boolean);
const gpu = create(flags);
const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
if (!adapter) { process.stdout.write('null'); process.exit(0); }
const i = adapter.info;
const limits = {};
for (const name of ${JSON.stringify(LLM_LIMITS)}) limits[name] = Number(adapter.limits[name]);
process.stdout.write(JSON.stringify({ vendor: i.vendor ?? '', architecture: i.architecture ?? '', device: i.device ?? '',
  description: i.description ?? '', backend: i.backendType ?? 'vulkan', isFallbackAdapter: Boolean(i.isFallbackAdapter),
  limits, features: [...adapter.features].map(String).sort() }));
process.exit(0);
`;
}

function runProbe(env: EnvPatch): Promise<{ stdout: string; stderr: string }> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' };
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete childEnv[k];
    else childEnv[k] = v;
  }
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--input-type=module', '-e', probeScript()], { env: childEnv, timeout: 30_000, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err && !/selectable devices:/.test(stderr)) reject(new Error(`GPU probe failed: ${err.message}\n${stderr}`));
      else resolve({ stdout, stderr });
    });
  });
}

/** The physical GPUs as Mesa's device-select layer lists them; null without the layer (or no Vulkan). */
export async function listPhysicalGpus(): Promise<PhysicalGpu[] | null> {
  try {
    const { stderr } = await runProbe({ MESA_VK_DEVICE_SELECT: 'list' });
    return parseDeviceSelectList(stderr);
  } catch {
    return null;
  }
}

/**
 * What `devices` shows: on machines with identical GPUs, every physical GPU (each described by a
 * child pinned to it, index = position in the physical list); otherwise today's in-process adapters.
 */
export async function describeAllDevices(): Promise<AdapterDescription[]> {
  const physical = await listPhysicalGpus();
  if (!physical || !hasIdenticalGpus(physical)) return (await enumerateAdapters()).map((a, i) => describeAdapter(a, i));
  return Promise.all(
    physical.map(async (gpu) => {
      let env: EnvPatch;
      try {
        env = pinEnvironment(gpu, physical);
      } catch {
        env = { MESA_VK_DEVICE_SELECT: vidDid(gpu), MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE: '1' };
      }
      const { stdout } = await runProbe(env);
      const probed = JSON.parse(stdout) as Omit<AdapterDescription, 'index' | 'physical'> | null;
      if (!probed) throw new NoGpuAdapterError(`GPU ${gpu.index} (${gpu.name}) is listed by Vulkan but Dawn found no adapter on it`);
      return { index: gpu.index, ...probed, physical: gpu };
    }),
  );
}
