// 4-bit checkpoints end to end: random models quantized (RTN) and written as AutoAWQ gemm, AutoGPTQ v1 sym
// and v2 asym, and compressed-tensors pack-quantized; the GPU runner's greedy tokens must equal those of
// the CPU reference model fed the independently dequantized weights (test/support/quant-reference.ts),
// token for token. Also: tp 2 == tp 1 on a 4-bit model, a tp split that cuts groups fails at startup,
// a fused group mixing 4-bit and 16-bit parts, and stories260K with only its attention in 4 bits.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ReferenceModel } from '../support/reference-model.js';
import { writeQuantizedModel, type QuantizeOptions } from '../support/quant-checkpoints.js';
import { writeDequantizedModel } from '../support/quant-reference.js';
import { STORIES260K_DIR, writeSyntheticModel, type SyntheticModelOptions } from '../support/synthetic-model.js';
import { argmax, greedyLogits, openTestRunner, relativeMaxError } from '../helpers/runner.js';
import { planMemory } from '../../src/runner/memory.js';
import type { Shard } from '../../src/runner/shard.js';
import { openEngine } from '../helpers/engine.js';
import { assertRejects } from '../helpers/gpu.js';

let root = '';
test.before(async () => {
  root = await mkdtemp(join(tmpdir(), 'quantized-model-'));
});
test.after(async () => {
  await rm(root, { recursive: true, force: true });
});

const model: SyntheticModelOptions = {
  architecture: 'llama',
  hiddenSize: 128,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  intermediateSize: 256,
  tieWordEmbeddings: false,
  dtype: 'F16',
};
const PROMPT = [1, 20, 30, 40, 50, 60, 70];
const STEPS = 8;

/** Writes the float model, its 4-bit form and the reference's dequantized form; returns [quantized, dequantized]. */
async function prepare(id: string, o: QuantizeOptions, options: SyntheticModelOptions | null = model): Promise<[string, string]> {
  const float = options ? await writeSyntheticModel(join(root, `${id}-f`), options) : STORIES260K_DIR;
  const quant = await writeQuantizedModel(float, join(root, `${id}-q`), o);
  return [quant, await writeDequantizedModel(quant, join(root, `${id}-d`))];
}

/** Greedy decoding on the CPU reference: tokens and the logits they came from. */
async function referenceGreedy(dir: string, prompt: number[], steps: number): Promise<{ tokens: number[]; logits: Float32Array[] }> {
  const ref = await ReferenceModel.load(dir);
  const V = ref.config.vocabSize;
  let last: Float32Array = ref.forward(prompt).slice((prompt.length - 1) * V);
  const tokens: number[] = [];
  const logits = [last];
  for (let i = 0; i < steps; i++) {
    tokens.push(argmax(last));
    last = ref.forward([tokens[i]!]);
    logits.push(last);
  }
  return { tokens, logits };
}

/**
 * Greedy decoding on one GPU shard must give the reference's tokens (and logits within f32 tolerance);
 * returns the formats its layer-0 qkv, o, gate_up and down were uploaded in, and the runner's memory
 * plan next to the plan for the same model in float (config without quantization).
 */
async function expectReferenceTokens(
  quant: string,
  deq: string,
  prompt = PROMPT,
): Promise<{ formats: string[]; lmHead: string; weightBytes: number; floatWeightBytes: number }> {
  const want = await referenceGreedy(deq, prompt, STEPS);
  const r = await openTestRunner(quant, { dtype: 'f32' });
  try {
    const logits = [await r.forward(prompt, 0)];
    const tokens: number[] = [];
    for (let i = 0; i < STEPS; i++) {
      tokens.push(argmax(logits[i]!));
      logits.push(await r.forward([tokens[i]!], prompt.length + i));
    }
    assert.equal(tokens, want.tokens);
    logits.forEach((l, i) => assert.ok(relativeMaxError(l, want.logits[i]!) < 1e-3, `step ${i}: ${relativeMaxError(l, want.logits[i]!)}`));
    const shard = r.runner.shards[0] as Shard;
    const l = shard.weights.layers[0]!;
    const floatPlan = planMemory({ ...r.config, quantization: null }, shard.layout, r.devices[0]!, { ...PLAN_OPTIONS, dtype: 'f32' });
    return {
      formats: [l.qkv.dtype, l.o.dtype, l.gateUp.dtype, l.down.dtype],
      lmHead: shard.weights.lmHead.dtype,
      weightBytes: r.runner.plan.weightBytes,
      floatWeightBytes: floatPlan.weightBytes,
    };
  } finally {
    r.destroy();
  }
}

const PLAN_OPTIONS = { cacheMaxEntryCount: 0.5, maxNumBatchedTokens: 64, blockSize: 4, maxNumSeqs: 4, maxModelLen: 64, gpuMemoryBytes: 1024 ** 3 };

const cases: { name: string; o: QuantizeOptions }[] = [
  { name: 'AWQ gemm g128', o: { format: 'awq', groupSize: 128 } },
  { name: 'GPTQ v1 sym g64', o: { format: 'gptq-v1', groupSize: 64, symmetric: true } },
  { name: 'GPTQ v2 asym g32', o: { format: 'gptq-v2', groupSize: 32, symmetric: false } },
  { name: 'compressed-tensors asym g64 (bf16 scales, packed zero points)', o: { format: 'compressed-tensors', groupSize: 64, symmetric: false } },
];

for (const { name, o } of cases) {
  test(`${name}: GPU greedy tokens equal the CPU reference on the dequantized weights`, async () => {
    const [quant, deq] = await prepare(name.replace(/\W+/g, '-'), o);
    const got = await expectReferenceTokens(quant, deq);
    assert.equal(got.formats, ['q4', 'q4', 'q4', 'q4']);
    // Every projection (2 layers x 128 x (256 qkv + 128 o + 3 x 256 MLP)) at 4 bits + one 4-byte scale/zero word per group, not f32.
    const n = 2 * 128 * (256 + 128 + 3 * 256);
    assert.is(got.floatWeightBytes - got.weightBytes, n * 4 - n * (0.5 + 4 / o.groupSize));
  });
}

// Activation order (GPTQ desc_act without static groups, compressed-tensors actorder "group"): every
// linear's groups gather scattered inputs; the loader sorts the columns and the runner gathers its inputs.
const actOrderCases: { name: string; o: QuantizeOptions }[] = [
  { name: 'GPTQ v1 sym g32 desc_act (permuted g_idx)', o: { format: 'gptq-v1', groupSize: 32, symmetric: true, actOrder: true } },
  { name: 'compressed-tensors asym g64 actorder "group" (weight_g_idx)', o: { format: 'compressed-tensors', groupSize: 64, symmetric: false, actOrder: true } },
];

for (const { name, o } of actOrderCases) {
  test(`${name}: GPU greedy tokens equal the CPU reference on the dequantized weights`, async () => {
    const [quant, deq] = await prepare(name.replace(/\W+/g, '-'), o);
    const got = await expectReferenceTokens(quant, deq);
    assert.equal(got.formats, ['q4', 'q4', 'q4', 'q4']);
  });
}

test('activation-ordered 4-bit weights on 2 devices fail at startup naming desc_act', async () => {
  const [quant] = await prepare('act-order-tp', { format: 'gptq-v2', groupSize: 32, symmetric: false, actOrder: true });
  await assertRejects(
    openEngine({ modelDir: quant, devices: [0, 0], allowRepeatedDevices: true }),
    /cannot split this model over 2 devices: .*activation-ordered groups \(GPTQ desc_act/,
  );
});

test('GPTQ lm_head: true (GPTQModel) and compressed-tensors without lm_head in ignore: a 4-bit lm_head, reference tokens, tp 2 == tp 1', async () => {
  for (const o of [
    { format: 'gptq-v2', groupSize: 32, symmetric: false, lmHead: true },
    { format: 'compressed-tensors', groupSize: 64, symmetric: true, lmHead: true },
  ] satisfies QuantizeOptions[]) {
    const [quant, deq] = await prepare(`lm-head-${o.format}`, o);
    const got = await expectReferenceTokens(quant, deq);
    assert.equal([...got.formats, got.lmHead], ['q4', 'q4', 'q4', 'q4', 'q4'], o.format);
    // The memory plan counts the 4-bit lm_head (512 x 128) as 4-bit: 4 - (0.5 + 4 / group) bytes saved per weight on top of the layers.
    const n = 2 * 128 * (256 + 128 + 3 * 256) + 512 * 128;
    assert.is(got.floatWeightBytes - got.weightBytes, n * 4 - n * (0.5 + 4 / o.groupSize), o.format);
  }
  const [quant] = await prepare('lm-head-tp', { format: 'gptq-v1', groupSize: 32, symmetric: true, lmHead: true });
  const base = await greedyLogits(quant, { tp: 1 }, PROMPT, STEPS);
  const two = await greedyLogits(quant, { tp: 2 }, PROMPT, STEPS);
  assert.equal(two.tokens, base.tokens);
  two.logits.forEach((l, i) => assert.ok(relativeMaxError(l, base.logits[i]!) < 1e-4, `step ${i}: ${relativeMaxError(l, base.logits[i]!)}`));
});

// What people download besides Llama: Qwen2 AWQ (q/k/v biases stay 16-bit beside 4-bit weights, tied
// embeddings), Qwen3 GPTQ (q_norm/k_norm between the 4-bit projection and RoPE) and InternLM2 AWQ
// (LMDeploy's own: the fused, head-grouped wqkv is quantized as one linear and split after unpacking).
const architectures: { name: string; options: SyntheticModelOptions; o: QuantizeOptions }[] = [
  {
    name: 'Qwen2 AWQ g64 (qkv bias, tied embeddings)',
    options: { ...model, architecture: 'qwen2', tieWordEmbeddings: true },
    o: { format: 'awq', groupSize: 64 },
  },
  { name: 'Qwen3 GPTQ v1 sym g32 (q_norm / k_norm)', options: { ...model, architecture: 'qwen3' }, o: { format: 'gptq-v1', groupSize: 32, symmetric: true } },
  { name: 'InternLM2 AWQ g128 (fused wqkv)', options: { ...model, architecture: 'internlm2' }, o: { format: 'awq', groupSize: 128 } },
];

for (const { name, options, o } of architectures) {
  test(`${name}: GPU greedy tokens equal the CPU reference on the dequantized weights`, async () => {
    const [quant, deq] = await prepare(name.replace(/\W+/g, '-'), o, options);
    assert.equal((await expectReferenceTokens(quant, deq)).formats, ['q4', 'q4', 'q4', 'q4']);
  });
}

test('per-channel 4-bit (group_size -1): tp 2 splits o/down inside the one group per row and gives the tp 1 tokens', async () => {
  const [quant] = await prepare('tp-per-channel', { format: 'gptq-v2', groupSize: -1, symmetric: false });
  const base = await greedyLogits(quant, { tp: 1 }, PROMPT, STEPS);
  const two = await greedyLogits(quant, { tp: 2 }, PROMPT, STEPS);
  assert.equal(two.tokens, base.tokens);
  two.logits.forEach((l, i) => assert.ok(relativeMaxError(l, base.logits[i]!) < 1e-4, `step ${i}: ${relativeMaxError(l, base.logits[i]!)}`));
});

test('4-bit tp 2 gives the tp 1 tokens and logits; a tp split that cuts groups fails naming tp and group size', async () => {
  const [quant] = await prepare('tp', { format: 'gptq-v2', groupSize: 32, symmetric: false });
  const base = await greedyLogits(quant, { tp: 1 }, PROMPT, STEPS);
  const two = await greedyLogits(quant, { tp: 2 }, PROMPT, STEPS);
  assert.equal(two.tokens, base.tokens);
  two.logits.forEach((l, i) => assert.ok(relativeMaxError(l, base.logits[i]!) < 1e-4, `step ${i}: ${relativeMaxError(l, base.logits[i]!)}`));
  // o_proj has 128 in features in 2 groups of 64: each of 4 shards would hold half a group.
  const [g64] = await prepare('tp-g64', { format: 'awq', groupSize: 64 });
  await assertRejects(
    openEngine({ modelDir: g64, devices: [0, 0, 0, 0], allowRepeatedDevices: true }),
    /cannot split this model over 4 devices: the 4-bit o_proj has 128 in features in groups of 64 .* use a tp degree that divides in_features \/ group_size = 2/,
  );
});

test('a fused q/k/v group with q_proj left 16-bit (modules_to_not_convert) runs dequantized, matching the reference', async () => {
  const [quant, deq] = await prepare('mixed', { format: 'awq', groupSize: 64, keepFloat: ['q_proj'] });
  assert.equal((await expectReferenceTokens(quant, deq)).formats, ['f32', 'q4', 'q4', 'q4']);
});

test('stories260K with only attention in 4 bits (mlp in modules_to_not_convert; intermediate 172): reference tokens', async () => {
  const [quant, deq] = await prepare('stories', { format: 'awq', groupSize: 32, keepFloat: ['mlp'] }, null);
  // stories260K: hidden 64, 8 heads x 8, 4 kv heads; q/k/v/o quantized in groups of 32, the MLP (172 wide) f16.
  assert.equal((await expectReferenceTokens(quant, deq, [1, 403, 407, 261, 378])).formats, ['q4', 'q4', 'f32', 'f32']);
});

test.run();
