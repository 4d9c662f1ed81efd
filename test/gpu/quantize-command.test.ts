// The quantize command end to end: stories260K (hidden 64, intermediate 172: only the attention
// projections quantize at group 32), a random model whose every linear quantizes at group 128
// (multi-head attention, so AWQ also scales o_proj through v_proj) and a random InternLM2 (packed wqkv),
// with --method rtn and awq. The
// folders are checked against the AutoAWQ layout, unpacked by the independent reader in
// test/support/awq-reference.ts, and run on the CPU reference model: AWQ's output error on the
// calibration text must not be worse than RTN's. The scale search alone (duo scaling on and off) is
// checked against an independent CPU scoring of every candidate.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { BUILTIN_CALIBRATION_TEXT } from '../../src/quantize/calibration-text.js';
import { calibrationSequences, quantizeModel, type QuantizeMethod, type QuantizeResult } from '../../src/quantize/quantize.js';
import { AWQ_GRID, GroupOutputs, meanAbsPerColumn, searchScales, siluAndMul } from '../../src/quantize/awq-search.js';
import { dequantize, quantizeRtn } from '../../src/quantize/rtn.js';
import { MatmulKernels } from '../../src/kernels/matmul.js';
import { f16BitsToF32, f32ToF16Bits } from '../../src/kernels/weight.js';
import { referenceMatmul } from '../support/reference-matmul.js';
import { dequantizeAwqFolder, readRawFolder } from '../support/awq-reference.js';
import { ReferenceModel } from '../support/reference-model.js';
import { STORIES260K_DIR, writeSyntheticModel } from '../support/synthetic-model.js';
import { randomF32, testDevice } from '../helpers/gpu.js';
import { collect, openEngine, request } from '../helpers/engine.js';
import { argmax } from '../helpers/runner.js';

let root = '';
test.before(async () => {
  root = await mkdtemp(join(tmpdir(), 'quantize-test-'));
});
test.after(async () => {
  await rm(root, { recursive: true, force: true });
});

const SAMPLES = 2;
const SEQLEN = 64;

async function quantize(modelDir: string, name: string, method: QuantizeMethod, groupSize: number): Promise<QuantizeResult> {
  return quantizeModel({
    modelDir,
    outDir: join(root, name),
    method,
    groupSize,
    calibSamples: SAMPLES,
    calibSeqlen: SEQLEN,
    gpu: await testDevice(),
    calibrationDtype: 'f32',
  });
}

/** Mean squared logit error of `dir` against the original model's logits over the calibration sequences (CPU reference forward). */
async function logitError(dir: string, sequences: number[][], baselineLogits: Float32Array[]): Promise<number> {
  const model = await ReferenceModel.load(dir);
  let sum = 0;
  let n = 0;
  sequences.forEach((seq, i) => {
    model.reset();
    const logits = model.forward(seq);
    const ref = baselineLogits[i]!;
    for (let j = 0; j < logits.length; j++) sum += (logits[j]! - ref[j]!) ** 2;
    n += logits.length;
  });
  return sum / n;
}

async function compareMethods(modelDir: string, tag: string, groupSize: number) {
  const rtn = await quantize(modelDir, `${tag}-rtn`, 'rtn', groupSize);
  const awq = await quantize(modelDir, `${tag}-awq`, 'awq', groupSize);
  const sequences = calibrationSequences(await Tokenizer.fromModelDir(modelDir), BUILTIN_CALIBRATION_TEXT, SAMPLES, SEQLEN);
  const original = await ReferenceModel.load(modelDir);
  const baselineLogits = sequences.map((seq) => {
    original.reset();
    return original.forward(seq);
  });
  const errors: Record<QuantizeMethod, number> = { rtn: 0, awq: 0 };
  for (const [method, result] of [
    ['rtn', rtn],
    ['awq', awq],
  ] as const) {
    const plain = join(root, `${tag}-${method}-dequantized`);
    await dequantizeAwqFolder(result.outDir, plain);
    errors[method] = await logitError(plain, sequences, baselineLogits);
  }
  return { rtn, awq, errors };
}

/** Output MSE of Q(W s) / s against W on x, on the CPU, with the weights rounded to f16 as the search uploads them. */
function cpuScaledLoss(w: Float32Array, rows: number, cols: number, G: number, x: Float32Array, T: number, s: Float32Array | null): number {
  const f16 = (a: Float32Array) => f16BitsToF32(f32ToF16Bits(a));
  const want = referenceMatmul(x, f16(w), T, rows, cols);
  const got = referenceMatmul(x, f16(dequantize(quantizeRtn(w, rows, cols, G, s), s)), T, rows, cols);
  let sum = 0;
  for (let i = 0; i < want.length; i++) sum += (got[i]! - want[i]!) ** 2;
  return sum / want.length;
}

test('scale search, duo scaling on and off: the pick scores as the CPU says, no candidate beats it, never worse than RTN', async () => {
  const gpu = await testDevice();
  const rows = 16,
    cols = 64,
    G = 32,
    T = 48;
  const w = randomF32(rows * cols, 31, 0.1);
  // Activations with a few large channels, the case AWQ exists for.
  const x = randomF32(T * cols, 32);
  for (let t = 0; t < T; t++) for (const k of [3, 17, 40]) x[t * cols + k]! *= 12;
  const xMean = meanAbsPerColumn(x, T, cols);
  // AutoAWQ's w_mean and candidate scales, written out independently of src/quantize/awq-search.ts.
  const wMean = new Float64Array(cols);
  for (let r = 0; r < rows; r++)
    for (let g = 0; g < cols; g += G) {
      const max = Math.max(...w.subarray(r * cols + g, r * cols + g + G).map(Math.abs));
      for (let j = 0; j < G; j++) wMean[g + j]! += Math.abs(w[r * cols + g + j]!) / (max + 1e-6) / rows;
    }
  const candidate = (ratio: number, duo: boolean) => {
    const raw = [...xMean].map((m, k) => Math.max(duo ? m ** ratio / (wMean[k]! ** (1 - ratio) + 1e-4) : m ** ratio, 1e-4));
    const norm = Math.sqrt(Math.max(...raw) * Math.min(...raw));
    return Float32Array.from(raw, (v) => v / norm);
  };
  const rtnCpu = cpuScaledLoss(w, rows, cols, G, x, T, null);
  const outputs = new GroupOutputs(gpu, await MatmulKernels.create(gpu));
  const xb = gpu.upload('x', x);
  try {
    for (const duoScaling of [true, false]) {
      const r = await searchScales(outputs, w, rows, cols, G, xb, T, xMean, { duoScaling });
      const tag = duoScaling ? 'duo' : 'x_mean only';
      const close = (a: number, b: number) => Math.abs(a - b) <= 2e-3 * b;
      assert.ok(close(r.rtnLoss, rtnCpu), `${tag}: rtnLoss ${r.rtnLoss} vs CPU ${rtnCpu}`);
      assert.ok(close(r.loss, cpuScaledLoss(w, rows, cols, G, x, T, r.bestRatio === null ? null : r.scales)), `${tag}: loss of the pick`);
      assert.ok(r.loss <= r.rtnLoss, `${tag}: ${r.loss} > RTN ${r.rtnLoss}`);
      assert.ok(r.loss < 0.8 * r.rtnLoss, `${tag}: outlier channels should make scaling pay (${r.loss} vs ${r.rtnLoss})`);
      assert.ok(r.bestRatio !== null && Number.isInteger(r.bestRatio * AWQ_GRID));
      const want = candidate(r.bestRatio, duoScaling);
      for (let k = 0; k < cols; k++) assert.ok(Math.abs(r.scales[k]! - want[k]!) <= 1e-5 * want[k]!, `${tag}: s[${k}]`);
      for (let i = 0; i < AWQ_GRID; i++) {
        const loss = cpuScaledLoss(w, rows, cols, G, x, T, candidate(i / AWQ_GRID, duoScaling));
        assert.ok(r.loss <= loss * (1 + 2e-3), `${tag}: ratio ${i / AWQ_GRID} scores ${loss} on the CPU, below the pick ${r.loss}`);
      }
    }
  } finally {
    xb.destroy();
    outputs.destroy();
  }
});

test('gate/up are scored on the MLP output (silu(gate) * up through the unquantized down_proj), as AutoAWQ module2inspect', async () => {
  const gpu = await testDevice();
  const I = 16,
    rows = 2 * I,
    cols = 64,
    H = 24,
    G = 32,
    T = 40;
  const w = randomF32(rows * cols, 41, 0.1);
  const down = randomF32(H * I, 42, 0.2);
  const x = randomF32(T * cols, 43);
  for (let t = 0; t < T; t++) for (const k of [5, 33]) x[t * cols + k]! *= 10;
  const xMean = meanAbsPerColumn(x, T, cols);
  const f16 = (a: Float32Array) => f16BitsToF32(f32ToF16Bits(a));
  // The MLP on the CPU: [gate | up] rows of w, SwiGLU written out here, then down_proj.
  const mlp = (wGateUp: Float32Array) => {
    const gu = referenceMatmul(x, f16(wGateUp), T, rows, cols);
    const act = new Float32Array(T * I);
    for (let t = 0; t < T; t++)
      for (let j = 0; j < I; j++) {
        const g = gu[t * rows + j]!;
        act[t * I + j] = (g * gu[t * rows + I + j]!) / (1 + Math.exp(-g));
      }
    return referenceMatmul(act, f16(down), T, H, I);
  };
  const want = mlp(w);
  const mlpLoss = (s: Float32Array | null) => {
    const got = mlp(dequantize(quantizeRtn(w, rows, cols, G, s), s));
    let sum = 0;
    for (let i = 0; i < want.length; i++) sum += (got[i]! - want[i]!) ** 2;
    return sum / want.length;
  };
  const outputs = new GroupOutputs(gpu, await MatmulKernels.create(gpu));
  const xb = gpu.upload('x', x);
  try {
    const blockOutput = (gateUp: Float32Array) => outputs.computeFromHost(down, H, I, siluAndMul(gateUp, T, I), T);
    const r = await searchScales(outputs, w, rows, cols, G, xb, T, xMean, { duoScaling: false, blockOutput });
    const close = (a: number, b: number) => Math.abs(a - b) <= 2e-3 * b;
    assert.ok(close(r.rtnLoss, mlpLoss(null)), `rtnLoss ${r.rtnLoss} vs the CPU MLP's ${mlpLoss(null)}`);
    assert.ok(close(r.loss, mlpLoss(r.bestRatio === null ? null : r.scales)), 'loss of the pick, on the MLP output');
    for (let i = 0; i < AWQ_GRID; i++) {
      const raw = [...xMean].map((m) => Math.max(m ** (i / AWQ_GRID), 1e-4));
      const norm = Math.sqrt(Math.max(...raw) * Math.min(...raw));
      const loss = mlpLoss(Float32Array.from(raw, (v) => v / norm));
      assert.ok(r.loss <= loss * (1 + 2e-3), `ratio ${i / AWQ_GRID} scores ${loss} on the CPU MLP, below the pick ${r.loss}`);
    }
  } finally {
    xb.destroy();
    outputs.destroy();
  }
});

test('stories260K at group 32: attention projections in 4 bits, MLPs listed in modules_to_not_convert; AWQ beats RTN', async () => {
  const { rtn, awq, errors } = await compareMethods(STORIES260K_DIR, 'stories', 32);
  for (const result of [rtn, awq]) {
    const config = JSON.parse(await readFile(join(result.outDir, 'config.json'), 'utf8'));
    assert.is(config.torch_dtype, 'float16');
    const qc = config.quantization_config;
    assert.equal(
      { ...qc, modules_to_not_convert: undefined },
      {
        quant_method: 'awq',
        bits: 4,
        group_size: 32,
        zero_point: true,
        version: 'gemm',
        modules_to_not_convert: undefined,
      },
    );
    const skipped: string[] = qc.modules_to_not_convert;
    assert.is(skipped.length, 15);
    for (let l = 0; l < 5; l++) for (const m of ['gate_proj', 'up_proj', 'down_proj']) assert.ok(skipped.includes(`model.layers.${l}.mlp.${m}`));
    assert.ok(!skipped.some((m) => m.includes('self_attn')));
    const autoAwq = JSON.parse(await readFile(join(result.outDir, 'quant_config.json'), 'utf8'));
    assert.equal([autoAwq.w_bit, autoAwq.q_group_size, autoAwq.zero_point, autoAwq.version], [4, 32, true, 'GEMM']);
    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) assert.ok(existsSync(join(result.outDir, f)), f);

    const tensors = await readRawFolder(result.outDir);
    const q = (name: string) => tensors.get(`model.layers.2.${name}`);
    assert.equal([q('self_attn.q_proj.qweight')?.dtype, q('self_attn.q_proj.qweight')?.shape], ['I32', [64, 8]]);
    assert.equal([q('self_attn.k_proj.qzeros')?.dtype, q('self_attn.k_proj.qzeros')?.shape], ['I32', [2, 4]]);
    assert.equal([q('self_attn.o_proj.scales')?.dtype, q('self_attn.o_proj.scales')?.shape], ['F16', [2, 64]]);
    assert.is(q('self_attn.q_proj.weight'), undefined);
    assert.equal([q('mlp.gate_proj.weight')?.dtype, q('mlp.gate_proj.weight')?.shape], ['F16', [172, 64]]);
    assert.equal(tensors.get('model.embed_tokens.weight')?.dtype, 'F16');
  }
  // Every searched group scored at least as well as RTN on the calibration tokens (GQA: o is not scaled).
  assert.is(awq.searches.length, 5);
  for (const s of awq.searches) assert.ok(s.loss <= s.rtnLoss, `layer ${s.layer} ${s.group}: ${s.loss} > ${s.rtnLoss}`);
  assert.ok(awq.searches.some((s) => s.loss < s.rtnLoss));
  // Clipping (auto_clip) on every quantized linear but q and k, never worse than unclipped on the calibration tokens.
  assert.equal(
    awq.clips.map((c) => `${c.layer}:${c.linear}`),
    [0, 1, 2, 3, 4].flatMap((l) => [`${l}:v`, `${l}:o`]),
  );
  for (const c of awq.clips) assert.ok(c.clippedError <= c.rtnError, `layer ${c.layer} ${c.linear}`);
  assert.ok(errors.awq <= errors.rtn, `AWQ logit MSE ${errors.awq} > RTN ${errors.rtn}`);
  assert.ok(errors.rtn > 0 && errors.rtn < 1, `RTN logit MSE ${errors.rtn}`);
});

test('a random model with every linear quantizable at group 128: nothing left in f16, o_proj scaled through v_proj', async () => {
  const dir = await writeSyntheticModel(join(root, 'random-src'), {
    architecture: 'llama',
    hiddenSize: 128,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 4,
    intermediateSize: 256,
    dtype: 'F16',
    seed: 5,
  });
  const { rtn, awq, errors } = await compareMethods(dir, 'random', 128);
  const config = JSON.parse(await readFile(join(awq.outDir, 'config.json'), 'utf8'));
  assert.is(config.quantization_config.modules_to_not_convert, null);
  assert.equal(rtn.modulesToNotConvert, []);
  const tensors = await readRawFolder(awq.outDir);
  assert.equal(tensors.get('model.layers.1.mlp.down_proj.qweight')?.shape, [256, 16]);
  assert.equal(tensors.get('model.layers.1.mlp.gate_proj.scales')?.shape, [1, 256]);
  assert.equal(tensors.get('lm_head.weight')?.dtype, 'F16');
  assert.equal(
    awq.searches.map((s) => `${s.layer}:${s.group}`),
    ['0:q/k/v', '0:o', '0:gate/up', '0:down', '1:q/k/v', '1:o', '1:gate/up', '1:down'],
  );
  for (const s of awq.searches) assert.ok(s.loss <= s.rtnLoss, `layer ${s.layer} ${s.group}: ${s.loss} > ${s.rtnLoss}`);
  assert.is(awq.clips.length, 2 * 5);
  assert.ok(errors.awq <= errors.rtn, `AWQ logit MSE ${errors.awq} > RTN ${errors.rtn}`);
});

test('InternLM2 (packed wqkv with bias, multi-head): wqkv searched as q/k/v, o scaled through v, written as one 4-bit wqkv', async () => {
  const dir = await writeSyntheticModel(join(root, 'internlm2-src'), {
    architecture: 'internlm2',
    hiddenSize: 128,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 4,
    intermediateSize: 256,
    qkvBias: true,
    dtype: 'F16',
    seed: 9,
  });
  const { awq, errors } = await compareMethods(dir, 'internlm2', 128);
  const tensors = await readRawFolder(awq.outDir);
  // wqkv: (1 q head + k + v) per kv head x 4 kv heads x 32 = 384 rows, packed along the outputs.
  assert.equal(tensors.get('model.layers.0.attention.wqkv.qweight')?.shape, [128, 48]);
  assert.equal(tensors.get('model.layers.0.attention.wqkv.bias')?.dtype, 'F16');
  assert.equal(tensors.get('model.layers.1.feed_forward.w2.qweight')?.shape, [256, 16]);
  assert.ok(!tensors.has('model.layers.0.attention.wqkv.weight') && !tensors.has('model.layers.0.attention.wqkv#q.weight'));
  assert.equal(
    awq.searches.map((s) => `${s.layer}:${s.group}`),
    ['0:q/k/v', '0:o', '0:gate/up', '0:down', '1:q/k/v', '1:o', '1:gate/up', '1:down'],
  );
  assert.ok(errors.awq <= errors.rtn, `AWQ logit MSE ${errors.awq} > RTN ${errors.rtn}`);
  // A misplaced row block of wqkv (k and v swapped) gives ~2 here; 4-bit rounding ~0.1.
  assert.ok(errors.rtn > 0 && errors.rtn < 0.5, `RTN logit MSE ${errors.rtn}`);
  // The server loads the folder (wqkv split after unpacking) and decodes what the CPU reference decodes.
  const engine = await openEngine({ modelDir: awq.outDir, dtype: 'f32' });
  let tokens: number[];
  try {
    tokens = (await collect(engine.generate(request([1, 40, 50], { maxTokens: 12, ignoreEos: true })))).tokenIds;
  } finally {
    await engine.shutdown();
  }
  const reference = await ReferenceModel.load(join(root, 'internlm2-awq-dequantized'));
  let logits: Float32Array = reference.forward([1, 40, 50]).slice(2 * reference.config.vocabSize);
  const expected: number[] = [];
  for (let i = 0; i < 12; i++) {
    expected.push(argmax(logits));
    logits = reference.forward([expected[i]!]);
  }
  assert.equal(tokens, expected);
});

test('q/k/v are scored through the attention block (host attention checked against the engine): Qwen2 biases, Qwen3 q/k norm', async () => {
  for (const [architecture, extra] of [
    ['qwen2', {}],
    ['qwen3', { headDim: 32 }],
  ] as const) {
    const dir = await writeSyntheticModel(join(root, `${architecture}-src`), {
      architecture,
      hiddenSize: 128,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 2,
      intermediateSize: 256,
      dtype: 'F16',
      seed: 11,
      ...extra,
    });
    // The search throws when its attention block disagrees with the engine's attention output.
    const { awq, errors } = await compareMethods(dir, architecture, 64);
    assert.equal(
      awq.searches.map((s) => s.group),
      ['q/k/v', 'gate/up', 'down', 'q/k/v', 'gate/up', 'down'],
    );
    for (const s of awq.searches) assert.ok(s.loss <= s.rtnLoss, `${architecture} layer ${s.layer} ${s.group}`);
    assert.ok(errors.awq <= errors.rtn, `${architecture}: AWQ logit MSE ${errors.awq} > RTN ${errors.rtn}`);
  }
});

test('the engine loads the AWQ folder and greedy-decodes what the CPU reference decodes from its dequantized weights', async () => {
  const awqDir = join(root, 'stories-awq');
  const engine = await openEngine({ modelDir: awqDir, dtype: 'f16' });
  let tokens: number[];
  try {
    tokens = (await collect(engine.generate(request([1], { maxTokens: 20, ignoreEos: true })))).tokenIds;
  } finally {
    await engine.shutdown();
  }
  const reference = await ReferenceModel.load(join(root, 'stories-awq-dequantized'));
  const expected: number[] = [];
  let logits = reference.forward([1]);
  for (let i = 0; i < 20; i++) {
    expected.push(argmax(logits));
    logits = reference.forward([expected[i]!]);
  }
  assert.equal(tokens, expected);
});

test('bad arguments fail naming the flag', async () => {
  const gpu = await testDevice();
  const base = { modelDir: STORIES260K_DIR, method: 'rtn' as const, calibSamples: 1, calibSeqlen: 8, gpu };
  await assertRejects(quantizeModel({ ...base, outDir: join(root, 'bad1'), groupSize: 100 }), /--group-size/);
  await assertRejects(quantizeModel({ ...base, outDir: STORIES260K_DIR, groupSize: 32 }), /--out/);
  await assertRejects(quantizeModel({ ...base, outDir: join(root, 'stories-rtn'), groupSize: 32 }), /--out .* is not empty/);
  await assertRejects(quantizeModel({ ...base, method: 'awq', outDir: join(root, 'bad2'), groupSize: 32, calibText: 'too short' }), /--calib-seqlen/);
});

async function assertRejects(p: Promise<unknown>, pattern: RegExp): Promise<void> {
  try {
    await p;
  } catch (err) {
    assert.match((err as Error).message, pattern);
    return;
  }
  assert.unreachable(`expected a rejection matching ${pattern}`);
}

test.run();
