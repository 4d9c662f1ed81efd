// The one Dawn instance of the process. It stays referenced for the life of the process: if the
// object returned by create() is garbage-collected, pending mapAsync calls never resolve and Node
// exits silently with code 0.
import { create, globals } from 'webgpu';

let instance: GPU | null = null;

export interface DawnOptions {
  /** Extra dawn.node flags, e.g. "backend=vulkan" or "adapter=NVIDIA". */
  flags?: string[];
}

export function getGpu(options: DawnOptions = {}): GPU {
  if (instance) return instance;
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  Object.assign(globalThis, globals);
  const flags = options.flags ?? dawnFlagsFromEnv();
  instance = create(flags);
  (globalThis as { __dawnInstance?: GPU }).__dawnInstance = instance;
  return instance;
}

/** WEBGPU_DAWN_FLAGS="backend=vulkan,adapter=llvmpipe" lets operators steer Dawn without code. */
function dawnFlagsFromEnv(): string[] {
  const raw = process.env.WEBGPU_DAWN_FLAGS;
  return raw
    ? raw
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : [];
}
