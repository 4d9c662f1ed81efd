import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { RopeConfig, RopeScaling } from '../../src/checkpoint/config.js';
import { dynamicNtkRows, ropeInvFreq } from '../../src/checkpoint/rope.js';

// Expected values are worked out by hand for theta = 10000, rotary dim 8, so the default frequencies are
// 10000^(-i/8) for i = 0, 2, 4, 6 = [1, 0.1, 0.01, 0.001] with wavelengths 2*pi/f = [6.28, 62.8, 628, 6283].
const rope = (scaling: RopeScaling | null): RopeConfig => ({ theta: 10000, rotaryDim: 8, scaling });

function close(actual: Float32Array, expected: number[], what: string) {
  assert.is(actual.length, expected.length, `${what}: length`);
  expected.forEach((e, i) => assert.ok(Math.abs(actual[i]! - e) <= 1e-6 * Math.abs(e), `${what}[${i}]: ${actual[i]} vs ${e}`));
}

test('default: theta^(-2i/d)', () => {
  const { invFreq, attentionScaling } = ropeInvFreq(rope(null), 2048);
  close(invFreq, [1, 0.1, 0.01, 0.001], 'default');
  assert.is(attentionScaling, 1);
  // theta 500000, dim 4: [1, 500000^-0.5]
  close(ropeInvFreq({ theta: 500000, rotaryDim: 4, scaling: null }, 1).invFreq, [1, 1 / Math.sqrt(500000)], 'theta');
});

test('linear: every frequency divided by factor', () => {
  close(ropeInvFreq(rope({ type: 'linear', factor: 4 }), 2048).invFreq, [0.25, 0.025, 0.0025, 0.00025], 'linear');
});

test('dynamic NTK for a sequence of len tokens: base * (factor*len/orig - (factor-1))^(d/(d-2))', () => {
  // factor 2, orig 512, len 1024: base = 10000 * 3^(4/3), so f_i = 10000^(-i/8) * 3^(-i/6):
  // [1, 0.1 * 3^(-1/3), 0.01 * 3^(-2/3), 0.001 / 3]
  const scaling: RopeScaling = { type: 'dynamic', factor: 2, originalMaxPositionEmbeddings: 512 };
  close(ropeInvFreq(rope(scaling), 1024).invFreq, [1, 0.0693361274, 0.00480749857, 0.000333333333], 'dynamic');
  // At (or below) the original length the formula reduces to the default frequencies.
  close(ropeInvFreq(rope(scaling), 512).invFreq, [1, 0.1, 0.01, 0.001], 'dynamic at original length');
  close(ropeInvFreq(rope(scaling), 100).invFreq, [1, 0.1, 0.01, 0.001], 'dynamic below original length');
  // No length (what the runner uploads for sequences within the trained length): the default frequencies.
  close(ropeInvFreq(rope(scaling)).invFreq, [1, 0.1, 0.01, 0.001], 'dynamic without a length');
  // factor 2, orig 32, len 48: base = 10000 * (2*48/32 - 1)^(4/3) = 10000 * 2^(4/3), so
  // f_i = 10000^(-i/8) * 2^(-i/6) = [1, 0.1 * 2^(-1/3), 0.01 * 2^(-2/3), 0.001 / 2].
  const small: RopeScaling = { type: 'dynamic', factor: 2, originalMaxPositionEmbeddings: 32 };
  const at48 = [1, 0.0793700526, 0.00629960525, 0.0005];
  close(ropeInvFreq(rope(small), 48).invFreq, at48, 'dynamic past a small original length');
  close(ropeInvFreq(rope(small), 33).invFreq, [1, 0.1 * (34 / 32) ** -(1 / 3), 0.01 * (34 / 32) ** -(2 / 3), 0.001 / (34 / 32)], 'one past');
});

test('dynamicNtkRows: one row per sequence, bit-identical to ropeInvFreq, default rows within the original length', () => {
  const scaling: RopeScaling = { type: 'dynamic', factor: 2, originalMaxPositionEmbeddings: 32 };
  const base = ropeInvFreq(rope(scaling)).invFreq;
  const lens = [1, 48, 32, 33, 100000];
  const rows = new Float32Array(lens.length * 4);
  dynamicNtkRows(rope(scaling), base, lens, rows);
  lens.forEach((len, s) => assert.equal(Array.from(rows.subarray(s * 4, s * 4 + 4)), Array.from(ropeInvFreq(rope(scaling), len).invFreq), `row ${s}`));
  close(rows.subarray(0, 4), [1, 0.1, 0.01, 0.001], 'row 0 (1 token)');
  close(rows.subarray(8, 12), [1, 0.1, 0.01, 0.001], 'row 2 (32 tokens = original)');
  close(rows.subarray(4, 8), [1, 0.0793700526, 0.00629960525, 0.0005], 'row 1 (48 tokens)');
  assert.throws(() => dynamicNtkRows(rope(null), base, [1], new Float32Array(4)), /dynamic NTK/);
});

test('llama3: high frequencies kept, low divided by factor, medium smoothed', () => {
  const l3 = (orig: number): RopeScaling => ({ type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: orig });
  // orig 4096: low-freq wavelength 4096, high-freq 1024. 6283 > 4096 -> 0.001/8; the rest < 1024 -> kept.
  close(ropeInvFreq(rope(l3(4096)), 1).invFreq, [1, 0.1, 0.01, 0.000125], 'llama3 low');
  // orig 8192: 2048 <= 6283 <= 8192 -> smooth = (8192/6283.185 - 1) / 3 = 0.1012658,
  // f = (1 - smooth) * 0.001 / 8 + smooth * 0.001 = 0.000213607544.
  close(ropeInvFreq(rope(l3(8192)), 1).invFreq, [1, 0.1, 0.01, 0.000213607544], 'llama3 medium');
  assert.is(ropeInvFreq(rope(l3(8192)), 1).attentionScaling, 1);
});

test('yarn: ramp between extrapolation and interpolation, mscale attention factor', () => {
  const yarn = (extra: Partial<Extract<RopeScaling, { type: 'yarn' }>> = {}): RopeScaling => ({
    type: 'yarn',
    factor: 4,
    originalMaxPositionEmbeddings: 2048,
    betaFast: 32,
    betaSlow: 1,
    mscale: 0,
    mscaleAllDim: 0,
    attentionFactor: null,
    ...extra,
  });
  // correction dims: d*ln(2048/(r*2pi)) / (2 ln 10000) = 1.0080 (r=32) -> floor 1, 2.5132 (r=1) -> ceil 3.
  // ramp (i-1)/2 clamped = [0, 0, 0.5, 1]; extrapolation weight 1 - ramp = [1, 1, 0.5, 0]:
  // [1, 0.1, 0.5*0.01/4 + 0.5*0.01, 0.001/4]
  const r = ropeInvFreq(rope(yarn()), 8192);
  close(r.invFreq, [1, 0.1, 0.00625, 0.00025], 'yarn');
  assert.ok(Math.abs(r.attentionScaling - (0.1 * Math.log(4) + 1)) < 1e-12, `mscale ${r.attentionScaling}`);
  // mscale and mscale_all_dim both set: ratio of the two (here 0.2 ln 4 + 1) / (0.1 ln 4 + 1) = 1.1217511).
  assert.ok(Math.abs(ropeInvFreq(rope(yarn({ mscale: 2, mscaleAllDim: 1 })), 1).attentionScaling - 1.121751143713058) < 1e-12);
  // Only mscale_all_dim set: transformers falls back to get_mscale(factor).
  assert.ok(Math.abs(ropeInvFreq(rope(yarn({ mscaleAllDim: 1 })), 1).attentionScaling - 1.138629436111989) < 1e-12);
  assert.is(ropeInvFreq(rope(yarn({ attentionFactor: 0.5 })), 1).attentionScaling, 0.5);
});

test('partial rotary dimension: only rotaryDim/2 frequencies', () => {
  const { invFreq } = ropeInvFreq({ theta: 10000, rotaryDim: 4, scaling: null }, 1);
  close(invFreq, [1, 0.01], 'partial');
});

test.run();
