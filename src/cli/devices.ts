// `devices`: what adapters Dawn sees and what they offer an LLM.
import { formatBytes } from '../common/bytes.js';
import { LLM_LIMITS } from '../gpu/adapters.js';
import { describeAllDevices } from '../gpu/physical.js';

export async function runDevices(options: { json: boolean }): Promise<void> {
  // On machines with identical GPUs this probes each physical GPU in a pinned child process.
  const described = await describeAllDevices();
  if (options.json) {
    process.stdout.write(`${JSON.stringify(described, null, 2)}\n`);
    return;
  }
  for (const d of described) {
    process.stdout.write(`[${d.index}] ${d.description || d.device}\n`);
    process.stdout.write(`    vendor: ${d.vendor}  architecture: ${d.architecture}  device: ${d.device}\n`);
    process.stdout.write(`    backend: ${d.backend}${d.isFallbackAdapter ? ' (software fallback adapter)' : ''}\n`);
    if (d.physical?.pciBus) process.stdout.write(`    pci: ${d.physical.pciBus}\n`);
    for (const name of LLM_LIMITS) process.stdout.write(`    ${name}: ${formatLimit(d.limits[name])}\n`);
    process.stdout.write(`    features: ${d.features.join(', ')}\n`);
  }
}

function formatLimit(n: number): string {
  if (n >= 1 << 20) return `${n} (${formatBytes(n, 'binary')})`;
  return String(n);
}
