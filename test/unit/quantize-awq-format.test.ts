// The AWQ packer and RTN against the format definition: hand-made words with known nibbles, random
// matrices round-tripped through an independent unpacker (test/support/awq-reference.ts), RTN's error
// bound and AutoAWQ's rounding, the scale grid, the quantization plan and the sharded writer.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseModelConfig } from '../../src/checkpoint/config.js';
import { SafetensorsReader } from '../../src/checkpoint/safetensors.js';
import { writeSafetensorsFolder } from '../../src/checkpoint/safetensors-writer.js';
import { f16ToNumber, f32ToF16, f32ToF16Bits } from '../../src/common/half.js';
import { packAwq, packAwqTransposed } from '../../src/quantize/awq-pack.js';
import { clipWeights, groupGrams } from '../../src/quantize/awq-clip.js';
import { awqScales, meanAbsPerColumn, weightMeanPerColumn } from '../../src/quantize/awq-search.js';
import { awqQuantizationConfig, linearModules, planQuantization } from '../../src/quantize/plan.js';
import { calibrationSequences } from '../../src/quantize/quantize.js';
import { dequantize, fakeQuantizeScaled, quantizeRtn, roundHalfEven } from '../../src/quantize/rtn.js';
import { dequantizeAwqLinear, unpackAwqWords, type RawTensor } from '../support/awq-reference.js';
import { rng } from '../support/random.js';

function normal(n: number, seed: number, std = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r()) * std;
  return out;
}

const raw = (dtype: string, shape: number[], data: Uint32Array | Uint16Array): RawTensor => ({
  dtype,
  shape,
  bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
});

test('a packed word holds column 8c + [0,2,4,6,1,3,5,7][i] in nibble i', () => {
  // 8 output columns, 1 input row: column j has code j + 1.
  const codes = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
  const words = packAwqTransposed(codes, 8, 1);
  // nibbles 0..7 = columns 0,2,4,6,1,3,5,7 = codes 1,3,5,7,2,4,6,8, lowest nibble first.
  assert.equal(words.length, 1);
  assert.equal(words[0]!.toString(16), '86427531');
  // Second word group and second input row land where the [in, out/8] layout says.
  const wide = new Uint8Array(16 * 2); // [16 out, 2 in]
  wide[9 * 2 + 1] = 0xf; // out column 9, input row 1 -> word (1, 1), nibble 4 (column 8 + 1)
  const w2 = packAwqTransposed(wide, 16, 2);
  assert.equal([...w2], [0, 0, 0, 0xf << 16]);
});

test('random matrices survive pack -> independent unpack exactly', () => {
  const rows = 24,
    cols = 64,
    G = 32;
  const w = normal(rows * cols, 7, 0.05);
  const m = quantizeRtn(w, rows, cols, G);
  const t = packAwq(m);
  assert.equal(t.qweight.length, (cols * rows) / 8);
  assert.equal(t.qzeros.length, ((cols / G) * rows) / 8);
  assert.equal(t.scales.length, (cols / G) * rows);
  // Codes and zeros through the test's own unpacker, in [in, out] and [groups, out] orientation.
  const codes = unpackAwqWords(t.qweight, cols, rows / 8);
  for (let o = 0; o < rows; o++) for (let k = 0; k < cols; k++) assert.is(codes[k * rows + o], m.q[o * cols + k]);
  const zeros = unpackAwqWords(t.qzeros, cols / G, rows / 8);
  for (let o = 0; o < rows; o++) for (let g = 0; g < cols / G; g++) assert.is(zeros[g * rows + o], m.zeros[o * (cols / G) + g]);
  const deq = dequantizeAwqLinear(raw('I32', [cols, rows / 8], t.qweight), raw('I32', [cols / G, rows / 8], t.qzeros), raw('F16', [cols / G, rows], t.scales));
  assert.equal([deq.out, deq.in, deq.groupSize], [rows, cols, G]);
  assert.equal([...deq.w], [...dequantize(m)]);
});

test('RTN follows pseudo_quantize_tensor: f16 scale (max-min)/15, zero round(-min/scale), error <= scale/2', () => {
  // A group spanning [-1, 2]: scale = f16(3/15), zero = round(1 / scale) = 5.
  const g = new Float32Array(32);
  for (let i = 0; i < 32; i++) g[i] = -1 + (3 * i) / 31;
  const one = quantizeRtn(g, 1, 32, 32);
  // Rows must be a multiple of 8 only for packing; quantizing one row is fine.
  assert.is(one.scales[0], f16ToNumber(f32ToF16(3 / 15)));
  assert.is(one.zeros[0], 5);
  assert.is(one.q[0], 0);
  assert.is(one.q[31], 15);

  const rows = 16,
    cols = 128,
    G = 64;
  const w = normal(rows * cols, 11, 0.1);
  const m = quantizeRtn(w, rows, cols, G);
  const deq = dequantize(m);
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < cols; k++) {
      const s = m.scales[r * (cols / G) + Math.floor(k / G)]!;
      assert.ok(f16ToNumber(f32ToF16(s)) === s, 'scales are f16 values');
      assert.ok(Math.abs(deq[r * cols + k]! - w[r * cols + k]!) <= s / 2 + 1e-7, `error at ${r},${k} exceeds scale/2`);
      assert.ok(m.q[r * cols + k]! <= 15);
    }
  }
  // A group of positive values only: zero clamps to 0 (AutoAWQ clamps zeros to [0, 15]).
  const pos = new Float32Array(32).map((_, i) => 1 + i);
  assert.is(quantizeRtn(pos, 1, 32, 32).zeros[0], 0);
});

test('rounding is half to even, as torch.round', () => {
  assert.equal([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4, 2.6].map(roundHalfEven), [0, 2, 2, -0, -2, -2, 2, 3]);
});

test('AWQ scale grid: ratio 0 is RTN; scales are normalised by sqrt(max * min)', () => {
  const xMean = Float32Array.from([0.01, 0.5, 2, 8]);
  assert.equal([...awqScales(xMean, 0)], [1, 1, 1, 1]);
  const s = awqScales(xMean, 0.5);
  const max = Math.max(...s),
    min = Math.min(...s);
  assert.ok(Math.abs(max * min - 1) < 1e-5);
  assert.ok(Math.abs(s[3]! / s[0]! - Math.sqrt(8 / 0.01)) < 1e-3);
  assert.equal([...meanAbsPerColumn(Float32Array.from([1, -2, -3, 4]), 2, 2)], [2, 3]);
  // The search's fused fake quantization equals quantize-then-dequantize of W * s, divided by s.
  const w = normal(8 * 64, 3, 0.1);
  const sc = awqScales(Float32Array.from(normal(64, 4)).map(Math.abs), 0.4);
  const fake = fakeQuantizeScaled(w, 8, 64, 32, sc, new Float32Array(8 * 64));
  const ref = dequantize(quantizeRtn(w, 8, 64, 32, sc), sc);
  for (let i = 0; i < fake.length; i++) assert.ok(Math.abs(fake[i]! - ref[i]!) <= 1e-6 * Math.max(1, Math.abs(ref[i]!)));
});

test('AWQ duo scaling: w_mean from group-normalised |w|, s = x_mean^r / (w_mean^(1-r) + 1e-4), by hand', () => {
  // W [2, 4], group 2. Groups |w| / max: row 0 [1,-2] -> [1/2, 1], [4, 0] -> [1, 0]; row 1 [-3, 3] -> [1, 1],
  // [1, 2] -> [1/2, 1]. Mean over the rows: w_mean = [3/4, 1, 3/4, 1/2] (less the 1e-6 in each max).
  const w = Float32Array.from([1, -2, 4, 0, -3, 3, 1, 2]);
  const wMean = weightMeanPerColumn(w, 2, 4, 2);
  [0.75, 1, 0.75, 0.5].forEach((v, k) => assert.ok(Math.abs(wMean[k]! - v) < 1e-6, `w_mean[${k}] ${wMean[k]} vs ${v}`));
  const xMean = Float32Array.from([4, 1, 0.25, 1]);
  // r = 1/2: x^(1/2) / w^(1/2) = [2/sqrt(3/4), 1, (1/2)/sqrt(3/4), 1/sqrt(1/2)] = [2.3094, 1, 0.57735, 1.41421];
  // max * min = 4/3, so over sqrt(4/3): [2, sqrt(3)/2, 1/2, sqrt(3/2)] (the +1e-4 moves them by < 2e-4).
  const half = awqScales(xMean, 0.5, wMean);
  [2, Math.sqrt(3) / 2, 0.5, Math.sqrt(1.5)].forEach((v, k) => assert.ok(Math.abs(half[k]! - v) < 2e-4, `s[${k}] ${half[k]} vs ${v}`));
  // r = 0 is not RTN with duo scaling: s = 1 / (w_mean + 1e-4) = [4/3, 1, 4/3, 2] over sqrt(2).
  const zero = awqScales(xMean, 0, wMean);
  [4 / 3, 1, 4 / 3, 2].forEach((v, k) => assert.ok(Math.abs(zero[k]! - v / Math.SQRT2) < 2e-4, `s0[${k}] ${zero[k]}`));
  // The same with the epsilons exactly, from a plain loop written from AutoAWQ's formula.
  for (const ratio of [0, 0.35, 0.5, 0.95]) {
    const raw = [...xMean].map((x, k) => Math.max(x ** ratio / (wMean[k]! ** (1 - ratio) + 1e-4), 1e-4));
    const norm = Math.sqrt(Math.max(...raw) * Math.min(...raw));
    const got = awqScales(xMean, ratio, wMean);
    raw.forEach((v, k) => assert.ok(Math.abs(got[k]! - v / norm) <= 1e-6 * (v / norm), `ratio ${ratio} s[${k}] ${got[k]} vs ${v / norm}`));
  }
  // Without w_mean it is the x_mean-only grid.
  assert.equal([...awqScales(xMean, 0.5, null)], [...awqScales(xMean, 0.5)]);
  assert.throws(() => awqScales(xMean, 0.5, Float32Array.from([1, 1])), /w_mean has 2 channels/);
  assert.throws(() => weightMeanPerColumn(w, 2, 4, 3), /group size 3/);
});

test('AWQ clipping: errors from the Gram matrices match the direct sums; never worse than unclipped RTN', () => {
  const rows = 8,
    cols = 64,
    G = 32,
    T = 40;
  const w = normal(rows * cols, 21, 0.05);
  const x = normal(T * cols, 22);
  const original = Float32Array.from(w);
  const r = clipWeights(w, rows, cols, G, groupGrams(x, T, cols, G));
  // Direct: sum over tokens and groups of (x . (Q(w) - w))^2 for plain RTN and for the clipped weights.
  const direct = (weights: Float32Array) => {
    const q = dequantize(quantizeRtn(weights, rows, cols, G));
    let err = 0;
    for (let t = 0; t < T; t++)
      for (let o = 0; o < rows; o++)
        for (let g = 0; g < cols / G; g++) {
          let s = 0;
          for (let j = 0; j < G; j++) s += x[t * cols + g * G + j]! * (q[o * cols + g * G + j]! - original[o * cols + g * G + j]!);
          err += s * s;
        }
    return err;
  };
  assert.ok(Math.abs(r.rtnError - direct(original)) <= 1e-6 * direct(original), `${r.rtnError} vs ${direct(original)}`);
  assert.ok(Math.abs(r.clippedError - direct(w)) <= 1e-3 * direct(w), `${r.clippedError} vs ${direct(w)}`);
  assert.ok(r.clippedError <= r.rtnError);
  // Gaussian groups' extreme weights are worth clipping for some groups (AutoAWQ's reason for the search).
  assert.ok(r.clippedGroups >= 1 && r.clippedError < r.rtnError, `${r.clippedGroups} groups clipped`);
});

test('plan: stories260K shapes keep the MLPs in f16 and list them in modules_to_not_convert', async () => {
  const { STORIES260K_DIR } = await import('../support/synthetic-model.js');
  const config = parseModelConfig(JSON.parse(await readFile(join(STORIES260K_DIR, 'config.json'), 'utf8')));
  const plan = planQuantization(config, 32);
  assert.equal([...plan.quantized].sort(), ['k', 'o', 'q', 'v']);
  assert.is(plan.modulesToNotConvert.length, 3 * config.numLayers);
  assert.ok(plan.modulesToNotConvert.includes('model.layers.0.mlp.down_proj'));
  assert.ok(plan.modulesToNotConvert.includes('model.layers.4.mlp.gate_proj'));
  // hidden 64 is not a multiple of 128: nothing quantizes at the default group size.
  assert.is(planQuantization(config, 128).quantized.size, 0);
  const qc = awqQuantizationConfig(plan);
  assert.equal(
    { quant_method: qc.quant_method, bits: qc.bits, group_size: qc.group_size, zero_point: qc.zero_point, version: qc.version },
    { quant_method: 'awq', bits: 4, group_size: 32, zero_point: true, version: 'gemm' },
  );
  assert.throws(() => planQuantization(config, 48), /power of two/);
  // InternLM2: the same linears under its own names, wqkv once (q, k and v packed in one module).
  const internlm2 = planQuantization({ ...config, architecture: 'internlm2' }, 32);
  assert.equal(internlm2.modulesToNotConvert.slice(0, 3), [
    'model.layers.0.feed_forward.w1',
    'model.layers.0.feed_forward.w3',
    'model.layers.0.feed_forward.w2',
  ]);
  assert.equal(
    linearModules({ ...config, architecture: 'internlm2' }).map((m) => `${m.name}:${m.keys.join('/')}:${m.shape.join('x')}`),
    ['attention.wqkv:q/k/v:128x64', 'attention.wo:o:64x64', 'feed_forward.w1:gate:172x64', 'feed_forward.w3:up:172x64', 'feed_forward.w2:down:64x172'],
  );
});

test('calibration sequences: paragraphs tokenized, concatenated, cut into seqLen blocks', () => {
  const tokenizer = { encode: (text: string) => [1, ...text.split(' ').map((w) => w.length)] };
  const blocks = calibrationSequences(tokenizer, 'a bb ccc\n\ndddd e\n\n', 3, 3);
  assert.equal(blocks, [
    [1, 1, 2],
    [3, 1, 4],
  ]);
  assert.throws(() => calibrationSequences(tokenizer, 'a', 1, 10), /--calib-seqlen/);
});

test('the writer shards above maxShardBytes, with an index the reader accepts', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'awq-writer-'));
  try {
    const a = normal(64, 1),
      b = normal(64, 2),
      c = normal(64, 3);
    const specs = [
      { name: 'a', dtype: 'F16', shape: [8, 8] },
      { name: 'b', dtype: 'F16', shape: [64] },
      { name: 'c', dtype: 'F32', shape: [64] },
      { name: 'q', dtype: 'I32', shape: [2, 2] },
    ];
    const data = [f32ToF16Bits(a), f32ToF16Bits(b), c, Uint32Array.from([0xffffffff, 1, 2, 3])];
    const files = await writeSafetensorsFolder(dir, specs, (_s, i) => data[i]!, { maxShardBytes: 300 });
    assert.is(files.length, 2);
    const index = JSON.parse(await readFile(join(dir, 'model.safetensors.index.json'), 'utf8'));
    assert.is(index.weight_map.c, files[1]);
    const reader = await SafetensorsReader.open(dir);
    try {
      assert.equal([...(await reader.read('c', 'f32'))], [...c]);
      assert.ok(reader.has('q'));
    } finally {
      await reader.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.run();
