import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { describeOpened, GpuError, loadShader, openDevices, dispatch, UniformArena } from '../../src/gpu/index.js';
import { ElementwiseKernels } from '../support/elementwise.js';
import { TEST_SHADER_DIR } from '../support/shaders.js';
import { assertRejects, randomF32, runPass, testDevice } from '../helpers/gpu.js';

test('an adapter is acquired with the LLM features and max limits', async () => {
  const gpu = await testDevice();
  const info = describeOpened(gpu);
  assert.ok(info.description.length > 0);
  assert.ok(gpu.limits.maxStorageBufferBindingSize >= 128 * 1024 * 1024);
  assert.is(gpu.limits.maxStorageBufferBindingSize, gpu.adapter.limits.maxStorageBufferBindingSize);
  for (const f of ['shader-f16', 'subgroups', 'timestamp-query']) {
    if (gpu.adapter.features.has(f)) assert.ok(gpu.features.has(f), `feature ${f} requested`);
  }
});

test('a WGSL kernel round-trips data (odd length)', async () => {
  const gpu = await testDevice();
  const k = await ElementwiseKernels.create(gpu);
  const n = 1000 * 257 + 3;
  const a = randomF32(n, 1),
    b = randomF32(n, 2);
  const ba = gpu.upload('a', a),
    bb = gpu.upload('b', b),
    out = gpu.createBuffer('out', n * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
  await runPass(gpu, (pass, u) => k.add(pass, u, ba, bb, out, n));
  const got = await gpu.readF32(out, n);
  for (let i = 0; i < n; i += 997) assert.is(got[i], Math.fround(a[i]! + b[i]!));
  assert.is(got[n - 1], Math.fround(a[n - 1]! + b[n - 1]!));
});

test('bind groups are reused only for identical bindings (offsets, sizes and uniforms told apart)', async () => {
  const gpu = await testDevice();
  const k = await ElementwiseKernels.create(gpu);
  const n = 300; // per half; offsets are multiples of 256 bytes as bindings require
  const a = randomF32(2 * 320, 3),
    b = randomF32(2 * 320, 4);
  const ba = gpu.upload('a', a),
    bb = gpu.upload('b', b);
  const out = gpu.createBuffer('out', 2 * 320 * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
  const half = (buf: GPUBuffer, i: number) => ({ buffer: buf, offset: i * 320 * 4, size: n * 4 });
  // The same pipeline and buffers twice per pass, differing only in offsets; then again in a second
  // pass (same uniform-arena offsets, so cached groups are hit) with a different element count.
  await runPass(gpu, (pass, u) => {
    k.add(pass, u, half(ba, 0), half(bb, 0), half(out, 0), n);
    k.add(pass, u, half(ba, 1), half(bb, 1), half(out, 1), n);
  });
  let got = await gpu.readF32(out, 2 * 320);
  for (const i of [0, n - 1, 320, 320 + n - 1]) assert.is(got[i], Math.fround(a[i]! + b[i]!), `element ${i}`);
  await runPass(gpu, (pass, u) => {
    k.add(pass, u, half(bb, 0), half(bb, 0), half(out, 0), 10);
    k.add(pass, u, half(ba, 1), half(ba, 1), half(out, 1), 10);
  });
  got = await gpu.readF32(out, 2 * 320);
  assert.is(got[9], Math.fround(2 * b[9]!));
  assert.is(got[10], Math.fround(a[10]! + b[10]!), 'beyond the new count: left from the first pass');
  assert.is(got[329], Math.fround(2 * a[329]!));
});

test('a WGSL compile error is thrown naming the kernel and line', async () => {
  const gpu = await testDevice();
  try {
    await gpu.pipelines.get({ kernel: 'broken_kernel', code: '@compute @workgroup_size(1)\nfn main() {\n  let x: f32 = undefined_thing;\n}' });
    assert.unreachable('should throw');
  } catch (err) {
    assert.instance(err, GpuError);
    assert.match((err as Error).message, /broken_kernel/);
    assert.match((err as Error).message, /:3:/);
  }
});

test('a validation error at dispatch surfaces as a JS error naming the kernel', async () => {
  const gpu = await testDevice();
  const code = loadShader('elementwise', TEST_SHADER_DIR);
  const pipeline = await gpu.pipelines.get({ kernel: 'elementwise.add', code, entryPoint: 'add' });
  const tiny = gpu.createBuffer('tiny', 4, GPUBufferUsage.STORAGE);
  const uniforms = new UniformArena(gpu.device);
  const encoder = gpu.device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  // Binding a uniform-only buffer as storage is a validation error.
  dispatch(gpu.device, pass, pipeline, [tiny, tiny, uniforms.alloc(new Uint32Array(4)), uniforms.alloc(new Uint32Array(4))], [1]);
  pass.end();
  uniforms.flush();
  gpu.device.queue.submit([encoder.finish()]);
  try {
    await gpu.sync();
    assert.unreachable('should throw');
  } catch (err) {
    assert.instance(err, GpuError);
    assert.match((err as Error).message, /elementwise\.add/);
  }
});

test('two devices coexist and run concurrently', async () => {
  const [d0, d1] = await openDevices([0, 0], { allowRepeatedAdapters: true });
  assert.ok(d0 && d1 && d0.device !== d1.device);
  const [k0, k1] = await Promise.all([ElementwiseKernels.create(d0), ElementwiseKernels.create(d1)]);
  const n = 4099;
  const a = randomF32(n, 3),
    b = randomF32(n, 4);
  const run = async (gpu: typeof d0, k: ElementwiseKernels, scale: number) => {
    const out = gpu.createBuffer('out', n * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
    const bb = gpu.upload(
      'b',
      b.map((x) => x * scale),
    );
    await runPass(gpu, (pass, u) => k.add(pass, u, gpu.upload('a', a), bb, out, n));
    return gpu.readF32(out, n);
  };
  const [r0, r1] = await Promise.all([run(d0, k0, 1), run(d1, k1, 2)]);
  assert.is(r0[17], Math.fround(a[17]! + b[17]!));
  assert.is(r1[17], Math.fround(a[17]! + Math.fround(b[17]! * 2)));
  d0.destroy();
  d1.destroy();
});

test('repeating an adapter index without permission is refused; a missing index is a clear error', async () => {
  await assertRejects(openDevices([0, 0]), /listed twice/);
  await assertRejects(openDevices([7]), /device index 7 does not exist/);
});

test('with no Vulkan driver the user is told how to install one', () => {
  const res = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'devices'], {
    encoding: 'utf8',
    env: { ...process.env, VK_ICD_FILENAMES: '/nonexistent/none.json', VK_DRIVER_FILES: '/nonexistent/none.json' },
  });
  assert.is.not(res.status, 0);
  assert.match(res.stderr, /no Vulkan driver found: run scripts\/install-software-gpu\.sh/);
});

test.run();
