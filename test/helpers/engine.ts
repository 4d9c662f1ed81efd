// Engines on stories260K (or any model folder) with test-sized settings, and small helpers to run
// requests to completion.
import { Engine, DEFAULT_ENGINE_OPTIONS, type EngineOptions } from '../../src/engine/engine.js';
import type { GenerateDelta, GenerateRequest } from '../../src/engine/types.js';
import { DEFAULT_SAMPLING, type SamplingParams } from '../../src/sampling/params.js';

export const STORIES = new URL('../../../shared/models/stories260K', import.meta.url).pathname;

export const PUBLISHED_GREEDY_TEXT =
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.';

export function openEngine(overrides: Partial<EngineOptions> = {}): Promise<Engine> {
  return Engine.create({
    ...DEFAULT_ENGINE_OPTIONS,
    modelDir: STORIES,
    devices: [0],
    dtype: 'f32',
    blockSize: 16,
    kvCacheBlocks: 128,
    gpuMemoryBytes: 1024 ** 3,
    progress: false,
    ...overrides,
  });
}

export function greedy(overrides: Partial<SamplingParams> = {}): SamplingParams {
  return { ...DEFAULT_SAMPLING, temperature: 0, ...overrides };
}

export function request(promptTokenIds: number[], overrides: Partial<GenerateRequest> = {}): GenerateRequest {
  return { promptTokenIds, sampling: greedy(), maxTokens: 32, stop: [], stopTokenIds: [], ignoreEos: false, skipSpecialTokens: true, ...overrides };
}

export interface Completed {
  text: string;
  tokenIds: number[];
  finishReason: GenerateDelta['finishReason'];
  usage: GenerateDelta['usage'];
  deltas: GenerateDelta[];
}

export async function collect(stream: AsyncIterable<GenerateDelta>): Promise<Completed> {
  const deltas: GenerateDelta[] = [];
  for await (const d of stream) deltas.push(d);
  const last = deltas[deltas.length - 1]!;
  return {
    text: deltas.map((d) => d.text).join(''),
    tokenIds: deltas.flatMap((d) => d.tokenIds),
    finishReason: last.finishReason,
    usage: last.usage,
    deltas,
  };
}
