// Run as a child process by physical.ts: asks Dawn for an adapter and prints its description as JSON
// (or "null"). Under MESA_VK_DEVICE_SELECT=list, Mesa's layer prints its device list and exits first.
import { describeAdapter } from './adapters.js';
import { getGpu } from './dawn.js';

const adapter = await getGpu().requestAdapter({ powerPreference: 'high-performance' });
const description = adapter ? describeAdapter(adapter, 0) : null;
if (description) {
  const { index: _index, ...rest } = description;
  process.stdout.write(JSON.stringify(rest));
} else {
  process.stdout.write('null');
}
process.exit(0);
