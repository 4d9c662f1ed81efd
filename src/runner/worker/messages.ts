// The messages between the parent (host.ts, RemoteShard) and a shard worker process (worker.ts). They
// cross a fork() channel with serialization 'advanced', so typed arrays travel as such.
import type { LogitsProcessing, SamplingParams } from '../../sampling/params.js';
import type { MemoryPlan } from '../memory.js';
import type { RunnerOptions } from '../options.js';
import type { ExchangeBufferName, StepShape } from '../shard.js';

/** What a worker needs to open its device and load its slices of the model. */
export interface WorkerInit {
  modelDir: string;
  tp: number;
  rank: number;
  adapterIndex: number;
  label: string;
  options: RunnerOptions;
}

/** A request the worker does not hold yet: sent once (and again after a drop). */
export interface NewRequest {
  /** The parent's number for the request in this worker; steps name requests by it. */
  handle: number;
  requestId: string;
  /** The whole block table so far; later steps send only the blocks appended to it. */
  blockIds: Uint32Array;
}

/** What sampling a request needs (rank 0 only), sent the first time it samples after being added. */
export interface NewSampling {
  handle: number;
  params: SamplingParams;
  promptTokenIds: Uint32Array;
  /** Its outputs so far; later steps send only the tokens appended to them. */
  outputTokenIds: Uint32Array;
}

/**
 * One step as changes against what the worker holds (worker/step-delta.ts writes and reads it).
 * Applied in this order: drop, add, sampling, then seqs. Empty lists are left out.
 */
export interface StepDelta {
  /** Handles to drop: finished, aborted, preempted, or about to be re-sent in full. */
  drop?: number[];
  add?: NewRequest[];
  sampling?: NewSampling[];
  /**
   * The scheduled sequences in step order, packed. Per sequence: handle, startPosition, numTokens,
   * numNewBlocks, flags (1 = samples, 2 = carries its sampling row), then with flag 2 the row's step
   * and numNewOutputs; then the token ids, the appended block ids and the appended output tokens.
   */
  seqs: Uint32Array;
}

/**
 * One operation, in the order the worker must run it. Ops with an id are answered. Encode ops leave
 * out `shape` when it is the last step's (the usual case).
 */
export type ShardOp =
  | { op: 'open'; id: number; init: WorkerInit }
  | { op: 'load'; id: number; plan: MemoryPlan }
  | { op: 'begin' }
  | { op: 'embedding'; shape?: StepShape }
  | { op: 'attention'; layer: number; shape?: StepShape }
  | { op: 'mlp'; layer: number; shape?: StepShape }
  | { op: 'logits'; shape?: StepShape }
  | { op: 'submit' }
  | { op: 'step'; delta: StepDelta }
  | { op: 'write'; name: ExchangeBufferName; data: Float32Array }
  | { op: 'read'; id: number; name: ExchangeBufferName; count: number }
  /** Samples the rows of the last step; processing[r]: row r's grammar mask and logit bias (null: none). */
  | { op: 'sample'; id: number; fullLogits: Float32Array | null; processing?: (LogitsProcessing | null)[] }
  /** lm_head over rows of the last step's final hidden states (prompt logprobs). */
  | { op: 'scoreLogits'; rows: Uint32Array }
  /** Prompt logprobs of the rows scoreLogits computed (rank 0). */
  | { op: 'score'; id: number; targets: Uint32Array; numTop: number; fullLogits: Float32Array | null };

export type HostMessage = { type: 'ops'; ops: ShardOp[] };

export type WorkerMessage =
  | { type: 'result'; id: number; value: unknown }
  /** id null: the worker failed outside a request (a queued op threw, or its device was lost). */
  | { type: 'error'; id: number | null; message: string };
