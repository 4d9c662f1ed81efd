// The column gather for activation-ordered GPTQ linears (shaders/permute.wgsl) against a plain-TS gather:
// bit-exact on odd shapes, grids past one workgroup in x, y and z, sub-range bindings, and rows or bytes
// outside the output untouched; plus the host-side permutation check and the argument checks.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Binding } from '../../src/gpu/index.js';
import { PermuteKernel } from '../../src/kernels/permute.js';
import { randomF32, runPass, testDevice } from '../helpers/gpu.js';
import { seededPermutation } from '../support/random.js';

function gatherReference(x: Float32Array, perm: Uint32Array, numRows: number): Float32Array {
  const cols = perm.length;
  const out = new Float32Array(numRows * cols);
  for (let r = 0; r < numRows; r++) {
    for (let j = 0; j < cols; j++) out[r * cols + j] = x[r * cols + perm[j]!]!;
  }
  return out;
}

type PermKind = 'identity' | 'reversed' | 'random';

function makePerm(kind: PermKind, cols: number, seed: number): Uint32Array {
  if (kind === 'random') return seededPermutation(cols, seed);
  return Uint32Array.from({ length: cols }, (_, j) => (kind === 'reversed' ? cols - 1 - j : j));
}

/** Bit patterns, so -0, NaN payloads and denormals would all count as differences. */
function assertBitExact(got: Float32Array, want: Float32Array, what: string): void {
  const g = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const w = new Uint32Array(want.buffer, want.byteOffset, want.length);
  assert.is(g.length, w.length, `${what}: length`);
  for (let i = 0; i < w.length; i++) {
    if (g[i] !== w[i]) assert.unreachable(`${what}: element ${i} is ${got[i]}, want ${want[i]}`);
  }
}

async function gather(x: Float32Array, perm: Uint32Array, numRows: number, outRows = numRows): Promise<Float32Array> {
  const gpu = await testDevice();
  const kernel = await PermuteKernel.create(gpu);
  const cols = perm.length;
  const sentinel = new Float32Array(outRows * cols).fill(-7.25);
  const out = gpu.upload('out', sentinel);
  await runPass(gpu, (pass, u) => kernel.gatherColumns(pass, u, { x: gpu.upload('x', x), perm: gpu.upload('perm', perm), out, numRows, cols }));
  return gpu.readF32(out, outRows * cols);
}

// [numRows, cols]: 136 and 4096 columns take several workgroups along x, 37 rows many along y.
const SHAPES: [number, number][] = [
  [1, 8],
  [3, 40],
  [37, 136],
  [5, 4096],
];

for (const [numRows, cols] of SHAPES) {
  for (const kind of ['identity', 'reversed', 'random'] as const) {
    test(`${kind} permutation, ${numRows} x ${cols}: bit-exact against the TS gather`, async () => {
      const x = randomF32(numRows * cols, numRows * 1000 + cols);
      const perm = makePerm(kind, cols, cols);
      assertBitExact(await gather(x, perm, numRows), gatherReference(x, perm, numRows), 'out');
    });
  }
}

test('rows past 65535 split over y and z; special values (-0, inf, NaN, denormals) copied bit for bit', async () => {
  const numRows = 65537;
  const cols = 4;
  const x = randomF32(numRows * cols, 11);
  x.set([-0, Number.POSITIVE_INFINITY, Number.NaN, 1e-40], (numRows - 1) * cols);
  const perm = Uint32Array.of(2, 0, 3, 1);
  assertBitExact(await gather(x, perm, numRows), gatherReference(x, perm, numRows), 'out');
});

test('rows of out past numRows are untouched', async () => {
  const numRows = 3;
  const cols = 72;
  const x = randomF32(5 * cols, 21);
  const perm = makePerm('random', cols, 22);
  const got = await gather(x, perm, numRows, 5);
  assertBitExact(got.subarray(0, numRows * cols), gatherReference(x, perm, numRows), 'gathered rows');
  assertBitExact(got.subarray(numRows * cols), new Float32Array(2 * cols).fill(-7.25), 'rows past numRows');
});

test('numRows 0 dispatches nothing: out unchanged', async () => {
  const perm = makePerm('reversed', 16, 0);
  assertBitExact(await gather(randomF32(16, 3), perm, 0, 1), new Float32Array(16).fill(-7.25), 'out');
});

test('x and out bound as sub-ranges of larger buffers (Binding offset and size)', async () => {
  const gpu = await testDevice();
  const kernel = await PermuteKernel.create(gpu);
  const align = gpu.limits.minStorageBufferOffsetAlignment / 4;
  const numRows = 6;
  const cols = 24;
  const n = numRows * cols;
  // x sits one alignment into its buffer with junk around it; out two alignments in, sentinels around.
  const xHost = randomF32(align + n + align, 31);
  const outHost = new Float32Array(2 * align + n + align).fill(3.5);
  const xBuf = gpu.upload('x', xHost);
  const outBuf = gpu.upload('out', outHost);
  const perm = makePerm('random', cols, 32);
  const x: Binding = { buffer: xBuf, offset: align * 4, size: n * 4 };
  const out: Binding = { buffer: outBuf, offset: 2 * align * 4, size: n * 4 };
  await runPass(gpu, (pass, u) => kernel.gatherColumns(pass, u, { x, perm: gpu.upload('perm', perm), out, numRows, cols }));
  const got = await gpu.readF32(outBuf, outHost.length);
  assertBitExact(got.subarray(2 * align, 2 * align + n), gatherReference(xHost.subarray(align, align + n), perm, numRows), 'gathered range');
  assertBitExact(got.subarray(0, 2 * align), outHost.subarray(0, 2 * align), 'bytes before out');
  assertBitExact(got.subarray(2 * align + n), outHost.subarray(2 * align + n), 'bytes after out');
});

test('argument checks name the bad field', async () => {
  const gpu = await testDevice();
  const kernel = await PermuteKernel.create(gpu);
  const buf = (n: number) => gpu.upload('b', new Float32Array(n));
  const call = (args: { numRows: number; cols: number; x?: number; perm?: number; out?: number }) => () =>
    runPass(gpu, (pass, u) =>
      kernel.gatherColumns(pass, u, {
        x: buf(args.x ?? 64),
        perm: buf(args.perm ?? 8),
        out: buf(args.out ?? 64),
        numRows: args.numRows,
        cols: args.cols,
      }),
    );
  const rejects = async (fn: () => Promise<void>, pattern: RegExp) => {
    try {
      await fn();
    } catch (err) {
      assert.match((err as Error).message, pattern);
      return;
    }
    assert.unreachable(`expected an error matching ${pattern}`);
  };
  await rejects(call({ numRows: 2, cols: 0 }), /cols 0 must be a positive integer/);
  await rejects(call({ numRows: 1.5, cols: 8 }), /numRows 1.5 must be a non-negative integer/);
  await rejects(call({ numRows: -1, cols: 8 }), /numRows -1/);
  await rejects(call({ numRows: 9, cols: 8 }), /x binds 256 bytes, needs 288/);
  await rejects(call({ numRows: 8, cols: 8, perm: 4 }), /perm binds 16 bytes, needs 32/);
  await rejects(call({ numRows: 8, cols: 8, out: 32 }), /out binds 128 bytes, needs 256/);
});

test.run();
