// Drives a ModelRunner directly with hand-made scheduler outputs, so GPU forward passes can be
// compared with the plain-TS reference model token by token.
import { openDevices, type GpuDevice } from '../../src/gpu/index.js';
import { shardPlacementFor } from '../../src/runner/worker/placement.js';
import { loadModelConfig, type ModelConfig } from '../../src/checkpoint/config.js';
import { ModelRunner } from '../../src/runner/runner.js';
import { DEFAULT_SAMPLING, type SamplingRow } from '../../src/sampling/params.js';
import type { SchedulerOutput } from '../../src/scheduler/types.js';

export interface TestRunner {
  runner: ModelRunner;
  config: ModelConfig;
  devices: GpuDevice[];
  /** Computes `tokens` at positions [start, start + n) of one sequence; returns the last token's logits. */
  forward(tokens: number[], start: number): Promise<Float32Array>;
  destroy(): void;
}

export interface TestRunnerOptions {
  dtype: 'f16' | 'f32';
  tp?: number;
  blockSize?: number;
  maxModelLen?: number;
  /** Every shard in its own worker process (devices stays empty). */
  shardProcesses?: boolean;
}

export async function openTestRunner(modelDir: string, options: TestRunnerOptions): Promise<TestRunner> {
  const config = await loadModelConfig(modelDir);
  const indices = Array.from({ length: options.tp ?? 1 }, () => 0);
  const placements = options.shardProcesses ? await shardPlacementFor(indices, true) : null;
  const devices = placements ? [] : await openDevices(indices, { allowRepeatedAdapters: true });
  const blockSize = options.blockSize ?? 4;
  const maxModelLen = options.maxModelLen ?? 256;
  const runnerOptions = {
    dtype: options.dtype,
    blockSize,
    maxNumSeqs: 4,
    maxModelLen,
    maxNumBatchedTokens: 256,
    cacheMaxEntryCount: 0.5,
    kvCacheBlocks: Math.ceil(maxModelLen / blockSize) + 8,
    gpuMemoryBytes: 1024 ** 3,
  };
  const runner = placements
    ? await ModelRunner.loadInWorkers(modelDir, config, placements, runnerOptions)
    : await ModelRunner.load(modelDir, config, devices, runnerOptions);
  // Deliberately out of order: block tables must be honoured, not assumed contiguous.
  const numBlocks = Math.ceil(maxModelLen / blockSize);
  const blockIds = Array.from({ length: numBlocks }, (_, i) => (i * 7 + 3) % (numBlocks + 8));
  let step = 0;
  return {
    runner,
    config,
    devices,
    async forward(tokens, start) {
      const output: SchedulerOutput = {
        step: step++,
        sequences: [
          { requestId: 'r', tokenIds: tokens, startPosition: start, blockIds: blockIds.slice(0, Math.ceil((start + tokens.length) / blockSize)), sample: true },
        ],
        numScheduledTokens: tokens.length,
        preemptedRequestIds: [],
        finishedRequestIds: [],
      };
      const row: SamplingRow = { params: { ...DEFAULT_SAMPLING, temperature: 0 }, promptTokenIds: tokens, outputTokenIds: [], step: 0 };
      await runner.execute(output, new Map([['r', row]]));
      return runner.readLogits(1);
    },
    destroy() {
      runner.destroy();
      for (const d of devices) d.destroy();
    },
  };
}

export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

/** max |a - b| / max |b|: a scale-aware error for logits. */
export function relativeMaxError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < expected.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(actual[i]! - expected[i]!));
    maxRef = Math.max(maxRef, Math.abs(expected[i]!));
  }
  return maxDiff / Math.max(maxRef, 1e-6);
}

/** Greedy decoding through a test runner: the logits of the prompt and of each of `steps` decode steps. */
export async function greedyLogits(
  modelDir: string,
  options: { tp: number; shardProcesses?: boolean },
  prompt: number[],
  steps: number,
): Promise<{ tokens: number[]; logits: Float32Array[]; numWorkers: number }> {
  const r = await openTestRunner(modelDir, { dtype: 'f32', tp: options.tp, blockSize: 8, shardProcesses: options.shardProcesses });
  try {
    const logits: Float32Array[] = [await r.forward(prompt, 0)];
    const tokens: number[] = [];
    for (let i = 0; i < steps; i++) {
      const next = argmax(logits[logits.length - 1]!);
      tokens.push(next);
      logits.push(await r.forward([next], prompt.length + i));
    }
    return { tokens, logits, numWorkers: r.runner.remoteShards.length };
  } finally {
    r.destroy();
  }
}
