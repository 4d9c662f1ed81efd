// The reference bench model of the engine issue: Llama, hidden 768, 12 layers, 12 heads, 4 KV heads,
// intermediate 2048, vocab 512 (the stories260K tokenizer), f16, random normal / sqrt(fan_in):
// 76.3M parameters, 152.6 MB. Generated once into the temp folder and reused.
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_ENGINE_OPTIONS, Engine } from '../src/engine/engine.js';
import { writeSyntheticModel } from '../test/support/synthetic-model.js';

export const BENCH_MODEL = {
  architecture: 'llama',
  hiddenSize: 768,
  numLayers: 12,
  numHeads: 12,
  numKvHeads: 4,
  intermediateSize: 2048,
  vocabSize: 512,
  dtype: 'F16',
  seed: 1234,
  tieWordEmbeddings: false,
  maxPositionEmbeddings: 2048,
} as const;

export async function benchModelDir(): Promise<string> {
  const dir = join(tmpdir(), 'webgpu-llm-bench-model-v1');
  if (!existsSync(join(dir, 'model.safetensors'))) {
    await mkdir(dir, { recursive: true });
    await writeSyntheticModel(dir, { ...BENCH_MODEL });
  }
  return dir;
}

/** Random story-ish prompt ids (skipping the special ids 0..2). */
export function randomPrompt(length: number, seed: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return 3 + (s % 509);
  });
}

/** The engine the decode and structured-output benches time: one device, f16, 16 sequences, 64 blocks of 64, no prefix cache. */
export function openBenchEngine(modelDir: string): Promise<Engine> {
  return Engine.create({
    ...DEFAULT_ENGINE_OPTIONS,
    modelDir,
    devices: [0],
    dtype: 'f16',
    maxBatchSize: 16,
    kvCacheBlocks: 64,
    blockSize: 64,
    enablePrefixCaching: false,
    sessionLen: 1024,
    progress: false,
  });
}

/** The 10-property JSON schema (strings with maxLength, bounded integers, enums), all required. */
export const TEN_PROPERTY_SCHEMA: Record<string, unknown> = {
  type: 'object',
  properties: Object.fromEntries(
    Array.from({ length: 10 }, (_, i) => [
      `p${i}`,
      i % 3 === 0 ? { type: 'string', maxLength: 12 } : i % 3 === 1 ? { type: 'integer', minimum: 0, maximum: 999 } : { enum: ['red', 'green', 'blue'] },
    ]),
  ),
  required: Array.from({ length: 10 }, (_, i) => `p${i}`),
};
