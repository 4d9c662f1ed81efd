// Which tokens a row's penalties touch and when a row samples greedily: the host-side data the GPU
// sampler (src/kernels/sampling.ts) uploads, shared with the CPU reference sampler in test/support/.
import type { SamplingParams, SamplingRow } from './params.js';

/** Temperatures below this sample greedily (vLLM's _SAMPLING_EPS): 1/T would overflow f32 long before 0. */
export const GREEDY_BELOW_TEMPERATURE = 1e-5;

export function isGreedy(p: SamplingParams): boolean {
  return !(p.temperature >= GREEDY_BELOW_TEMPERATURE);
}

/** The distinct tokens a row's penalties touch, sorted by id, with how often each occurs in the output. */
export interface PenaltyTable {
  tokenIds: number[];
  outputCounts: number[];
}

export function hasPenalties(p: SamplingParams): boolean {
  return p.repetitionPenalty !== 1 || p.presencePenalty !== 0 || p.frequencyPenalty !== 0;
}

/** Builds the penalty table of a row; ids outside [0, vocabSize) are ignored. */
export function penaltyTable(row: SamplingRow, vocabSize: number): PenaltyTable {
  const p = row.params;
  if (!hasPenalties(p)) return { tokenIds: [], outputCounts: [] };
  const counts = new Map<number, number>();
  const note = (id: number, inc: number) => {
    if (Number.isInteger(id) && id >= 0 && id < vocabSize) counts.set(id, (counts.get(id) ?? 0) + inc);
  };
  for (let i = 0; i < row.outputTokenIds.length; i++) note(row.outputTokenIds[i]!, 1);
  // Prompt tokens matter only to the repetition penalty.
  if (p.repetitionPenalty !== 1) for (let i = 0; i < row.promptTokenIds.length; i++) note(row.promptTokenIds[i]!, 0);
  const tokenIds = [...counts.keys()].sort((a, b) => a - b);
  return { tokenIds, outputCounts: tokenIds.map((id) => counts.get(id)!) };
}
