// Every supported architecture, generated with random weights, through the GPU runner against the
// independent plain-TS f32 reference: prefill logits and 20 teacher-forced decode steps, f32 and f16.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ReferenceModel } from '../support/reference-model.js';
import { writeSyntheticModel, type SyntheticModelOptions } from '../support/synthetic-model.js';
import { argmax, openTestRunner, relativeMaxError } from '../helpers/runner.js';
import { rng } from '../helpers/gpu.js';

const cases: { name: string; options: SyntheticModelOptions }[] = [
  {
    name: 'llama GQA untied',
    options: { architecture: 'llama', hiddenSize: 96, numLayers: 2, numHeads: 6, numKvHeads: 2, intermediateSize: 136, tieWordEmbeddings: false },
  },
  {
    name: 'llama MQA tied, partial rope scaling',
    options: {
      architecture: 'llama',
      hiddenSize: 64,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 1,
      intermediateSize: 100,
      tieWordEmbeddings: true,
      ropeScaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 },
    },
  },
  {
    name: 'mistral sliding window',
    options: { architecture: 'mistral', hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, intermediateSize: 96, slidingWindow: 7 },
  },
  {
    name: 'qwen2 qkv bias tied',
    options: { architecture: 'qwen2', hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, intermediateSize: 88, qkvBias: true, tieWordEmbeddings: true },
  },
  { name: 'internlm2 packed wqkv', options: { architecture: 'internlm2', hiddenSize: 64, numLayers: 2, numHeads: 8, numKvHeads: 2, intermediateSize: 112 } },
];

for (const { name, options } of cases) {
  for (const dtype of ['f32', 'f16'] as const) {
    test(`${name} (${dtype}) matches the reference for prefill and 20 decode steps`, async () => {
      const dir = await mkdtemp(join(tmpdir(), 'model-'));
      try {
        await writeSyntheticModel(dir, { ...options, dtype: 'F32', seed: 11 });
        const reference = await ReferenceModel.load(dir);
        const gpu = await openTestRunner(dir, { dtype, blockSize: 4 });
        try {
          // f16 weights round each weight to 11 bits; the logits then differ by ~1e-3 of their scale.
          const tolerance = dtype === 'f32' ? 2e-4 : 2e-2;
          const r = rng(5);
          const prompt = Array.from({ length: 11 }, () => 3 + Math.floor(r() * 500));
          const refLogits = reference.forward(prompt);
          const vocab = reference.config.vocabSize;
          let expected = refLogits.subarray((prompt.length - 1) * vocab, prompt.length * vocab);
          let actual = await gpu.forward(prompt, 0);
          assert.ok(relativeMaxError(actual, expected) < tolerance, `prefill logits error ${relativeMaxError(actual, expected)}`);
          let position = prompt.length;
          for (let step = 0; step < 20; step++) {
            const next = argmax(expected);
            expected = reference.forward([next]);
            actual = await gpu.forward([next], position++);
            const err = relativeMaxError(actual, expected);
            assert.ok(err < tolerance, `decode step ${step} logits error ${err}`);
          }
        } finally {
          gpu.destroy();
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  }
}

test.run();
