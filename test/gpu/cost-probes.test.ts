// bench:floor's probes: the cost-probe loops read what they claim through each load path, and the
// no-loads variants of the production matmul shader still find the statements they replace.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CostProbes, GEMM_SG_W_LOAD, GEMM_SG_X_LOAD, HOT_WORDS, LANES, withoutLoads } from '../../bench/floor.js';
import { matmulSource, type WeightStorage } from '../../src/kernels/matmul.js';
import { runPass, testDevice } from '../helpers/gpu.js';

const ITERS = 300; // > HOT_WORDS / 16, so the reads wrap around their row
const GROUPS = 9; // rows 0..7 and row 0 again

/** CPU sum of what cost_probes.wgsl's ssbo_vec4 loads for one invocation (word i holds i*4 .. i*4+3). */
function expectedSum(group: number, lane: number): number[] {
  const sum = [0, 0, 0, 0];
  for (let i = 0; i < ITERS; i++) {
    const word = (group % 8) * HOT_WORDS + ((16 * i + 2 * lane) % HOT_WORDS);
    for (const w of [word, word + 1]) for (let c = 0; c < 4; c++) sum[c] = (sum[c]! + 4 * w + c) >>> 0;
  }
  return sum;
}

test('storage, uniform and texture probes load the same words', async () => {
  const gpu = await testDevice();
  const probes = await CostProbes.create(gpu, ITERS);
  const outputs: Record<string, Uint32Array> = {};
  for (const entry of ['ssbo_vec4', 'ubo_vec4', 'texture_rgba32uint']) {
    await runPass(gpu, probes.record(entry, GROUPS));
    outputs[entry] = await probes.readOut(GROUPS);
  }
  for (let g = 0; g < GROUPS; g++) {
    for (let lane = 0; lane < LANES; lane++) {
      const at = (g * LANES + lane) * 4;
      const want = expectedSum(g, lane);
      assert.equal([...outputs.ssbo_vec4!.subarray(at, at + 4)], want, `storage, group ${g} lane ${lane}`);
      assert.equal([...outputs.texture_rgba32uint!.subarray(at, at + 4)], want, `texture, group ${g} lane ${lane}`);
      // The uniform copy holds row 0 only (64 KiB), which groups 0 and 8 read.
      if (g % 8 === 0) assert.equal([...outputs.ubo_vec4!.subarray(at, at + 4)], want, `uniform, group ${g} lane ${lane}`);
    }
  }
  probes.destroy();
});

test('the timing-only probes compile and run', async () => {
  const gpu = await testDevice();
  const probes = await CostProbes.create(gpu, ITERS);
  for (const entry of ['empty_loop', 'mul_add', 'ssbo_u32', 'tiny']) await runPass(gpu, probes.record(entry, GROUPS));
  gpu.throwIfFailed();
  probes.destroy();
});

test('no-loads matmul variants replace their statements in every weight view, and compile', async () => {
  for (const storage of ['f32', 'f16', 'f16_packed'] as WeightStorage[]) {
    const source = matmulSource(storage, true);
    const noW = withoutLoads(source, 'w'),
      noX = withoutLoads(source, 'x'),
      none = withoutLoads(source, 'both');
    assert.ok(source.includes(GEMM_SG_W_LOAD) && source.includes(GEMM_SG_X_LOAD), `${storage}: gemm_sg loads`);
    assert.ok(!noW.includes(GEMM_SG_W_LOAD) && noW.includes(GEMM_SG_X_LOAD), `${storage}: only the weight load replaced`);
    assert.ok(!noX.includes(GEMM_SG_X_LOAD) && noX.includes(GEMM_SG_W_LOAD), `${storage}: only the x load replaced`);
    assert.ok(!none.includes(GEMM_SG_W_LOAD) && !none.includes(GEMM_SG_X_LOAD), `${storage}: both loads replaced`);
  }
  assert.throws(() => withoutLoads('fn main() {}', 'both'), /no longer contains/);
  const gpu = await testDevice();
  // The smallest tile compiles fastest; the replaced text is the same for every tile.
  await gpu.pipelines.get({
    kernel: 'floor-probe',
    code: withoutLoads(matmulSource('f16_packed', true), 'both'),
    entryPoint: 'gemm_sg',
    constants: { TM: 1, TN: 1, MR: 2 },
  });
});

test.run();
