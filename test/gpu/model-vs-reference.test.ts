// Every supported architecture, generated with random weights, through the GPU runner against the
// independent plain-TS f32 reference: prefill logits and 20 teacher-forced decode steps, f32 and f16.
// Dynamic NTK RoPE (transformers' per-length base) within, across and past max_position_embeddings,
// one sequence and two batched sequences of different lengths.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ReferenceModel } from '../support/reference-model.js';
import { DEFAULT_SAMPLING, type SamplingRow } from '../../src/sampling/params.js';
import type { SchedulerOutput } from '../../src/scheduler/types.js';
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
  {
    name: 'qwen3 q/k norm, head_dim 24 != hidden/heads',
    options: { architecture: 'qwen3', hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 24, intermediateSize: 88 },
  },
  {
    // 11 + 20 tokens stay within max_position_embeddings 32: the default frequencies throughout.
    name: 'internlm2 dynamic NTK, short prompt',
    options: { ...dynamicNtk('internlm2'), numHeads: 8, numKvHeads: 2, intermediateSize: 112 },
  },
];

/** A small dynamic NTK model (InternLM2.5's rope_scaling) with max_position_embeddings 32, so tests get past it quickly. */
function dynamicNtk(architecture: SyntheticModelOptions['architecture']): SyntheticModelOptions {
  return {
    architecture,
    hiddenSize: 64,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    intermediateSize: 96,
    maxPositionEmbeddings: 32,
    ropeScaling: { type: 'dynamic', factor: 2.0 },
  };
}

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

/** The GPU's logits within `tolerance` (relative max error) of the reference's. */
function expectClose(actual: Float32Array, expected: Float32Array, tolerance: number, what: string): void {
  const err = relativeMaxError(actual, expected);
  assert.ok(err < tolerance, `${what}: logits error ${err}`);
}

test('internlm3 dynamic NTK past max_position_embeddings: prefill 24, a 12-token chunk across 32, 20 decode steps (f32)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'model-'));
  try {
    await writeSyntheticModel(dir, { ...dynamicNtk('internlm3'), headDim: 20, qkvBias: true, dtype: 'F32', seed: 12 });
    const reference = await ReferenceModel.load(dir);
    const gpu = await openTestRunner(dir, { dtype: 'f32', blockSize: 4 });
    try {
      const vocab = reference.config.vocabSize;
      const r = rng(6);
      const tokens = (n: number) => Array.from({ length: n }, () => 3 + Math.floor(r() * 500));
      const last = (logits: Float32Array, n: number) => logits.subarray((n - 1) * vocab, n * vocab);
      const prompt = tokens(24);
      expectClose(await gpu.forward(prompt, 0), last(reference.forward(prompt), 24), 2e-4, 'prefill within 32');
      // One step whose sequence reaches 36 tokens: every token of the chunk uses the grown base.
      const chunk = tokens(12);
      let expected = last(reference.forward(chunk), 12);
      expectClose(await gpu.forward(chunk, 24), expected, 2e-4, 'chunk 24..35');
      let position = 36;
      for (let step = 0; step < 20; step++) {
        const next = argmax(expected);
        expected = reference.forward([next]);
        expectClose(await gpu.forward([next], position++), expected, 2e-4, `decode step ${step} (position ${position - 1})`);
      }
      // A prompt longer than 32 in one step, from scratch: the scaled base for every token of it.
      const gpu2 = await openTestRunner(dir, { dtype: 'f16', blockSize: 4 });
      try {
        reference.reset();
        const long = tokens(40);
        expectClose(await gpu2.forward(long, 0), last(reference.forward(long), 40), 2e-2, 'f16 prefill of 40');
      } finally {
        gpu2.destroy();
      }
    } finally {
      gpu.destroy();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('dynamic NTK, two sequences batched in every step, one past 32 and one crossing it, each matches its own reference', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'model-'));
  try {
    await writeSyntheticModel(dir, { ...dynamicNtk('llama'), dtype: 'F32', seed: 13 });
    const refs = [await ReferenceModel.load(dir), await ReferenceModel.load(dir)];
    const gpu = await openTestRunner(dir, { dtype: 'f32', blockSize: 4 });
    try {
      const vocab = refs[0]!.config.vocabSize;
      const r = rng(7);
      const prompts = [26, 36].map((n) => Array.from({ length: n }, () => 3 + Math.floor(r() * 500)));
      // Sequence i owns blocks [16 i, 16 i + 16): 64 positions each.
      const blocks = [0, 1].map((i) => Array.from({ length: 16 }, (_, b) => 16 * i + b));
      const row: SamplingRow = { params: { ...DEFAULT_SAMPLING, temperature: 0 }, promptTokenIds: [], outputTokenIds: [], step: 0 };
      const rows = new Map([
        ['a', row],
        ['b', row],
      ]);
      let step = 0;
      const run = async (chunks: number[][], starts: number[]): Promise<Float32Array> => {
        const output: SchedulerOutput = {
          step: step++,
          sequences: chunks.map((tokenIds, i) => ({
            requestId: i === 0 ? 'a' : 'b',
            tokenIds,
            startPosition: starts[i]!,
            blockIds: blocks[i]!.slice(0, Math.ceil((starts[i]! + tokenIds.length) / 4)),
            sample: true,
          })),
          numScheduledTokens: chunks.reduce((n, c) => n + c.length, 0),
          preemptedRequestIds: [],
          finishedRequestIds: [],
        };
        await gpu.runner.execute(output, rows);
        return gpu.runner.readLogits(2);
      };
      let expected = prompts.map((p, i) => refs[i]!.forward(p).subarray((p.length - 1) * vocab, p.length * vocab));
      let actual = await run(prompts, [0, 0]);
      const positions = prompts.map((p) => p.length);
      for (let s = 0; ; s++) {
        for (const i of [0, 1])
          expectClose(actual.subarray(i * vocab, (i + 1) * vocab), expected[i]!, 2e-4, `step ${s} sequence ${i} (length ${positions[i]})`);
        if (s === 10) break;
        const next = expected.map((e) => [argmax(e)]);
        expected = next.map((t, i) => refs[i]!.forward(t));
        actual = await run(next, positions);
        for (const i of [0, 1]) positions[i]! += 1;
      }
    } finally {
      gpu.destroy();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.run();
