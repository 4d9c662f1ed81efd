// RMSNorm, SwiGLU and the row gathers against float64 / host references at awkward shapes.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ActivationKernel, type ActivationOptions } from '../../src/kernels/activation.js';
import { EmbeddingKernel } from '../../src/kernels/embedding.js';
import { defaultRowReduction, RmsNormKernel, type RmsNormOptions } from '../../src/kernels/rmsnorm.js';
import { f16BitsToF32, f32ToF16Bits, uploadWeight } from '../../src/kernels/weight.js';
import { assertClose, randomF32, runPass, testDevice } from '../helpers/gpu.js';
import { skip } from '../helpers/skip.js';

const OUT = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

function rmsNormReference(x: Float32Array, weight: Float32Array, numRows: number, dim: number, eps: number): Float64Array {
  const out = new Float64Array(numRows * dim);
  for (let r = 0; r < numRows; r++) {
    let sumSq = 0;
    for (let i = 0; i < dim; i++) sumSq += x[r * dim + i]! ** 2;
    const scale = 1 / Math.sqrt(sumSq / dim + eps);
    for (let i = 0; i < dim; i++) out[r * dim + i] = x[r * dim + i]! * scale * weight[i]!;
  }
  return out;
}

const DIMS = [1, 7, 64, 769, 4096];
const ROWS = [1, 3, 33];

/** Every way the kernel can run on this device: each reduction, with and without vec4 reads. */
async function rmsNormVariants(): Promise<{ name: string; kernel: RmsNormKernel }[]> {
  const gpu = await testDevice();
  const reductions: RmsNormOptions['reduction'][] = ['workgroup256', 'workgroup8'];
  if (gpu.hasSubgroups && (gpu.adapter.info.subgroupMinSize ?? 0) >= 8) reductions.push('subgroup8');
  const variants = [];
  for (const reduction of reductions) {
    for (const vec4 of [false, true])
      variants.push({ name: `${reduction}${vec4 ? '/vec4' : ''}`, kernel: await RmsNormKernel.create(gpu, { reduction, vec4 }) });
  }
  return variants;
}

test('rmsnorm picks the reduction by adapter: 8-lane on CPU adapters, 256-lane on GPUs', async () => {
  const gpu = await testDevice();
  const cpu = gpu.adapter.info.architecture === 'software' || /llvmpipe|swiftshader/i.test(gpu.adapter.info.description);
  const want = !cpu ? 'workgroup256' : gpu.hasSubgroups && (gpu.adapter.info.subgroupMinSize ?? 0) >= 8 ? 'subgroup8' : 'workgroup8';
  assert.is(defaultRowReduction(gpu), want);
  assert.is((await RmsNormKernel.create(gpu)).reduction, want);
});

test('rmsnorm matches HF Llama RMSNorm at every dim x rows shape, on every path', async () => {
  const gpu = await testDevice();
  for (const { name, kernel: k } of await rmsNormVariants()) {
    for (const dim of DIMS) {
      for (const numRows of ROWS) {
        const eps = dim === 1 ? 1e-6 : 1e-5;
        // Rows at very different scales: a norm that mixed rows or dropped eps would show.
        const x = randomF32(numRows * dim, dim + numRows, 3).map((v, i) => v * (1 + (Math.floor(i / dim) % 4) * 10));
        const w = randomF32(dim, dim * 7, 1.5);
        const out = gpu.createBuffer('out', numRows * dim * 4, OUT());
        await runPass(gpu, (pass, u) => k.norm(pass, u, { x: gpu.upload('x', x), weight: gpu.upload('w', w), out, numRows, dim, eps }));
        assertClose(await gpu.readF32(out, numRows * dim), rmsNormReference(x, w, numRows, dim, eps), 2e-5, 1e-6, `norm ${name} dim=${dim} rows=${numRows}`);
      }
    }
  }
});

test('addNorm writes residual + x back and normalises the sum, on every path', async () => {
  const gpu = await testDevice();
  for (const { name, kernel: k } of await rmsNormVariants()) {
    for (const dim of DIMS) {
      for (const numRows of ROWS) {
        const n = numRows * dim;
        const x = randomF32(n, 100 + dim, 2);
        const res = randomF32(n, 200 + numRows, 4);
        const w = randomF32(dim, 300 + dim);
        const residual = gpu.upload('residual', res);
        const out = gpu.createBuffer('out', n * 4, OUT());
        await runPass(gpu, (pass, u) => k.addNorm(pass, u, { x: gpu.upload('x', x), residual, weight: gpu.upload('w', w), out, numRows, dim, eps: 1e-5 }));
        const sum = res.map((v, i) => v + x[i]!);
        assert.equal(Array.from(await gpu.readF32(residual, n)), Array.from(sum), `residual ${name} dim=${dim} rows=${numRows}`);
        assertClose(await gpu.readF32(out, n), rmsNormReference(sum, w, numRows, dim, 1e-5), 2e-5, 1e-6, `addNorm ${name} dim=${dim} rows=${numRows}`);
      }
    }
  }
});

/** `pass`, counting the dispatches recorded through it into `dispatches`. */
function countingPass(pass: GPUComputePassEncoder, dispatches: number[][]): GPUComputePassEncoder {
  return {
    setPipeline: (pipeline: GPUComputePipeline) => pass.setPipeline(pipeline),
    setBindGroup: (index: number, group: GPUBindGroup) => pass.setBindGroup(index, group),
    dispatchWorkgroups: (x: number, y?: number, z?: number) => {
      dispatches.push([x, y ?? 1, z ?? 1]);
      pass.dispatchWorkgroups(x, y, z);
    },
  } as unknown as GPUComputePassEncoder;
}

test('rmsnorm and addNorm with zero rows dispatch nothing and leave out and residual as they were, on every path', async () => {
  const gpu = await testDevice();
  const dim = 8;
  const sentinel = Float32Array.from({ length: dim }, (_, i) => 100 + i);
  const x = gpu.upload('x', randomF32(dim, 11, 2));
  const weight = gpu.upload('w', randomF32(dim, 12));
  for (const { name, kernel: k } of await rmsNormVariants()) {
    const out = gpu.upload('out', sentinel);
    const residual = gpu.upload('residual', sentinel);
    const dispatches: number[][] = [];
    // A zero-row dispatch would still run one workgroup (grid1d never returns 0), which could write row 0.
    await runPass(gpu, (pass, u) => {
      k.norm(countingPass(pass, dispatches), u, { x, weight, out, numRows: 0, dim, eps: 1e-5 });
      k.addNorm(countingPass(pass, dispatches), u, { x, residual, weight, out, numRows: 0, dim, eps: 1e-5 });
    });
    assert.equal(dispatches, [], `${name}: nothing recorded for zero rows`);
    assert.equal(Array.from(await gpu.readF32(out, dim)), Array.from(sentinel), `${name}: out untouched`);
    assert.equal(Array.from(await gpu.readF32(residual, dim)), Array.from(sentinel), `${name}: residual untouched`);
    // The same calls with one row do dispatch and write: the spy and the sentinel check can fail.
    await runPass(gpu, (pass, u) => k.addNorm(countingPass(pass, dispatches), u, { x, residual, weight, out, numRows: 1, dim, eps: 1e-5 }));
    assert.is(dispatches.length, 1, `${name}: one row, one dispatch`);
    assert.not.equal(Array.from(await gpu.readF32(residual, dim)), Array.from(sentinel), `${name}: one row written`);
    out.destroy();
    residual.destroy();
  }
  const k = await RmsNormKernel.create(gpu);
  for (const numRows of [-1, 1.5]) {
    assert.throws(() => k.norm({} as GPUComputePassEncoder, {} as never, { x, weight, out: x, numRows, dim, eps: 1e-5 }), /must be a non-negative integer/);
  }
});

test('siluAndMul matches silu(gate) * up at odd sizes and multiples of 4, including saturated gates, on every path', async () => {
  const gpu = await testDevice();
  // Default (vec4 where intermediate % 4 == 0), forced scalar, and the GPU shape (256 lanes, 1 column each),
  // plus tiny workgroups so rows need several column groups.
  const variants: ActivationOptions[] = [{}, { vec4: false }, { workgroupSize: 256, columnsPerLane: 1 }, { workgroupSize: 8, columnsPerLane: 2 }];
  for (const options of variants) {
    const k = await ActivationKernel.create(gpu, options);
    for (const [numRows, inter] of [
      [1, 1],
      [3, 7],
      [5, 1001],
      [33, 129],
      [2, 4],
      [3, 2052],
      [17, 96],
    ] as const) {
      const gateUp = randomF32(numRows * 2 * inter, numRows * inter, 8);
      gateUp[0] = -120; // exp(120) overflows f32: must give -0, not NaN
      if (inter > 1) gateUp[1] = 95;
      const out = gpu.createBuffer('out', numRows * inter * 4, OUT());
      await runPass(gpu, (pass, u) => k.siluAndMul(pass, u, { gateUp: gpu.upload('gu', gateUp), out, numRows, intermediate: inter }));
      const want = new Float64Array(numRows * inter);
      for (let r = 0; r < numRows; r++) {
        for (let i = 0; i < inter; i++) {
          const g = gateUp[r * 2 * inter + i]!;
          want[r * inter + i] = (g / (1 + Math.exp(-g))) * gateUp[r * 2 * inter + inter + i]!;
        }
      }
      assertClose(await gpu.readF32(out, numRows * inter), want, 1e-5, 1e-6, `siluAndMul ${JSON.stringify(options)} rows=${numRows} I=${inter}`);
    }
  }
});

/** Host gather: rows of `table` ([rows, cols] row-major) picked by ids. */
function gatherReference(table: Float32Array, cols: number, ids: readonly number[]): Float32Array {
  const out = new Float32Array(ids.length * cols);
  ids.forEach((id, t) => out.set(table.subarray(id * cols, (id + 1) * cols), t * cols));
  return out;
}

async function checkGather(
  kernel: EmbeddingKernel,
  dtype: 'f32' | 'f16',
  rows: number,
  cols: number,
  maxChunkBytes: number | undefined,
  what: string,
): Promise<number> {
  const gpu = await testDevice();
  const data = randomF32(rows * cols, rows + cols, 2);
  const table = uploadWeight(gpu, 'embed', data, rows, cols, dtype, maxChunkBytes);
  const ids = [0, rows - 1, 3 % rows, 3 % rows, Math.floor(rows / 2), Math.max(rows - 2, 0), 1 % rows, Math.floor(rows / 3)];
  const out = gpu.createBuffer('out', ids.length * cols * 4, OUT());
  await runPass(gpu, (pass, u) => kernel.gather(pass, u, { table, ids: gpu.upload('ids', new Uint32Array(ids)), out, numTokens: ids.length }));
  const values = dtype === 'f16' ? f16BitsToF32(f32ToF16Bits(data)) : data;
  assert.equal(Array.from(await gpu.readF32(out, ids.length * cols)), Array.from(gatherReference(values, cols, ids)), what);
  return table.chunks.length;
}

test('gather copies f32 and f16 embedding rows, single- and multi-chunk, odd cols', async () => {
  const gpu = await testDevice();
  const kernels = [await EmbeddingKernel.create(gpu, { nativeF16: false })];
  if (gpu.hasF16) kernels.push(await EmbeddingKernel.create(gpu, { nativeF16: true }));
  for (const [i, k] of kernels.entries()) {
    const path = i === 0 ? 'packed' : 'native';
    for (const dtype of ['f32', 'f16'] as const) {
      for (const [rows, cols] of [
        [37, 13],
        [50, 64],
        [11, 1],
      ] as const) {
        assert.is(await checkGather(k, dtype, rows, cols, undefined, `${dtype}/${path} ${rows}x${cols}`), 1);
        // Chunks of 4 rows (rows are padded to 8 elements, so 4 rows of f16 cols<=8 are 64 bytes).
        const rowBytes = Math.ceil(cols / 8) * 8 * (dtype === 'f32' ? 4 : 2);
        const numChunks = await checkGather(k, dtype, rows, cols, 4 * rowBytes, `${dtype}/${path} ${rows}x${cols} chunked`);
        assert.is(numChunks, Math.ceil(rows / 4), 'the chunked path was exercised');
      }
    }
  }
});

test('gatherRows picks f32 activation rows in any order, with repeats', async () => {
  const gpu = await testDevice();
  const k = await EmbeddingKernel.create(gpu);
  for (const dim of [1, 769]) {
    const numSrc = 40;
    const src = randomF32(numSrc * dim, dim, 5);
    const rows = [39, 0, 5, 5, 17];
    const out = gpu.createBuffer('out', rows.length * dim * 4, OUT());
    await runPass(gpu, (pass, u) =>
      k.gatherRows(pass, u, { src: gpu.upload('src', src), rows: gpu.upload('rows', new Uint32Array(rows)), out, numRows: rows.length, dim }),
    );
    assert.equal(Array.from(await gpu.readF32(out, rows.length * dim)), Array.from(gatherReference(src, dim, rows)), `gatherRows dim=${dim}`);
  }
});

// Paths the "every path" tests above cannot take on this adapter.
const device = await testDevice();
if (!(device.hasSubgroups && (device.adapter.info.subgroupMinSize ?? 0) >= 8)) {
  skip('rmsnorm/addNorm subgroup8 path', 'the adapter has no subgroups of at least 8 lanes');
}
if (!device.hasF16) skip('gather native f16 path', 'the adapter lacks shader-f16 (the packed path ran)');

test.run();
