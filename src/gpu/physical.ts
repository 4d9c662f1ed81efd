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

import { execFile } from 'node:child_process';
import { childEntry } from '../common/child-entry.js';
import { describeAdapter, enumerateAdapters, type AdapterDescription, type PhysicalGpu } from './adapters.js';

export type { PhysicalGpu } from './adapters.js';
import { NoGpuAdapterError } from './errors.js';

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

export function vidDid(gpu: PhysicalGpu): string {
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

function runProbe(env: EnvPatch): Promise<{ stdout: string; stderr: string }> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' };
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete childEnv[k];
    else childEnv[k] = v;
  }
  return new Promise((resolve, reject) => {
    const probe = childEntry(import.meta.url, 'probe-adapter');
    execFile(process.execPath, [...probe.execArgv, probe.path], { env: childEnv, timeout: 30_000, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
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
