// Per-step data for a worker-process shard as changes only, as vLLM's scheduler output does: a
// request's block table, prompt and sampling parameters cross once; after that a step carries, per
// scheduled request, its token ids and start position, the block ids appended to its table and the
// tokens appended to its outputs. So a decode step costs a few words per request, whatever the
// prompt and output lengths.
//
// The parent keeps a mirror of what each worker holds (StepDeltaEncoder) and checks it against every
// step: a block table that does not extend the sent one (preemption frees it; the request comes
// back with new blocks), other parameters or prompt, or outputs that are not the sent ones plus new
// tokens make it drop the request and send it again in full. So the worker's StepDecoder always
// rebuilds exactly the sequences and sampling rows the runner saw, and buildStepMetadata turns them
// into the same StepMetadata as in-process, bit for bit. Arrays that are the same objects as last
// step are taken to have only grown (the engine's Request appends outputs and never edits its prompt).
//
// A request leaves the worker when the scheduler reports it preempted or finished (the plan's
// preemptedRequestIds and finishedRequestIds); one preempted comes back later as a new request.
import type { SamplingParams, SamplingRow } from '../../sampling/params.js';
import type { ScheduledSequence } from '../../scheduler/types.js';
import type { StepInput } from '../shard.js';
import type { NewRequest, NewSampling, StepDelta } from './messages.js';

const SAMPLES = 1;
const HAS_ROW = 2;
const HEADER_WORDS = 5;
const ROW_WORDS = 2;

interface SentSampling {
  params: SamplingParams;
  prompt: ArrayLike<number>;
  outputs: ArrayLike<number>;
  numOutputs: number;
}

interface Sent {
  handle: number;
  requestId: string;
  /** The block table the worker holds. */
  blockIds: number[];
  /** Null until it first samples (and on every shard but the sampling one). */
  sampling: SentSampling | null;
}

/** The parent's side: turns each step into a StepDelta for one worker, remembering what it sent. */
export class StepDeltaEncoder {
  private readonly sent = new Map<string, Sent>();
  private nextHandle = 1;

  /**
   * @param withSampling whether this worker samples (rank 0): only then are prompts, outputs and
   *   parameters sent.
   */
  constructor(private readonly withSampling: boolean) {}

  /** Requests the worker holds state for. */
  get numTracked(): number {
    return this.sent.size;
  }

  encode(step: StepInput): StepDelta {
    checkRows(step);
    const drop: number[] = [];
    const add: NewRequest[] = [];
    const sampling: NewSampling[] = [];
    const forget = (s: Sent) => {
      drop.push(s.handle);
      this.sent.delete(s.requestId);
    };
    // Departures first: a finished request's id may already be reused by a new one in this step.
    for (const id of [...step.output.finishedRequestIds, ...step.output.preemptedRequestIds]) {
      const s = this.sent.get(id);
      if (s) forget(s);
    }
    const words: number[] = [];
    let numRows = 0;
    for (const seq of step.output.sequences) {
      const row = seq.sample ? step.rows[numRows++] : undefined;
      let s = this.sent.get(seq.requestId);
      if (s && !isPrefix(s.blockIds, seq.blockIds)) {
        forget(s);
        s = undefined;
      }
      let newBlocks: readonly number[] = [];
      if (!s) {
        s = { handle: this.nextHandle++, requestId: seq.requestId, blockIds: seq.blockIds.slice(), sampling: null };
        this.sent.set(seq.requestId, s);
        add.push({ handle: s.handle, requestId: seq.requestId, blockIds: Uint32Array.from(seq.blockIds) });
      } else if (seq.blockIds.length > s.blockIds.length) {
        newBlocks = seq.blockIds.slice(s.blockIds.length);
        for (const b of newBlocks) s.blockIds.push(b);
      }
      const withRow = this.withSampling && row !== undefined;
      words.push(s.handle, seq.startPosition, seq.tokenIds.length, newBlocks.length, (seq.sample ? SAMPLES : 0) | (withRow ? HAS_ROW : 0));
      let newOutputs: ArrayLike<number> = [];
      if (withRow) {
        newOutputs = this.syncSampling(s, row, sampling);
        words.push(row.step, newOutputs.length);
      }
      pushAll(words, seq.tokenIds);
      pushAll(words, newBlocks);
      pushAll(words, newOutputs);
    }
    const delta: StepDelta = { seqs: Uint32Array.from(words) };
    if (drop.length) delta.drop = drop;
    if (add.length) delta.add = add;
    if (sampling.length) delta.sampling = sampling;
    return delta;
  }

  /** Returns the output tokens to append; queues the full sampling state when the worker's is not a prefix of the row. */
  private syncSampling(s: Sent, row: SamplingRow, out: NewSampling[]): ArrayLike<number> {
    const held = s.sampling;
    const outputs = row.outputTokenIds;
    if (
      held &&
      sameParams(held.params, row.params) &&
      sameTokens(held.prompt, row.promptTokenIds) &&
      outputs.length >= held.numOutputs &&
      (outputs === held.outputs || samePrefix(held.outputs, outputs, held.numOutputs))
    ) {
      const appended = Array.prototype.slice.call(outputs, held.numOutputs) as number[];
      held.prompt = row.promptTokenIds;
      held.outputs = outputs;
      held.numOutputs = outputs.length;
      return appended;
    }
    s.sampling = { params: { ...row.params }, prompt: row.promptTokenIds, outputs, numOutputs: outputs.length };
    out.push({ handle: s.handle, params: row.params, promptTokenIds: Uint32Array.from(row.promptTokenIds), outputTokenIds: Uint32Array.from(outputs) });
    return [];
  }
}

interface Held {
  requestId: string;
  blockIds: number[];
  sampling: { params: SamplingParams; promptTokenIds: Uint32Array; outputTokenIds: number[] } | null;
}

/** What a worker rebuilds from one StepDelta: the step's sequences and (rank 0) its sampling rows. */
export interface DecodedStep {
  sequences: ScheduledSequence[];
  /** The rows of the sequences that sample, in step order (empty on shards that do not sample). */
  rows: SamplingRow[];
}

/** The worker's side: holds each request's block table and sampling state, and applies deltas. */
export class StepDeltaDecoder {
  private readonly held = new Map<number, Held>();

  get numHeld(): number {
    return this.held.size;
  }

  /** The returned arrays are the decoder's own: use them before the next apply(). */
  apply(delta: StepDelta): DecodedStep {
    for (const h of delta.drop ?? []) this.held.delete(h);
    for (const a of delta.add ?? []) this.held.set(a.handle, { requestId: a.requestId, blockIds: Array.from(a.blockIds), sampling: null });
    for (const s of delta.sampling ?? []) {
      this.get(s.handle).sampling = { params: s.params, promptTokenIds: s.promptTokenIds, outputTokenIds: Array.from(s.outputTokenIds) };
    }
    const w = delta.seqs;
    const sequences: ScheduledSequence[] = [];
    const rows: SamplingRow[] = [];
    let i = 0;
    while (i < w.length) {
      if (i + HEADER_WORDS > w.length) throw new Error('step delta: truncated sequence header');
      const h = this.get(w[i]!);
      const startPosition = w[i + 1]!;
      const numTokens = w[i + 2]!;
      const numNewBlocks = w[i + 3]!;
      const flags = w[i + 4]!;
      i += HEADER_WORDS;
      let step = 0;
      let numNewOutputs = 0;
      if (flags & HAS_ROW) {
        step = w[i]!;
        numNewOutputs = w[i + 1]!;
        i += ROW_WORDS;
      }
      if (i + numTokens + numNewBlocks + numNewOutputs > w.length) throw new Error(`step delta: the sequence of request ${h.requestId} runs past the end`);
      const tokenIds = Array.from(w.subarray(i, i + numTokens));
      i += numTokens;
      for (let k = 0; k < numNewBlocks; k++) h.blockIds.push(w[i + k]!);
      i += numNewBlocks;
      if (flags & HAS_ROW) {
        const s = h.sampling;
        if (!s) throw new Error(`step delta: request ${h.requestId} samples but its sampling state was never sent`);
        for (let k = 0; k < numNewOutputs; k++) s.outputTokenIds.push(w[i + k]!);
        i += numNewOutputs;
        rows.push({ params: s.params, promptTokenIds: s.promptTokenIds, outputTokenIds: s.outputTokenIds, step });
      }
      sequences.push({ requestId: h.requestId, tokenIds, startPosition: startPosition!, blockIds: h.blockIds, sample: (flags & SAMPLES) !== 0 });
    }
    return { sequences, rows };
  }

  private get(handle: number): Held {
    const h = this.held.get(handle);
    if (!h) throw new Error(`step delta: no request with handle ${handle} (the parent and the worker disagree)`);
    return h;
  }
}

/** Throws before anything is recorded, so a bad step leaves the mirror as the worker's state. */
function checkRows(step: StepInput): void {
  const sampled = step.output.sequences.filter((q) => q.sample);
  if (sampled.length !== step.rows.length) throw new Error(`step has ${sampled.length} sampled sequences but ${step.rows.length} sampling rows`);
  step.rows.forEach((row, i) => {
    if (!(Number.isInteger(row.step) && row.step >= 0 && row.step < 2 ** 32)) {
      throw new Error(`request ${sampled[i]!.requestId}: sampling step ${row.step} must be a non-negative integer`);
    }
  });
}

function isPrefix(prefix: readonly number[], of: readonly number[]): boolean {
  if (prefix.length > of.length) return false;
  for (let i = 0; i < prefix.length; i++) if (prefix[i] !== of[i]) return false;
  return true;
}

function sameTokens(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  return a === b || (a.length === b.length && samePrefix(a, b, a.length));
}

function samePrefix(a: ArrayLike<number>, b: ArrayLike<number>, n: number): boolean {
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** By value: `held` is a copy, so a params object edited in place is still noticed. */
function sameParams(held: SamplingParams, b: SamplingParams): boolean {
  const a = held;
  const keys = Object.keys(a) as (keyof SamplingParams)[];
  return keys.length === Object.keys(b).length && keys.every((k) => Object.is(a[k], b[k]));
}

function pushAll(out: number[], values: ArrayLike<number>): void {
  for (let i = 0; i < values.length; i++) out.push(values[i]!);
}
