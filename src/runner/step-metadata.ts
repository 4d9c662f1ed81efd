// One step's scheduler output flattened into the per-token arrays every shard uploads. The runner
// builds it from the SchedulerOutput; a worker-process shard builds it again, with this same code,
// from the sequences it rebuilt out of the step's changes (worker/step-delta.ts).
import type { ScheduledSequence } from '../scheduler/types.js';
import type { StepMetadata } from './shard.js';

/** The sequences of a step, as the scheduler lists them (only these fields are read). */
export interface StepSequences {
  sequences: readonly ScheduledSequence[];
}

export function buildStepMetadata(output: StepSequences, blockSize: number, maxBlocksPerSeq: number): StepMetadata {
  const T = output.sequences.reduce((n, s) => n + s.tokenIds.length, 0);
  const S = output.sequences.length;
  const tokenIds = new Uint32Array(T);
  const positions = new Uint32Array(T);
  const tokenSeq = new Uint32Array(T);
  const slotMapping = new Uint32Array(T);
  const blockTables = new Uint32Array(S * maxBlocksPerSeq);
  const sampleRows: number[] = [];
  const sampledRequestIds: string[] = [];
  let t = 0;
  let maxContextLen = 0;
  output.sequences.forEach((seq, si) => {
    if (seq.blockIds.length > maxBlocksPerSeq) throw new Error(`request ${seq.requestId} has ${seq.blockIds.length} blocks, more than ${maxBlocksPerSeq}`);
    blockTables.set(seq.blockIds, si * maxBlocksPerSeq);
    for (let i = 0; i < seq.tokenIds.length; i++, t++) {
      const pos = seq.startPosition + i;
      tokenIds[t] = seq.tokenIds[i]!;
      positions[t] = pos;
      tokenSeq[t] = si;
      const block = seq.blockIds[Math.floor(pos / blockSize)];
      if (block === undefined) throw new Error(`request ${seq.requestId} has no KV block for position ${pos}`);
      slotMapping[t] = block * blockSize + (pos % blockSize);
    }
    maxContextLen = Math.max(maxContextLen, seq.startPosition + seq.tokenIds.length);
    if (seq.sample) {
      sampleRows.push(t - 1);
      sampledRequestIds.push(seq.requestId);
    }
  });
  return {
    shape: { numTokens: T, numSeqs: S, numSampled: sampleRows.length, maxContextLen, maxBlocksPerSeq },
    tokenIds,
    positions,
    tokenSeq,
    slotMapping,
    blockTables,
    sampleRows: Uint32Array.from(sampleRows),
    sampledRequestIds,
  };
}
