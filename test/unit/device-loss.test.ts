// A lost GPU device is reported, never silent: GpuDevice turns Dawn's `lost` promise into an error
// for its listeners and an unhealthy state (the engine subscribes and fails its requests, /health 503).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DeviceLostError, GpuDevice } from '../../src/gpu/index.js';

function fakeDevice(lost: Promise<{ reason: string; message: string }>): GPUDevice {
  return {
    features: new Set<string>(),
    limits: {},
    lost,
    onuncapturederror: null,
    destroy() {},
  } as unknown as GPUDevice;
}

const fakeAdapter = { info: { architecture: 'test', description: 'fake adapter' } } as unknown as GPUAdapter;

test('device loss reaches listeners, marks the device unhealthy and throws on the next check', async () => {
  let resolveLost!: (info: { reason: string; message: string }) => void;
  const gpu = new GpuDevice(fakeDevice(new Promise((r) => (resolveLost = r))), fakeAdapter, 0, 'gpu0');
  const seen: Error[] = [];
  gpu.onLost((err) => seen.push(err));
  assert.ok(gpu.health.healthy);
  resolveLost({ reason: 'unknown', message: 'the driver reset' });
  await new Promise((r) => setTimeout(r, 0));
  assert.is(seen.length, 1);
  assert.instance(seen[0], DeviceLostError);
  assert.match(seen[0]!.message, /gpu0 was lost \(unknown\): the driver reset/);
  assert.not.ok(gpu.health.healthy);
  assert.throws(() => gpu.throwIfFailed(), /was lost/);
});

test('a deliberate destroy() is not reported as a loss', async () => {
  let resolveLost!: (info: { reason: string; message: string }) => void;
  const gpu = new GpuDevice(fakeDevice(new Promise((r) => (resolveLost = r))), fakeAdapter, 0, 'gpu0');
  const seen: Error[] = [];
  gpu.onLost((err) => seen.push(err));
  resolveLost({ reason: 'destroyed', message: '' });
  await new Promise((r) => setTimeout(r, 0));
  assert.is(seen.length, 0);
  assert.ok(gpu.health.healthy);
});

test.run();
