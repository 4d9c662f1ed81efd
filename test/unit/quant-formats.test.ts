// 4-bit checkpoint formats: hand-made words with known nibbles read by both the loader (src/checkpoint/
// quantized.ts) and the independent dequantizer (test/support/quant-reference.ts); RTN-written synthetic
// checkpoints of every format round-trip through loadCanonicalWeights to the reference's weights exactly;
// and what is refused is refused naming the field or tensor.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModelConfig, parseModelConfig } from '../../src/checkpoint/config.js';
import { parseQuantizationConfig, type QuantizationConfig } from '../../src/checkpoint/quantization.js';
import { checkQ4Linear, dequantizeQ4, readQ4Linear } from '../../src/checkpoint/quantized.js';
import { SafetensorsReader } from '../../src/checkpoint/safetensors.js';
import { loadCanonicalTensors, loadCanonicalWeights, type CanonicalWeight } from '../../src/checkpoint/weights.js';
import { f32ToF16Bits } from '../../src/common/half.js';
import { writeQuantizedModel, type QuantizeOptions } from '../support/quant-checkpoints.js';
import { dequantizeAwq, dequantizeCompressedTensors, dequantizeGptq, writeDequantizedModel } from '../support/quant-reference.js';
import { shardLayout } from '../../src/runner/sharding.js';
import { writeRawSafetensors, type RawTensor } from '../support/quant-safetensors.js';
import { writeSyntheticModel, type SyntheticModelOptions } from '../support/synthetic-model.js';

let root = '';
test.before(async () => {
  root = await mkdtemp(join(tmpdir(), 'quant-formats-'));
});
test.after(async () => {
  await rm(root, { recursive: true, force: true });
});

const list = (a: ArrayLike<number | bigint>) => Array.from(a);
const bytes = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
const i32 = (name: string, shape: number[], values: number[]): RawTensor => ({ name, dtype: 'I32', shape, bytes: bytes(Int32Array.from(values)) });
const f16 = (name: string, shape: number[], values: number[]): RawTensor => ({
  name,
  dtype: 'F16',
  shape,
  bytes: bytes(f32ToF16Bits(Float32Array.from(values))),
});

async function readerWith(name: string, tensors: RawTensor[]): Promise<SafetensorsReader> {
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  await writeRawSafetensors(join(dir, 'model.safetensors'), tensors);
  return SafetensorsReader.open(dir);
}

const AWQ = parseQuantizationConfig({ quant_method: 'awq', bits: 4, group_size: 8, zero_point: true, version: 'gemm' })!;
const gptq = (format: string, extra = {}) =>
  parseQuantizationConfig({ quant_method: 'gptq', bits: 4, group_size: 8, sym: false, checkpoint_format: format, ...extra })!;
const ct = (symmetric: boolean) =>
  parseQuantizationConfig({
    quant_method: 'compressed-tensors',
    format: 'pack-quantized',
    config_groups: { g: { targets: ['Linear'], weights: { num_bits: 4, type: 'int', symmetric, strategy: 'group', group_size: 8 } } },
    ignore: ['lm_head'],
  })!;

async function loaderWeights(reader: SafetensorsReader, q: QuantizationConfig, rows: number, cols: number): Promise<Float32Array> {
  checkQ4Linear(reader, q, 'l', rows, cols, 'test');
  return dequantizeQ4(await readQ4Linear(reader, q, 'l', rows, cols));
}

test('AWQ gemm: nibble i of a word is output column 8c + [0,2,4,6,1,3,5,7][i], zeros in the same order', async () => {
  // 8 out x 8 in, one group. Input 0's word holds nibbles 0..7; every zero is 3; column n's scale is n + 1.
  const reader = await readerWith('awq-hand', [
    i32('l.qweight', [8, 1], [0x76543210, 0, 0, 0, 0, 0, 0, 0]),
    i32('l.qzeros', [1, 1], [0x33333333]),
    f16('l.scales', [1, 8], [1, 2, 3, 4, 5, 6, 7, 8]),
  ]);
  const column = [0, 2, 4, 6, 1, 3, 5, 7];
  const expected = new Float32Array(64);
  for (let n = 0; n < 8; n++) for (let k = 0; k < 8; k++) expected[n * 8 + k] = ((k === 0 ? column.indexOf(n) : 0) - 3) * (n + 1);
  assert.equal(Array.from(await loaderWeights(reader, AWQ, 8, 8)), Array.from(expected));
  assert.equal(Array.from((await dequantizeAwq(reader, 'l')).w), Array.from(expected));
  // Word 0x00000010 (nibble 1 = 1): column 2 gets 1, as AutoAWQ's pack order puts it there.
  const one = await readerWith('awq-hand2', [
    i32('l.qweight', [8, 1], [0x10, 0, 0, 0, 0, 0, 0, 0]),
    i32('l.qzeros', [1, 1], [0]),
    f16('l.scales', [1, 8], Array(8).fill(1)),
  ]);
  const w = await loaderWeights(one, AWQ, 8, 8);
  assert.equal(
    [0, 1, 2, 3].map((n) => w[n * 8]),
    [0, 0, 1, 0],
  );
  await reader.close();
  await one.close();
});

test('GPTQ: qweight packed along in; v1 zeros are stored minus one ((s + 1) & 15), v2 as they are', async () => {
  // Column 2's word holds inputs 0..7 = 0..7. qzeros nibbles: column 0 stores 7, column 1 stores 15, others 0.
  const tensors = [
    i32('l.qweight', [1, 8], [0, 0, 0x76543210, 0, 0, 0, 0, 0]),
    i32('l.qzeros', [1, 1], [0xf7]),
    f16('l.scales', [1, 8], [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]),
    i32('l.g_idx', [8], [0, 0, 0, 0, 0, 0, 0, 0]),
  ];
  const reader = await readerWith('gptq-hand', tensors);
  const v1 = await loaderWeights(reader, gptq('gptq'), 8, 8);
  const v2 = await loaderWeights(reader, gptq('gptq_v2'), 8, 8);
  // v1 zeros: column 0 -> 8, column 1 -> (15 + 1) & 15 = 0, others 1. v2: 7, 15, 0.
  assert.equal(v1[0], -4); // (0 - 8) * 0.5
  assert.equal(v1[8], 0); // (0 - 0) * 0.5
  assert.equal(Array.from(v1.subarray(16, 24)), [-0.5, 0, 0.5, 1, 1.5, 2, 2.5, 3]);
  assert.equal(v2[0], -3.5);
  assert.equal(v2[8], -7.5);
  assert.equal(Array.from(v2.subarray(16, 24)), [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5]);
  assert.equal(Array.from((await dequantizeGptq(reader, 'l', true)).w), Array.from(v1));
  assert.equal(Array.from((await dequantizeGptq(reader, 'l', false)).w), Array.from(v2));
  await reader.close();
});

test('GPTQ desc_act: a permuted g_idx sorts the columns by group (inputPerm) and dequantizes as the checkpoint says; uneven groups are refused', async () => {
  const q = parseQuantizationConfig({ quant_method: 'gptq', bits: 4, group_size: 8, desc_act: true, sym: true })!;
  assert.is(q.activationOrder, true);
  // Inputs 0..7 hold q = 0..7, inputs 8..15 q = 8..15 (every output); zero 8 (v1: stored 7); group 0 scale 1, group 1 scale 2.
  const base = [
    i32('l.qweight', [2, 8], [...Array(8).fill(0x76543210), ...Array(8).fill(0xfedcba98 | 0)]),
    i32('l.qzeros', [2, 1], [0x77777777, 0x77777777]),
    f16('l.scales', [2, 8], [...Array(8).fill(1), ...Array(8).fill(2)]),
  ];
  // Act order: inputs 0..7 belong to group 1 (scale 2), inputs 8..15 to group 0.
  const permuted = await readerWith('gptq-perm', [...base, i32('l.g_idx', [16], [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0])]);
  const m = await readQ4Linear(permuted, q, 'l', 8, 16);
  assert.equal(Array.from(m.inputPerm ?? []), [8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7]);
  const row = Array.from({ length: 16 }, (_, k) => (k < 8 ? (k - 8) * 2 : k - 8));
  assert.equal(Array.from(await loaderWeights(permuted, q, 8, 16)), Array.from({ length: 8 }, () => row).flat());
  // In group order nothing is permuted.
  const ordered = await readerWith('gptq-ordered', [...base, i32('l.g_idx', [16], [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1])]);
  assert.is((await readQ4Linear(ordered, q, 'l', 8, 16)).inputPerm, undefined);
  const inOrder = Array.from({ length: 16 }, (_, k) => (k < 8 ? k - 8 : (k - 8) * 2));
  assert.equal(Array.from(await loaderWeights(ordered, q, 8, 16)), Array.from({ length: 8 }, () => inOrder).flat());
  const uneven = await readerWith('gptq-uneven', [...base, i32('l.g_idx', [16], [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0])]);
  try {
    await readQ4Linear(uneven, q, 'l', 8, 16);
    assert.unreachable('should throw');
  } catch (err) {
    assert.match((err as Error).message, /tensor "l.g_idx" puts 7 inputs in group 0; an activation order must give every group 8/);
  }
  await permuted.close();
  await ordered.close();
  await uneven.close();
});

test('compressed-tensors: q + 8 along in, zero points packed along out (packed_dim 0) with the same offset', async () => {
  // Row 3 holds q + 8 = 0..7 (q = -8..-1); zero point word nibble 0 = 9 (row 0: zp 1), the rest 0 (zp -8).
  const tensors: RawTensor[] = [
    i32('l.weight_packed', [8, 1], [0, 0, 0, 0x76543210, 0, 0, 0, 0]),
    f16('l.weight_scale', [8, 1], Array(8).fill(0.5)),
    { name: 'l.weight_shape', dtype: 'I64', shape: [2], bytes: bytes(new BigInt64Array([8n, 8n])) },
    i32('l.weight_zero_point', [1, 1], [0x9]),
  ];
  const reader = await readerWith('ct-hand', tensors);
  const w = await loaderWeights(reader, ct(false), 8, 8);
  assert.equal(Array.from(w.subarray(24, 32)), [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5]); // (q - (-8)) * 0.5
  assert.equal(w[0], -4.5); // (-8 - 1) * 0.5
  assert.equal(Array.from((await dequantizeCompressedTensors(reader, 'l')).w), Array.from(w));
  // Symmetric: no zero point tensor, zero 0 (stored 8).
  const sym = await loaderWeights(reader, ct(true), 8, 8);
  assert.equal(Array.from(sym.subarray(24, 32)), [-4, -3.5, -3, -2.5, -2, -1.5, -1, -0.5]);
  await reader.close();
});

test('safetensors readInt: I32 bit patterns, I64, I8 and U8; read() refuses integer tensors', async () => {
  const reader = await readerWith('ints', [
    i32('a', [2], [-1, 0x7654321]),
    { name: 'b', dtype: 'I64', shape: [2], bytes: bytes(new BigInt64Array([5n, -2n])) },
    { name: 'c', dtype: 'I8', shape: [2], bytes: bytes(Int8Array.from([-8, 7])) },
    { name: 'd', dtype: 'U8', shape: [1], bytes: Uint8Array.from([200]) },
  ]);
  assert.equal(list(await reader.readInt('a')), [-1, 0x7654321]);
  assert.equal(list(await reader.readInt('b')), [5n, -2n]);
  assert.equal(list(await reader.readInt('c')), [-8, 7]);
  assert.equal(list(await reader.readInt('d')), [200]);
  try {
    await reader.read('a', 'f32');
    assert.unreachable('should throw');
  } catch (err) {
    assert.match((err as Error).message, /tensor "a" has dtype I32, not a float/);
  }
  await reader.close();
});

const small = { architecture: 'llama' as const, hiddenSize: 64, numLayers: 1, numHeads: 4, numKvHeads: 2, intermediateSize: 128, seed: 5 };

const roundTrips: { name: string; o: QuantizeOptions; model?: Partial<SyntheticModelOptions> }[] = [
  // InternLM2's packed wqkv is split into q/k/v per kv head after repacking (Q4Matrix row slices).
  { name: 'InternLM2 AWQ g32 (packed wqkv, w1/w2/w3)', o: { format: 'awq', groupSize: 32 }, model: { architecture: 'internlm2', numHeads: 8, numKvHeads: 2 } },
  { name: 'Qwen2 GPTQ v2 sym g32 (q/k/v biases stay f16)', o: { format: 'gptq-v2', groupSize: 32, symmetric: true }, model: { architecture: 'qwen2' } },
  { name: 'AWQ g32', o: { format: 'awq', groupSize: 32 } },
  { name: 'GPTQ v1 sym g64', o: { format: 'gptq-v1', groupSize: 64, symmetric: true } },
  { name: 'GPTQ v1 asym g32 (zero 0 stored as 15)', o: { format: 'gptq-v1', groupSize: 32, symmetric: false } },
  { name: 'GPTQ v2 asym per-channel (group_size -1)', o: { format: 'gptq-v2', groupSize: -1, symmetric: false } },
  { name: 'compressed-tensors asym g32, bf16 scales', o: { format: 'compressed-tensors', groupSize: 32, symmetric: false } },
  { name: 'compressed-tensors sym g64, f16 scales', o: { format: 'compressed-tensors', groupSize: 64, symmetric: true, scaleDtype: 'F16' } },
  { name: 'AWQ with attention left 16-bit (modules_to_not_convert)', o: { format: 'awq', groupSize: 64, keepFloat: ['self_attn'] } },
];

for (const { name, o, model } of roundTrips) {
  test(`round trip ${name}: the loader's 4-bit tensors dequantize to the reference's weights, near the float ones`, async () => {
    const id = name.replace(/\W+/g, '-');
    const float = await writeSyntheticModel(join(root, `${id}-f`), { ...small, ...model, dtype: 'F16' });
    const quant = await writeQuantizedModel(float, join(root, `${id}-q`), o);
    const deq = await writeDequantizedModel(quant, join(root, `${id}-d`));
    const got = await weightsOf(quant);
    const want = await weightsOf(deq);
    const orig = await weightsOf(float);
    assert.equal([...got.keys()], [...want.keys()]);
    let numQ4 = 0;
    for (const [tensor, t] of got) {
      const ref = want.get(tensor)!;
      const keptFloat = (o.keepFloat ?? []).length > 0 && /\.(q|k|v|o)$/.test(tensor);
      const projection = /\.(q|k|v|o|gate|up|down)$/.test(tensor) && !keptFloat;
      assert.is(t.dtype, projection ? 'q4' : 'f32', tensor);
      const values = t.dtype === 'q4' ? dequantizeQ4(t.q4) : (t.data as Float32Array);
      assert.equal(Array.from(values), Array.from((ref as { data: Float32Array }).data), tensor);
      if (t.dtype !== 'q4') continue;
      numQ4++;
      assert.is(t.q4.groupSize, o.groupSize === -1 ? t.shape[1] : o.groupSize);
      // RTN error: within a group's range / 15 of the float weight (half a step, plus f16 scale rounding and clamping).
      const w = (orig.get(tensor) as { data: Float32Array }).data;
      let maxErr = 0,
        maxAbs = 0;
      for (let i = 0; i < w.length; i++) {
        maxErr = Math.max(maxErr, Math.abs(values[i]! - w[i]!));
        maxAbs = Math.max(maxAbs, Math.abs(w[i]!));
      }
      assert.ok(maxErr < (2 * maxAbs) / 15, `${tensor}: max error ${maxErr} vs max |w| ${maxAbs}`);
    }
    assert.is(numQ4, (o.keepFloat ?? []).length ? 3 : 7);
  });
}

async function weightsOf(dir: string): Promise<Map<string, CanonicalWeight>> {
  const config = await loadModelConfig(dir);
  const reader = await SafetensorsReader.open(dir);
  const out = new Map<string, CanonicalWeight>();
  try {
    await loadCanonicalWeights(reader, config, 'f32', (t) => {
      out.set(t.name, t);
    });
  } finally {
    await reader.close();
  }
  return out;
}

test('checkpoint errors name the tensor: missing scales, wrong shape, 4-bit where the config says 16-bit, the float-only loader', async () => {
  const float = await writeSyntheticModel(join(root, 'err-f'), { ...small, dtype: 'F16' });
  const quant = await writeQuantizedModel(float, join(root, 'err-q'), { format: 'awq', groupSize: 32 });
  const config = await loadModelConfig(quant);
  const reader = await SafetensorsReader.open(quant);
  const expectError = async (c: typeof config, re: RegExp) => {
    try {
      await loadCanonicalWeights(reader, c, 'f32', () => {});
      assert.unreachable('should throw');
    } catch (err) {
      assert.match((err as Error).message, re);
    }
  };
  // group 64 in the config, group 32 in the files: scales have the wrong shape.
  await expectError(
    { ...config, quantization: { ...config.quantization!, groupSize: 64 } },
    /tensor "model.layers.0.self_attn.q_proj.qzeros" .* has shape \[2, 8\]/,
  );
  // modules_to_not_convert names q_proj, but it is stored 4-bit.
  await expectError(
    { ...config, quantization: { ...config.quantization!, modulesToNotConvert: ['q_proj'] } },
    /"model.layers.0.self_attn.q_proj" is stored in 4 bits .* quantization_config leaves it in 16 bits \(modules_to_not_convert\)/,
  );
  try {
    await loadCanonicalTensors(reader, config, 'f32', () => {});
    assert.unreachable('should throw');
  } catch (err) {
    assert.match((err as Error).message, /is a 4-bit awq checkpoint; this loader reads float weights only/);
  }
  await reader.close();
  // A float linear where the config says 4-bit: the missing qweight is named.
  const mixed = await writeQuantizedModel(float, join(root, 'err-m'), { format: 'awq', groupSize: 32, keepFloat: ['mlp'] });
  const cfg = await loadModelConfig(mixed);
  const r2 = await SafetensorsReader.open(mixed);
  try {
    await loadCanonicalWeights(r2, { ...cfg, quantization: { ...cfg.quantization!, modulesToNotConvert: [] } }, 'f32', () => {});
    assert.unreachable('should throw');
  } catch (err) {
    assert.match((err as Error).message, /tensor "model.layers.0.mlp.gate_proj.qweight" \(4-bit awq layers.0.gate\) is missing/);
  }
  await r2.close();
  // A 4-bit lm_head (GPTQModel lm_head: true) read with a config that says 16 bits, and with tied embeddings.
  const head = await writeQuantizedModel(float, join(root, 'err-h'), { format: 'gptq-v2', groupSize: 32, lmHead: true });
  const headCfg = await loadModelConfig(head);
  assert.is(headCfg.quantization!.lmHead, true);
  const r3 = await SafetensorsReader.open(head);
  for (const [c, re] of [
    [
      { ...headCfg, quantization: { ...headCfg.quantization!, lmHead: false } },
      /"lm_head" is stored in 4 bits .* leaves lm_head in 16 bits \(lm_head: true would say otherwise\)/,
    ],
    [{ ...headCfg, tieWordEmbeddings: true }, /quantizes lm_head, but tie_word_embeddings is true/],
  ] as const) {
    try {
      await loadCanonicalWeights(r3, c, 'f32', () => {});
      assert.unreachable('should throw');
    } catch (err) {
      assert.match((err as Error).message, re);
    }
  }
  await r3.close();
});

test('group_size -1 needs power-of-two in features; out features must be a multiple of 8', async () => {
  const q = parseQuantizationConfig({ quant_method: 'gptq', bits: 4, group_size: -1, sym: true })!;
  const reader = await readerWith('empty', [i32('x', [1], [0])]);
  assert.throws(() => checkQ4Linear(reader, q, 'mlp.down_proj', 64, 172, 'down'), /group_size -1 .* power of two >= 8 .* got 172/);
  assert.throws(() => checkQ4Linear(reader, AWQ, 'p', 12, 64, 'p'), /12 out features are not a multiple of 8/);
  await reader.close();
});

test('tensor parallelism: a 4-bit o/down split that cuts groups is refused before any GPU work, naming tp and group size', () => {
  const config = (q: object) =>
    parseModelConfig({
      architectures: ['LlamaForCausalLM'],
      hidden_size: 128,
      intermediate_size: 256,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      vocab_size: 512,
      quantization_config: { quant_method: 'awq', bits: 4, zero_point: true, version: 'gemm', ...q },
    });
  assert.throws(
    () => shardLayout(config({ group_size: 64 }), 4, 0),
    /cannot split this model over 4 devices: the 4-bit o_proj has 128 in features in groups of 64 \(quantization_config group_size\), so a shard's 32 columns are not whole groups; use a tp degree that divides in_features \/ group_size = 2/,
  );
  // One group per row (o_proj's 128 inputs at group 128, or group_size -1): each shard's part is one group of its own.
  assert.is(shardLayout(config({ group_size: 128 }), 2, 0).tp, 2);
  assert.is(shardLayout(config({ group_size: -1 }), 4, 0).tp, 4);
  assert.throws(() => shardLayout(config({ group_size: -1 }), 32, 0), /num_attention_heads 4 is not divisible by tp 32/);
  assert.is(shardLayout(config({ group_size: 64 }), 2, 1).firstIntermediate, 128);
  // o_proj kept in 16 bits: only down (256 / 2 = 128 = one group per shard) is split, which is fine.
  assert.is(shardLayout(config({ group_size: 128, modules_to_not_convert: ['o_proj'] }), 2, 0).tp, 2);
  assert.throws(
    () => shardLayout(config({ group_size: 128, modules_to_not_convert: ['o_proj'] }), 4, 0),
    /4-bit down_proj has 256 in features in groups of 128/,
  );
});

test.run();
