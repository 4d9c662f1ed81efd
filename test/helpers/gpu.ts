// Shared helpers for GPU tests: one device per test file, random data, closeness checks, and
// running a single kernel call end to end.
import { openDefaultDevice, UniformArena, type GpuDevice } from '../../src/gpu/index.js';

let shared: Promise<GpuDevice> | null = null;

/** The test file's device (created once; kept referenced so Dawn stays alive). */
export function testDevice(): Promise<GpuDevice> {
  shared ??= openDefaultDevice();
  return shared;
}

/**
 * `gpu` as a device whose limits report `overrides` instead (the same Dawn device underneath): lets a
 * test take the path a small-limit device takes, e.g. splitting across bindings, on any device. Only
 * lower limits are meaningful: Dawn still validates against the real ones.
 */
export function withLimits(gpu: GpuDevice, overrides: Partial<Record<keyof GPUSupportedLimits, number>>): GpuDevice {
  const limits: Record<string, unknown> = {};
  for (let proto: object | null = gpu.limits; proto && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
    for (const key of Object.getOwnPropertyNames(proto)) {
      if (key !== 'constructor' && !(key in limits)) limits[key] = (gpu.limits as unknown as Record<string, unknown>)[key];
    }
  }
  for (const [key, value] of Object.entries(overrides)) {
    const real = limits[key];
    if (typeof real !== 'number' || value === undefined || value > real) throw new Error(`withLimits: ${key} ${value} is not a lower ${key} (device: ${real})`);
    limits[key] = value;
  }
  return Object.create(gpu, { limits: { value: limits as unknown as GPUSupportedLimits, enumerable: true } }) as GpuDevice;
}

/** Records `record` into one compute pass, submits it and waits for completion. */
export async function runPass(gpu: GpuDevice, record: (pass: GPUComputePassEncoder, uniforms: UniformArena) => void): Promise<void> {
  const uniforms = new UniformArena(gpu.device);
  const encoder = gpu.device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  record(pass, uniforms);
  pass.end();
  uniforms.flush();
  gpu.device.queue.submit([encoder.finish()]);
  await gpu.sync();
  uniforms.destroy();
}

/** Deterministic pseudo-random numbers (mulberry32) so failures reproduce. */
export { rng } from '../support/random.js';
import { rng } from '../support/random.js';

export function randomF32(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() * 2 - 1) * scale;
  return out;
}

/** Largest |a-b| / (atol + rtol*|b|) over all elements; <= 1 means close. */
export function closeness(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, atol = rtol): number {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} != ${expected.length}`);
  let worst = 0;
  for (let i = 0; i < actual.length; i++) {
    const e = expected[i]!;
    const ratio = Math.abs(actual[i]! - e) / (atol + rtol * Math.abs(e));
    if (!(ratio <= worst)) worst = Number.isNaN(ratio) ? Infinity : Math.max(worst, ratio);
  }
  return worst;
}

export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, atol = rtol, what = 'values'): void {
  const worst = closeness(actual, expected, rtol, atol);
  if (worst > 1) {
    let at = 0;
    for (let i = 0; i < actual.length; i++) {
      const r = Math.abs(actual[i]! - expected[i]!) / (atol + rtol * Math.abs(expected[i]!));
      if (!(r <= 1)) {
        at = i;
        break;
      }
    }
    throw new Error(
      `${what} differ beyond tolerance (rtol ${rtol}, atol ${atol}): worst ratio ${worst.toFixed(2)}, first at [${at}]: got ${actual[at]}, want ${expected[at]}`,
    );
  }
}

/** Awaits `promise` and checks that it rejects with a message matching `pattern`. */
export async function assertRejects(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  try {
    await promise;
  } catch (err) {
    if (!pattern.test((err as Error).message)) throw new Error(`rejected with "${(err as Error).message}", expected ${pattern}`);
    return;
  }
  throw new Error(`expected a rejection matching ${pattern}`);
}
