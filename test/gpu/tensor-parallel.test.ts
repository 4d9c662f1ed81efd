// Tensor parallelism on one software adapter: shards are separate devices from repeated
// requestAdapter(). tp = 1, 2 and 4 must agree on logits (within f32 tolerance) and greedy tokens.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeSyntheticModel } from '../support/synthetic-model.js';
import { greedyLogits as greedyLogitsOf, relativeMaxError } from '../helpers/runner.js';
import { collect, openEngine, request, STORIES } from '../helpers/engine.js';
import { assertRejects } from '../helpers/gpu.js';

const greedyLogits = (modelDir: string, tp: number, prompt: number[], steps: number) => greedyLogitsOf(modelDir, { tp }, prompt, steps);

test('stories260K: tp 2 and 4 give the tp 1 logits and greedy tokens', async () => {
  const prompt = [1, 403, 407, 261, 378];
  const base = await greedyLogits(STORIES, 1, prompt, 12);
  for (const tp of [2, 4]) {
    const got = await greedyLogits(STORIES, tp, prompt, 12);
    assert.equal(got.tokens, base.tokens, `tp ${tp} tokens`);
    got.logits.forEach((l, i) => assert.ok(relativeMaxError(l, base.logits[i]!) < 1e-4, `tp ${tp} step ${i}: ${relativeMaxError(l, base.logits[i]!)}`));
  }
});

test('generated GQA model with more shards than kv heads (kv heads replicated) agrees across tp', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tp-'));
  try {
    await writeSyntheticModel(dir, {
      architecture: 'qwen2',
      hiddenSize: 64,
      numLayers: 2,
      numHeads: 8,
      numKvHeads: 2,
      intermediateSize: 96,
      qkvBias: true,
      tieWordEmbeddings: false,
      dtype: 'F32',
      seed: 3,
    });
    const prompt = [1, 20, 30, 40, 50, 60, 70];
    const base = await greedyLogits(dir, 1, prompt, 8);
    for (const tp of [2, 4]) {
      const got = await greedyLogits(dir, tp, prompt, 8);
      assert.equal(got.tokens, base.tokens, `tp ${tp} tokens`);
      got.logits.forEach((l, i) => assert.ok(relativeMaxError(l, base.logits[i]!) < 1e-4, `tp ${tp} step ${i}`));
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('qwen3 (q/k norm replicated per shard) with dynamic NTK past max_position_embeddings: tp 2 agrees with tp 1', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tp-'));
  try {
    await writeSyntheticModel(dir, {
      architecture: 'qwen3',
      hiddenSize: 48,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 2,
      headDim: 16,
      intermediateSize: 64,
      maxPositionEmbeddings: 16,
      ropeScaling: { rope_type: 'dynamic', factor: 2.0 },
      dtype: 'F32',
      seed: 4,
    });
    // 12 prompt tokens + 8 steps cross max_position_embeddings 16.
    const prompt = [1, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120];
    const base = await greedyLogits(dir, 1, prompt, 8);
    // In-process shards, and worker-process shards (which rebuild the step metadata and the RoPE rows themselves).
    for (const shardProcesses of [false, true]) {
      const got = await greedyLogitsOf(dir, { tp: 2, shardProcesses }, prompt, 8);
      const what = `tp 2${shardProcesses ? ' in workers' : ''}`;
      assert.equal(got.tokens, base.tokens, `${what} tokens`);
      got.logits.forEach((l, i) => assert.ok(relativeMaxError(l, base.logits[i]!) < 1e-4, `${what} step ${i}: ${relativeMaxError(l, base.logits[i]!)}`));
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the engine with devices 0,0 generates the same text as with one device', async () => {
  const one = await openEngine();
  const expected = await collect(one.generate(request([1], { maxTokens: 30 })));
  await one.shutdown();
  const two = await openEngine({ devices: [0, 0], allowRepeatedDevices: true });
  try {
    const got = await collect(two.generate(request([1], { maxTokens: 30 })));
    assert.equal(got.tokenIds, expected.tokenIds);
    assert.ok(two.runner.allReduceMs > 0);
  } finally {
    await two.shutdown();
  }
});

test('invalid layouts fail at start with a clear message', async () => {
  await assertRejects(openEngine({ devices: [0, 0, 0], allowRepeatedDevices: true }), /num_attention_heads 8 is not divisible by tp 3/);
  await assertRejects(openEngine({ devices: [5] }), /device index 5 does not exist/);
});

test.run();
