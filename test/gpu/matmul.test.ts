// matmul kernels (GEMV and GEMM paths, f32 / native f16 / packed f16, chunked weights, bias)
// against a plain-TS reference, plus the f16 conversions and weight upload layout.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { GpuDevice } from '../../src/gpu/index.js';
import { GEMV_MAX_ROWS, MatmulKernels } from '../../src/kernels/matmul.js';
import { destroyWeight, f16BitsToF32, f32ToF16Bits, uploadWeight, type GpuWeight, type WeightDtype, type WeightLayout } from '../../src/kernels/weight.js';
import { assertClose, randomF32, runPass, testDevice } from '../helpers/gpu.js';
import { testIf } from '../helpers/skip.js';
import { StreamRead } from '../../bench/common.js';
import { referenceMatmul, testStorageUsage } from '../support/reference-matmul.js';

interface Case {
  numRows: number;
  rows: number;
  cols: number;
  dtype: WeightDtype;
  bias?: boolean;
  maxChunkBytes?: number;
  /** Default: 'rows'. */
  layout?: WeightLayout;
  /** Follow x's rows in its buffer with NaNs: a kernel that reads x past a row's end then fails. */
  xNaNTail?: boolean;
}

let kernelsPromise: Promise<MatmulKernels> | null = null;
let packedPromise: Promise<MatmulKernels> | null = null;
const kernels = async () => (kernelsPromise ??= MatmulKernels.create(await testDevice()));
const packedKernels = async () => (packedPromise ??= MatmulKernels.create(await testDevice(), { nativeF16: false }));

/** Runs one matmul on the GPU and compares with the reference (on f16-rounded weights for f16). */
async function check(k: MatmulKernels, c: Case, seed: number): Promise<GpuWeight> {
  const gpu: GpuDevice = await testDevice();
  const x = randomF32(c.numRows * c.cols, seed);
  const wData = randomF32(c.rows * c.cols, seed + 1);
  const bias = c.bias ? randomF32(c.rows, seed + 2) : undefined;
  const w = uploadWeight(gpu, 'w', wData, c.rows, c.cols, c.dtype, c.maxChunkBytes, c.layout);
  const xb = gpu.upload('x', c.xNaNTail ? Float32Array.from([...x, ...new Array<number>(16).fill(NaN)]) : x);
  const yb = gpu.createBuffer('y', c.numRows * c.rows * 4, testStorageUsage());
  const bb = bias ? gpu.upload('bias', bias) : undefined;
  await runPass(gpu, (pass, u) => k.matmul(pass, u, xb, w, yb, c.numRows, bb));
  const got = await gpu.readF32(yb, c.numRows * c.rows);
  const effectiveW = c.dtype === 'f16' ? f16BitsToF32(f32ToF16Bits(wData)) : wData;
  const want = referenceMatmul(x, effectiveW, c.numRows, c.rows, c.cols, bias);
  // Sums of ~cols products of values in [-1, 1]: scale the absolute tolerance with sqrt(cols).
  const rtol = c.dtype === 'f32' ? 1e-4 : 1e-3;
  assertClose(
    got,
    want,
    rtol,
    rtol * Math.sqrt(c.cols),
    `${c.dtype} ${c.numRows}x${c.cols} * (${c.rows}x${c.cols})^T${c.bias ? ' + bias' : ''} ${c.layout ?? 'rows'}`,
  );
  xb.destroy();
  yb.destroy();
  bb?.destroy();
  return w;
}

test('f16 conversion rounds to nearest even and keeps inf, nan, subnormals and signed zero', () => {
  const cases: [number, number][] = [
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [65504, 0x7bff],
    [65520, 0x7c00],
    [1e9, 0x7c00],
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [2 ** -24, 0x0001],
    [2 ** -25, 0x0000],
    [1.5 * 2 ** -25, 0x0001],
    [2 ** -14, 0x0400],
    [1 + 2 ** -11, 0x3c00],
    [1 + 3 * 2 ** -11, 0x3c02],
    [1 + 2 ** -10, 0x3c01],
    [0.1, 0x2e66],
  ];
  const bits = f32ToF16Bits(new Float32Array(cases.map(([v]) => v)));
  cases.forEach(([v, want], i) => assert.is(bits[i], want, `f32ToF16(${v}) = 0x${bits[i]!.toString(16)}, want 0x${want.toString(16)}`));
  const nan = f32ToF16Bits(new Float32Array([NaN]))[0]!;
  assert.ok((nan & 0x7c00) === 0x7c00 && (nan & 0x3ff) !== 0, 'NaN stays NaN');
  const back = f16BitsToF32(new Uint16Array([0x3c00, 0xc000, 0x0001, 0x7bff, 0x7c00, 0xfc00, 0x8000, 0x7e00]));
  assert.equal([...back.slice(0, 6)], [1, -2, 2 ** -24, 65504, Infinity, -Infinity]);
  assert.ok(Object.is(back[6], -0));
  assert.ok(Number.isNaN(back[7]));
  // Every finite f16 survives a round trip.
  const all = new Uint16Array(0x7c00).map((_, i) => i);
  assert.equal(f32ToF16Bits(f16BitsToF32(all)), all);
});

test('uploadWeight pads rows to 8 elements, chunks by maxChunkBytes and accepts f16 bits', async () => {
  const gpu = await testDevice();
  const data = randomF32(5 * 3, 7);
  const w = uploadWeight(gpu, 'small', data, 5, 3, 'f32', 2 * 8 * 4);
  assert.is(w.rowStride, 8);
  assert.is(w.rowsPerChunk, 2);
  assert.is(w.chunks.length, 3);
  const chunk1 = await gpu.readF32(w.chunks[1]!, 16);
  assert.equal([...chunk1.slice(0, 3)], [...data.slice(6, 9)]);
  assert.equal([...chunk1.slice(3, 8)], [0, 0, 0, 0, 0]);
  assert.equal([...chunk1.slice(8, 11)], [...data.slice(9, 12)]);
  const bits = f32ToF16Bits(data);
  const h = uploadWeight(gpu, 'bits', bits, 5, 3, 'f16');
  assert.is(h.chunks.length, 1);
  const stored = new Uint16Array(await gpu.read(h.chunks[0]!, 5 * 8 * 2));
  assert.equal([...stored.slice(8, 11)], [...bits.slice(3, 6)]);
  assert.throws(() => uploadWeight(gpu, 'bad', bits, 5, 3, 'f32'), /dtype must be 'f16'/);
  assert.throws(() => uploadWeight(gpu, 'bad', data, 4, 3, 'f32'), /expected rows\*cols/);
  assert.throws(() => uploadWeight(gpu, 'bad', data, 5, 3, 'f32', 16), /exceed the 16-byte chunk limit/);
  for (const x of [w, h]) destroyWeight(x);
});

test('uploadWeight interleaved8: blocks of 8 rows side by side, chunks of whole zero-padded row groups', async () => {
  const gpu = await testDevice();
  const [rows, cols] = [19, 11]; // rowStride 16: two 8-element blocks per row
  const data = randomF32(rows * cols, 9);
  const w = uploadWeight(gpu, 'inter', data, rows, cols, 'f32', 8 * 16 * 4, 'interleaved8');
  assert.is(w.layout, 'interleaved8');
  assert.is(w.rowsPerChunk, 8);
  assert.is(w.chunks.length, 3);
  assert.is(w.chunks[2]!.size, 8 * 16 * 4, 'the last chunk (3 rows) is padded to a whole group');
  for (let c = 0; c < 3; c++) {
    const got = await gpu.readF32(w.chunks[c]!, 8 * 16);
    for (let r = 0; r < 8; r++) {
      for (let k = 0; k < 16; k++) {
        const row = 8 * c + r;
        const want = row < rows && k < cols ? data[row * cols + k]! : 0;
        assert.is(got[(k >> 3) * 64 + r * 8 + (k & 7)], want, `chunk ${c} row ${r} col ${k}`);
      }
    }
  }
  const whole = uploadWeight(gpu, 'inter-f16', f32ToF16Bits(data), rows, cols, 'f16', undefined, 'interleaved8');
  assert.is(whole.chunks.length, 1);
  assert.is(whole.chunks[0]!.size, 24 * 16 * 2);
  const stored = new Uint16Array(await gpu.read(whole.chunks[0]!, 24 * 16 * 2));
  assert.is(stored[2 * 128 + 1 * 64 + 2 * 8 + 2], f32ToF16Bits(data)[18 * cols + 8 + 2], 'row 18 = group 2 lane 2, col 10 = block 1 element 2');
  assert.is(stored[2 * 128 + 1 * 64 + 3 * 8 + 2], 0, 'row 19 is group padding');
  assert.throws(() => uploadWeight(gpu, 'bad', data, rows, cols, 'f32', 7 * 16 * 4, 'interleaved8'), /8 row\(s\).*exceed the 448-byte chunk limit/);
  for (const x of [w, whole]) destroyWeight(x);
});

// rows x cols of W, numRows of x: awkward sizes on both sides of the GEMV/GEMM switch and of tiles.
const SHAPES: [number, number][] = [
  [1, 1],
  [3, 7],
  [17, 33],
  [65, 129],
  [40, 64],
];
const NUM_ROWS = [1, 2, 4, 5, 16, 17, 130];

for (const dtype of ['f32', 'f16'] as const) {
  test(`${dtype}: GEMV and GEMM match the reference on odd shapes, with and without bias, in both layouts`, async () => {
    const k = await kernels();
    let seed = dtype === 'f32' ? 100 : 200;
    for (const layout of ['rows', 'interleaved8'] as const) {
      for (const [rows, cols] of SHAPES) {
        for (const numRows of NUM_ROWS) {
          const w = await check(k, { numRows, rows, cols, dtype, bias: (numRows + rows) % 2 === 0, layout }, seed++);
          destroyWeight(w);
        }
      }
    }
  });
}

// cols picks how kernels read x: 46 scalars, 44 vec4s with the last half-block guarded (cols % 8 == 4),
// 48 unguarded vec4s (cols % 8 == 0, what real models have: the guard cost the prefill GEMM ~5-10%).
test('x read modes (scalar, guarded vec4, unguarded vec4) on every path; NaN past the rows never leaks', async () => {
  const k = await kernels();
  let seed = 700;
  for (const dtype of ['f32', 'f16'] as const) {
    for (const cols of [44, 46, 48]) {
      for (const numRows of [1, 3, 17, 40]) {
        destroyWeight(
          await check(k, { numRows, rows: 19, cols, dtype, bias: numRows === 3, layout: numRows % 2 ? 'interleaved8' : 'rows', xNaNTail: true }, seed++),
        );
      }
    }
  }
});

test('both kernels are exercised: the switch sits between 16 and 17 rows', () => {
  assert.is(GEMV_MAX_ROWS, 16);
  assert.ok(NUM_ROWS.some((n) => n <= GEMV_MAX_ROWS) && NUM_ROWS.some((n) => n > GEMV_MAX_ROWS));
});

test('chunked weights: each chunk writes its own column range (GEMV and GEMM, f32 and f16)', async () => {
  const k = await kernels();
  for (const dtype of ['f32', 'f16'] as const) {
    for (const numRows of [1, 3, 40]) {
      // 3 rows of 72 padded elements per chunk -> 23 rows in 8 chunks, the last one short.
      const w = await check(k, { numRows, rows: 23, cols: 70, dtype, bias: true, maxChunkBytes: 3 * 72 * (dtype === 'f32' ? 4 : 2) }, 300 + numRows);
      assert.is(w.chunks.length, 8);
      destroyWeight(w);
      // interleaved8: 8-row chunks (23 rows -> 3 chunks, the last with 7 rows + 1 padding row).
      const wi = await check(
        k,
        { numRows, rows: 23, cols: 70, dtype, bias: true, maxChunkBytes: 8 * 72 * (dtype === 'f32' ? 4 : 2), layout: 'interleaved8' },
        350 + numRows,
      );
      assert.is(wi.chunks.length, 3);
      destroyWeight(wi);
    }
  }
});

test('packed-u32 f16 fallback (no native f16) matches the reference', async () => {
  const k = await packedKernels();
  assert.equal(k.f16Storage, { gemv: 'f16_packed', skinny: 'f16_packed', gemm: 'f16_packed' });
  let seed = 400;
  for (const [rows, cols] of [
    [3, 7],
    [17, 33],
    [65, 129],
  ] as const) {
    for (const numRows of [1, 5, 17])
      destroyWeight(await check(k, { numRows, rows, cols, dtype: 'f16', bias: true, layout: numRows === 5 ? 'interleaved8' : 'rows' }, seed++));
  }
  destroyWeight(await check(k, { numRows: 2, rows: 10, cols: 9, dtype: 'f16', maxChunkBytes: 4 * 16 * 2 }, seed++));
});

test('portable kernels (no subgroups: GEMV for 1 row, gemm_tile above) match the reference', async () => {
  const k = await MatmulKernels.create(await testDevice(), { tuning: { useSubgroupKernels: false } });
  let seed = 700;
  for (const dtype of ['f32', 'f16'] as const) {
    for (const [rows, cols] of [
      [3, 7],
      [65, 129],
      [33, 40],
    ] as const) {
      for (const numRows of [1, 2, 5, 16, 17, 40]) destroyWeight(await check(k, { numRows, rows, cols, dtype, bias: numRows % 2 === 1 }, seed++));
    }
    destroyWeight(await check(k, { numRows: 1, rows: 33, cols: 40, dtype, bias: true, layout: 'interleaved8' }, seed++));
    destroyWeight(await check(k, { numRows: 37, rows: 33, cols: 40, dtype, layout: 'interleaved8' }, seed++));
  }
  assert.is(k.weightLayout, 'rows', 'portable kernels stride lanes over k, so they ask for row-major weights');
  k.destroy();
});

test('each path takes the f16 view its tuning asks for; native needs shader-f16', async () => {
  const gpu = await testDevice();
  const tuning = (await kernels()).tuning;
  const want = (packed: boolean) => (gpu.hasF16 && !packed ? 'f16' : 'f16_packed');
  const decode = want(tuning.packedF16Decode);
  assert.equal((await kernels()).f16Storage, { gemv: decode, skinny: decode, gemm: want(tuning.packedF16Prefill) });
  const mixed = await MatmulKernels.create(gpu, { tuning: { packedF16Decode: true, packedF16Prefill: false } });
  assert.equal(mixed.f16Storage, { gemv: 'f16_packed', skinny: 'f16_packed', gemm: want(false) });
  mixed.destroy();
});

// Without shader-f16 every view is packed (the packed tests cover that): this one cannot run.
testIf((await testDevice()).hasF16, 'the adapter lacks shader-f16')('native vec4<f16> view (every path) matches the reference', async () => {
  const gpu = await testDevice();
  const k = await MatmulKernels.create(gpu, { tuning: { packedF16Decode: false, packedF16Prefill: false } });
  assert.equal(k.f16Storage, { gemv: 'f16', skinny: 'f16', gemm: 'f16' });
  let seed = 900;
  for (const [rows, cols] of [
    [3, 7],
    [17, 33],
    [65, 129],
  ] as const) {
    for (const numRows of [1, 5, 16, 17])
      destroyWeight(await check(k, { numRows, rows, cols, dtype: 'f16', bias: numRows % 2 === 0, layout: numRows % 2 ? 'interleaved8' : 'rows' }, seed++));
  }
  destroyWeight(await check(k, { numRows: 3, rows: 10, cols: 9, dtype: 'f16', maxChunkBytes: 4 * 16 * 2 }, seed++));
  k.destroy();
});

test('f16 against the unrounded f32 weights stays within 1e-2', async () => {
  const gpu = await testDevice();
  const k = await kernels();
  const [numRows, rows, cols] = [4, 31, 96];
  const x = randomF32(numRows * cols, 500),
    wData = randomF32(rows * cols, 501);
  const w = uploadWeight(gpu, 'w', wData, rows, cols, 'f16');
  const xb = gpu.upload('x', x),
    yb = gpu.createBuffer('y', numRows * rows * 4, testStorageUsage());
  await runPass(gpu, (pass, u) => k.matmul(pass, u, xb, w, yb, numRows));
  assertClose(await gpu.readF32(yb, numRows * rows), referenceMatmul(x, wData, numRows, rows, cols), 1e-2, 1e-2 * Math.sqrt(cols));
  destroyWeight(w);
});

// Skinny GEMM with a guarded x, and the GEMV's unguarded x path (cols % 8 == 0) on interleaved weights.
test('x and y may be sub-ranges of larger buffers (offset bindings)', async () => {
  const gpu = await testDevice();
  const k = await kernels();
  for (const [numRows, rows, cols, layout] of [
    [3, 20, 36, 'rows'],
    [1, 20, 40, 'interleaved8'],
  ] as const) {
    const x = randomF32(numRows * cols, 600 + cols),
      wData = randomF32(rows * cols, 601 + cols);
    const w = uploadWeight(gpu, 'w', wData, rows, cols, 'f32', undefined, layout);
    const xOffset = 256,
      yOffset = 512;
    const xb = gpu.createBuffer('x', xOffset + x.byteLength, testStorageUsage());
    gpu.write(xb, x, xOffset);
    const yb = gpu.createBuffer('y', yOffset + numRows * rows * 4, testStorageUsage());
    await runPass(gpu, (pass, u) =>
      k.matmul(pass, u, { buffer: xb, offset: xOffset, size: x.byteLength }, w, { buffer: yb, offset: yOffset, size: numRows * rows * 4 }, numRows),
    );
    assertClose(await gpu.readF32(yb, numRows * rows, yOffset / 4), referenceMatmul(x, wData, numRows, rows, cols), 1e-4, 1e-3);
    destroyWeight(w);
  }
});

test('a NaN in one x row stays in that row (the zero-padded tail of k never reads the next row)', async () => {
  const gpu = await testDevice();
  for (const k of [await kernels(), await MatmulKernels.create(gpu, { tuning: { useSubgroupKernels: false } })]) {
    for (const [numRows, cols] of [
      [2, 7],
      [20, 12],
      [1, 5],
    ] as const) {
      const rows = 9;
      const x = randomF32(numRows * cols, 800);
      x.fill(NaN, cols, 2 * cols); // row 1 (absent when numRows is 1: then the NaN sits past x's end)
      const xb = gpu.createBuffer('x', (numRows + 1) * cols * 4, testStorageUsage());
      gpu.write(
        xb,
        numRows === 1
          ? (() => {
              const padded = new Float32Array(2 * cols).fill(NaN);
              padded.set(x.subarray(0, cols));
              return padded;
            })()
          : x,
      );
      const wData = randomF32(rows * cols, 801);
      const w = uploadWeight(gpu, 'w', wData, rows, cols, 'f32');
      const yb = gpu.createBuffer('y', numRows * rows * 4, testStorageUsage());
      await runPass(gpu, (pass, u) => k.matmul(pass, u, { buffer: xb, offset: 0, size: numRows * cols * 4 }, w, yb, numRows));
      const got = await gpu.readF32(yb, numRows * rows);
      const want = referenceMatmul(x.subarray(0, numRows * cols), wData, numRows, rows, cols);
      for (let r = 0; r < numRows; r++) {
        const row = got.subarray(r * rows, (r + 1) * rows);
        if (r === 1) assert.ok(row.every(Number.isNaN), 'the NaN row is NaN');
        else assertClose(row, want.subarray(r * rows, (r + 1) * rows), 1e-4, 1e-3, `row ${r} of ${numRows}x${cols}`);
      }
      destroyWeight(w);
    }
  }
});

test('the streaming-read baseline (bench) reads every word exactly once', async () => {
  const gpu = await testDevice();
  const numWords = StreamRead.WORDS_PER_GROUP * 3 + 37; // a partial last group, odd word count
  const data = new Uint32Array(numWords * 4).map((_, i) => (i * 2654435761) >>> 0);
  const src = gpu.upload('src', data);
  const stream = await StreamRead.create(gpu, data.byteLength);
  await runPass(gpu, (pass, u) => stream.record(pass, u, src, data.byteLength));
  let want = 0;
  for (const v of data) want = (want + v) >>> 0;
  assert.is(await stream.sum(Math.ceil(numWords / StreamRead.WORDS_PER_GROUP)), want);
  stream.destroy();
});

test('caller mistakes are reported with what to do', async () => {
  const gpu = await testDevice();
  const k = await kernels();
  const w = uploadWeight(gpu, 'w', randomF32(8, 1), 2, 4, 'f32');
  const buf = gpu.createBuffer('b', 64, testStorageUsage());
  await runPass(gpu, (pass, u) => {
    assert.throws(() => k.matmul(pass, u, buf, w, buf, 0), /numRows must be a positive integer/);
  });
  destroyWeight(w);
  await runPass(gpu, (pass, u) => {
    assert.throws(() => k.matmul(pass, u, buf, w, buf, 1), /weight was destroyed/);
  });
});

test.run();
