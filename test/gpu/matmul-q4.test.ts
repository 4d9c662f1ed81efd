// 4-bit weight matmul (uploadQ4Weight + every matmul path reading Q4GpuWeight) against a CPU
// dequantize-then-matmul reference (test/support/q4-reference.ts), plus the upload layout itself.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Q4Matrix } from '../../src/common/q4.js';
import { MatmulKernels } from '../../src/kernels/matmul.js';
import { destroyWeight, uploadQ4Weight, uploadWeight, type Q4GpuWeight, type WeightLayout } from '../../src/kernels/weight.js';
import { dequantizeQ4, q4Nibble, randomQ4Matrix } from '../support/q4-reference.js';
import { assertClose, assertRejects, randomF32, runPass, testDevice } from '../helpers/gpu.js';
import { testIf } from '../helpers/skip.js';
import { referenceMatmul, testStorageUsage } from '../support/reference-matmul.js';

interface Case {
  numRows: number;
  rows: number;
  cols: number;
  groupSize: number;
  layout: WeightLayout;
  bias?: boolean;
  maxChunkBytes?: number;
  /** Bytes of NaN in x's buffer before the bound rows (a multiple of the device's offset alignment). */
  xOffset?: number;
}

let subgroupPromise: Promise<MatmulKernels> | null = null;
let portablePromise: Promise<MatmulKernels> | null = null;
/** The device's default kernels (on lavapipe: gemv_sg, skinny gemm_sg, prefill gemm_sg). */
const kernels = async () => (subgroupPromise ??= MatmulKernels.create(await testDevice(), { q4: true }));
/** No subgroups: gemv for one row, gemm_tile above. */
const portableKernels = async () => (portablePromise ??= MatmulKernels.create(await testDevice(), { q4: true, tuning: { useSubgroupKernels: false } }));

/** Runs one matmul on the GPU (x's bound rows surrounded by NaN) and compares with the reference. */
async function check(k: MatmulKernels, c: Case, seed: number): Promise<Q4GpuWeight> {
  const gpu = await testDevice();
  const m = randomQ4Matrix(c.rows, c.cols, c.groupSize, seed);
  const x = randomF32(c.numRows * c.cols, seed + 1);
  const bias = c.bias ? randomF32(c.rows, seed + 2) : undefined;
  const w = uploadQ4Weight(gpu, 'w', m, c.maxChunkBytes, c.layout);
  const xOffset = c.xOffset ?? 0;
  const xb = gpu.createBuffer('x', xOffset + x.byteLength + 64, testStorageUsage());
  const xHost = new Float32Array(xb.size / 4).fill(NaN);
  xHost.set(x, xOffset / 4);
  gpu.write(xb, xHost);
  const yb = gpu.createBuffer('y', c.numRows * c.rows * 4, testStorageUsage());
  const bb = bias ? gpu.upload('bias', bias) : undefined;
  await runPass(gpu, (pass, u) => k.matmul(pass, u, { buffer: xb, offset: xOffset, size: x.byteLength }, w, yb, c.numRows, bb));
  const got = await gpu.readF32(yb, c.numRows * c.rows);
  const want = referenceMatmul(x, dequantizeQ4(m), c.numRows, c.rows, c.cols, bias);
  // Dequantized weights are exact in f32, so only the f32 accumulation order differs.
  const what = `q4/g${c.groupSize} ${c.numRows}x${c.cols} * (${c.rows}x${c.cols})^T${c.bias ? ' + bias' : ''} ${c.layout}${xOffset ? ` x@${xOffset}` : ''}`;
  assertClose(got, want, 1e-4, 1e-4 * Math.sqrt(c.cols), what);
  xb.destroy();
  yb.destroy();
  bb?.destroy();
  return w;
}

const NUM_ROWS = [1, 2, 3, 5, 9, 16, 17, 40]; // gemv, every skinny tile height, prefill GEMM
const ROWS = [13, 37, 130];
const LAYOUTS: readonly WeightLayout[] = ['rows', 'interleaved8'];

test('the reference dequantizer follows the format: nibble j of word (r, k8) is q[r, 8*k8 + j]', () => {
  const m: Q4Matrix = {
    rows: 2,
    cols: 16,
    groupSize: 8,
    qweight: new Uint32Array([0x76543210, 0xfedcba98, 0x0000000f, 0x10000000]),
    scales: new Uint16Array([0x3c00, 0x4000, 0xb800, 0x3c00]), // 1, 2, -0.5, 1
    zeros: new Uint8Array([0, 16, 8, 1]),
  };
  const w = dequantizeQ4(m);
  assert.equal([...w.subarray(0, 8)], [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.equal([...w.subarray(8, 16)], [-16, -14, -12, -10, -8, -6, -4, -2]);
  assert.equal([...w.subarray(16, 24)], [-3.5, 4, 4, 4, 4, 4, 4, 4]);
  assert.equal([...w.subarray(24, 32)], [-1, -1, -1, -1, -1, -1, -1, 0]);
  assert.is(q4Nibble(m, 0, 9), 9);
});

test('uploadQ4Weight: packed words and scale/zero words in both layouts, chunked by maxChunkBytes', async () => {
  const gpu = await testDevice();
  const [rows, cols, groupSize] = [19, 64, 16]; // 8 words and 4 groups per row
  const m = randomQ4Matrix(rows, cols, groupSize, 11);
  const plain = uploadQ4Weight(gpu, 'q', m, 5 * 32);
  assert.equal([plain.dtype, plain.layout, plain.rowStride, plain.groupSize, plain.rowsPerChunk, plain.chunks.length], ['q4', 'rows', 64, 16, 5, 4]);
  assert.is(plain.scaleChunks.length, 4);
  assert.is(plain.byteLength, 3 * (5 * 32 + 5 * 16) + 4 * 32 + 4 * 16);
  const words = await gpu.readU32(plain.chunks[1]!, 5 * 8);
  assert.equal([...words], [...m.qweight.subarray(5 * 8, 10 * 8)]);
  const sz = await gpu.readU32(plain.scaleChunks[3]!, 4 * 4);
  for (let i = 0; i < 16; i++) assert.is(sz[i], m.scales[15 * 4 + i]! | (m.zeros[15 * 4 + i]! << 16), `rows scale word ${i}`);

  const inter = uploadQ4Weight(gpu, 'qi', m, 8 * 32, 'interleaved8');
  assert.equal([inter.rowsPerChunk, inter.chunks.length, inter.chunks[2]!.size, inter.scaleChunks[2]!.size], [8, 3, 8 * 32, 8 * 16]);
  for (let c = 0; c < 3; c++) {
    const got = await gpu.readU32(inter.chunks[c]!, 64);
    const gotSz = await gpu.readU32(inter.scaleChunks[c]!, 32);
    for (let r = 0; r < 8; r++) {
      const row = 8 * c + r;
      for (let k8 = 0; k8 < 8; k8++) assert.is(got[k8 * 8 + r], row < rows ? m.qweight[row * 8 + k8] : 0, `chunk ${c} row ${r} block ${k8}`);
      for (let g = 0; g < 4; g++) {
        const want = row < rows ? m.scales[row * 4 + g]! | (m.zeros[row * 4 + g]! << 16) : 0;
        assert.is(gotSz[g * 8 + r], want, `chunk ${c} row ${r} group ${g}`);
      }
    }
  }
  destroyWeight(plain);
  assert.equal([plain.chunks.length, plain.scaleChunks.length], [0, 0], 'destroyWeight frees the scale buffers too');
  destroyWeight(inter);
});

test('uploadQ4Weight and uploadWeight reject what the kernels cannot read, naming the field', async () => {
  const gpu = await testDevice();
  const m = randomQ4Matrix(4, 64, 32, 3);
  assert.throws(() => uploadQ4Weight(gpu, 'z', { ...m, zeros: m.zeros.map((z, i) => (i === 5 ? 17 : z)) }), /uploadQ4Weight\(z\): zeros\[5\] is 17/);
  assert.throws(() => uploadQ4Weight(gpu, 'g', { ...m, groupSize: 48 }), /uploadQ4Weight\(g\): group size 48 is not a power of two/);
  assert.throws(() => uploadQ4Weight(gpu, 'c', { ...m, cols: 48 }), /in features 48 are not a multiple of the group size 32/);
  assert.throws(() => uploadQ4Weight(gpu, 's', { ...m, scales: m.scales.subarray(1) }), /scales has 7 entries, expected 8/);
  assert.throws(() => uploadQ4Weight(gpu, 'small', m, 16), /1 row\(s\) of 64 4-bit values \(32 bytes\) exceed the 16-byte chunk limit/);
  assert.throws(() => uploadWeight(gpu, 'f', new Float32Array(8), 1, 8, 'q4'), /uploadQ4Weight\(\)/);
});

for (const layout of LAYOUTS) {
  test(`${layout}: every path (gemv, skinny, prefill gemm) matches the reference for group sizes 8..128`, async () => {
    const k = await kernels();
    let seed = layout === 'rows' ? 1000 : 2000;
    let i = 0;
    for (const groupSize of [8, 16, 32, 64, 128]) {
      for (const numRows of NUM_ROWS) {
        const rows = ROWS[i % ROWS.length]!;
        const cols = groupSize * (1 + ((i * 7) % Math.floor(640 / groupSize))); // 8 .. 640, a multiple of the group
        i++;
        destroyWeight(await check(k, { numRows, rows, cols: Math.max(cols, 64), groupSize, layout, bias: i % 3 === 0 }, seed++));
      }
    }
  });
}

test('zero points 0 and 16 and the largest nibbles dequantize exactly', async () => {
  const gpu = await testDevice();
  const k = await kernels();
  const [rows, cols, groupSize] = [9, 64, 32];
  const m = randomQ4Matrix(rows, cols, groupSize, 5);
  m.qweight.fill(0xf0f0f0f0);
  m.zeros.forEach((_, i) => (m.zeros[i] = i % 2 ? 16 : 0));
  const x = new Float32Array(cols).fill(1);
  for (const layout of LAYOUTS) {
    const w = uploadQ4Weight(gpu, 'w', m, undefined, layout);
    const xb = gpu.upload('x', x, testStorageUsage());
    const yb = gpu.createBuffer('y', rows * 4, testStorageUsage());
    await runPass(gpu, (pass, u) => k.matmul(pass, u, xb, w, yb, 1));
    assert.equal([...(await gpu.readF32(yb, rows))], [...referenceMatmul(x, dequantizeQ4(m), 1, rows, cols)], layout);
    destroyWeight(w);
    xb.destroy();
    yb.destroy();
  }
});

test('chunked weights: each chunk binds its own scale buffer and writes its column range', async () => {
  const k = await kernels();
  let seed = 3000;
  for (const layout of LAYOUTS) {
    for (const numRows of [1, 3, 9, 40]) {
      // 128 cols = 64 bytes a row: 'rows' chunks of 3 rows (37 -> 13 chunks), interleaved8 of 8 (37 -> 5).
      const w = await check(k, { numRows, rows: 37, cols: 128, groupSize: 32, layout, bias: true, maxChunkBytes: layout === 'rows' ? 200 : 8 * 64 }, seed++);
      assert.is(w.chunks.length, layout === 'rows' ? 13 : 5);
      destroyWeight(w);
    }
  }
});

// With the usual 16-byte offset alignment (lavapipe) these are 16 and 48 bytes: x rows that start
// mid-block relative to the buffer. 4-bit cols are multiples of 8, so only the offset varies the x reads.
test('x bound at offsets of 1 and 3 offset alignments, NaN around the rows', async () => {
  const k = await kernels();
  const alignment = (await testDevice()).limits.minStorageBufferOffsetAlignment;
  let seed = 4000;
  for (const xOffset of [alignment, 3 * alignment]) {
    for (const numRows of [1, 5, 17]) {
      destroyWeight(await check(k, { numRows, rows: 13, cols: 96, groupSize: 32, layout: numRows % 2 ? 'interleaved8' : 'rows', xOffset }, seed++));
    }
  }
});

// gemv_q4_sg (one row, interleaved8) covers 32 * QPL rows per workgroup: partial workgroups and quads.
testIf((await kernels()).weightLayout === 'interleaved8', 'the device has no 8-lane subgroups, so gemv_q4_sg is not used')(
  'gemv_q4_sg with 1..4 quads per lane, partial last workgroup and row group',
  async () => {
    const gpu = await testDevice();
    let seed = 6000;
    for (const gemvQ4QuadsPerLane of [1, 3, 4]) {
      const k = await MatmulKernels.create(gpu, { q4: true, tuning: { gemvQ4QuadsPerLane } });
      for (const [rows, groupSize] of [
        [13, 32],
        [130, 128],
        [101, 16],
      ] as const) {
        destroyWeight(await check(k, { numRows: 1, rows, cols: 256, groupSize, layout: 'interleaved8', bias: rows === 130 }, seed++));
      }
      k.destroy();
    }
    await assertRejects(MatmulKernels.create(gpu, { q4: true, tuning: { gemvQ4QuadsPerLane: 5 } }), /gemvQ4QuadsPerLane must be 1\.\.4, got 5/);
  },
);

test('portable kernels (no subgroups: gemv, gemm_tile) match the reference', async () => {
  const k = await portableKernels();
  let seed = 5000;
  for (const layout of LAYOUTS) {
    for (const [numRows, groupSize] of [
      [1, 32],
      [2, 128],
      [9, 64],
      [40, 16],
    ] as const) {
      destroyWeight(await check(k, { numRows, rows: 37, cols: 256, groupSize, layout, bias: numRows % 2 === 1 }, seed++));
    }
  }
  destroyWeight(
    await check(
      k,
      {
        numRows: 3,
        rows: 13,
        cols: 64,
        groupSize: 32,
        layout: 'rows',
        maxChunkBytes: 4 * 32,
        xOffset: (await testDevice()).limits.minStorageBufferOffsetAlignment,
      },
      seed++,
    ),
  );
});

test('matmul names what is wrong with a hand-built 4-bit weight', async () => {
  const gpu = await testDevice();
  const k = await kernels();
  const w = uploadQ4Weight(gpu, 'w', randomQ4Matrix(8, 64, 32, 9));
  const buf = gpu.createBuffer('b', 64 * 4, testStorageUsage());
  await runPass(gpu, (pass, u) => {
    assert.throws(() => k.matmul(pass, u, buf, { ...w, groupSize: 24 }, buf, 1), /groupSize 24 is not a power of two/);
    assert.throws(() => k.matmul(pass, u, buf, { ...w, groupSize: 128 }, buf, 1), /64 in features, not a multiple of its groupSize 128/);
    assert.throws(() => k.matmul(pass, u, buf, { ...w, scaleChunks: [] }, buf, 1), /0 scale\/zero buffers for 1 weight chunks/);
  });
  const withoutQ4 = await MatmulKernels.create(gpu);
  await runPass(gpu, (pass, u) => {
    assert.throws(() => withoutQ4.matmul(pass, u, buf, w, buf, 1), /matmul\(w\): 4-bit weights need the q4 kernels; create MatmulKernels with \{ q4: true \}/);
  });
  withoutQ4.destroy();
  destroyWeight(w);
  buf.destroy();
});

test.run();
