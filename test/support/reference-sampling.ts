// The reference sampler: the exact semantics of GpuSampler (src/kernels/sampling.ts) in plain
// TypeScript. Tests compare the GPU against it draw for draw. Which tokens are penalised and when a row
// is greedy come from src/sampling/penalties.ts, the data the GPU sampler is handed too.
//
// Per row (vLLM / HF semantics):
//   0. logits processing (vLLM v1's order): the grammar's allowed-token mask (others become -inf), then
//      logit bias / min_tokens (added in f32); the result replaces the raw logits everywhere below;
//   1. logprobs come from log_softmax of the RAW (processed) logits; -inf is reported as -9999;
//   2. penalties act on an f32 copy: repetition over prompt + output (HF), then frequency and presence
//      over output tokens (OpenAI / vLLM order);
//   3. temperature 0 (below 1e-5) is greedy argmax (ties: lowest id); otherwise z = y * f32(1/T), then top-k, top-p
//      (on the top-k survivors, renormalised), min-p, and an inverse-CDF draw in token-id order with the
//      counter-based uniform of (seed, step).
// Every filter is a threshold on z, so the kept set is {i : z_i >= zThreshold and p_i >= minP * p_max};
// ties at a threshold are all kept.
import {
  DEFAULT_SAMPLING,
  MAX_TOP_LOGPROBS,
  type LogitsProcessing,
  type SampleResult,
  type SamplingParams,
  type SamplingRow,
  type TokenChoice,
} from '../../src/sampling/params.js';
import { uniformForStep } from '../../src/sampling/rng.js';
import { isGreedy, penaltyTable } from '../../src/sampling/penalties.js';

export { GREEDY_BELOW_TEMPERATURE, hasPenalties, isGreedy, penaltyTable, type PenaltyTable } from '../../src/sampling/penalties.js';

const f32 = Math.fround;

/** One token's penalised logit, in f32 steps that the GPU repeats exactly. */
export function penalisedLogit(x: number, outputCount: number, p: SamplingParams): number {
  let y = f32(x);
  if (p.repetitionPenalty !== 1) y = y > 0 ? f32(y * f32(1 / p.repetitionPenalty)) : f32(y * f32(p.repetitionPenalty));
  if (outputCount > 0) {
    y = f32(y - f32(f32(p.frequencyPenalty) * outputCount));
    y = f32(y - f32(p.presencePenalty));
  }
  return y;
}

/** An f32 copy of `logits` with the row's penalties applied. */
export function applyPenalties(logits: Float32Array, row: SamplingRow): Float32Array {
  const out = Float32Array.from(logits);
  const table = penaltyTable(row, logits.length);
  for (let j = 0; j < table.tokenIds.length; j++) {
    const id = table.tokenIds[j]!;
    out[id] = penalisedLogit(logits[id]!, table.outputCounts[j]!, row.params);
  }
  return out;
}

export function logSumExp(logits: ArrayLike<number>): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]!);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  return max + Math.log(sum);
}

/** Highest value, lowest id on ties. */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

/** The n most likely tokens of the raw logits, best first (ties: lowest id). */
export function topLogprobs(logits: ArrayLike<number>, n: number, lse = logSumExp(logits)): TokenChoice[] {
  const ids = Array.from({ length: logits.length }, (_, i) => i);
  ids.sort((a, b) => logits[b]! - logits[a]! || a - b);
  return ids.slice(0, Math.min(n, logits.length)).map((tokenId) => ({ tokenId, logprob: logits[tokenId]! - lse }));
}

/** z = y * f32(1 / T) in f32, as the GPU computes it. */
export function scaleByTemperature(penalised: Float32Array, temperature: number): Float32Array {
  const invT = f32(1 / temperature);
  return penalised.map((y) => y * invT);
}

/**
 * Which tokens survive top-k, top-p and min-p: kept[i] = 1 for survivors. z is the temperature-scaled
 * penalised row. top-p keeps token i iff the renormalised mass of top-k survivors strictly more likely
 * than i is < topP (so the best token always stays and ties at the cut all stay).
 */
export function keptMask(z: Float32Array, p: SamplingParams): Uint8Array {
  const n = z.length;
  let zmax = -Infinity;
  for (let i = 0; i < n; i++) zmax = Math.max(zmax, z[i]!);
  let zThreshold = -Infinity;
  if (p.topK > 0 && p.topK < n) zThreshold = Float32Array.from(z).sort().reverse()[p.topK - 1]!;
  if (p.topP < 1) zThreshold = topPThreshold(z, zmax, zThreshold, p.topP);
  const kept = new Uint8Array(n);
  for (let i = 0; i < n; i++) kept[i] = z[i]! >= zThreshold && Math.exp(z[i]! - zmax) >= p.minP ? 1 : 0;
  return kept;
}

function topPThreshold(z: Float32Array, zmax: number, floor: number, topP: number): number {
  const candidates: number[] = [];
  for (let i = 0; i < z.length; i++) if (z[i]! >= floor) candidates.push(z[i]!);
  candidates.sort((a, b) => b - a);
  let total = 0;
  for (const v of candidates) total += Math.exp(v - zmax);
  const target = topP * total;
  let above = 0;
  for (let j = 0; j < candidates.length; ) {
    const v = candidates[j]!;
    let group = 0;
    for (; j < candidates.length && candidates[j] === v; j++) group += Math.exp(v - zmax);
    if (above + group >= target) return v;
    above += group;
  }
  return candidates[candidates.length - 1]!;
}

/** Inverse CDF in token-id order over the kept tokens: the first i whose cumulative mass exceeds u * total. */
export function drawIndex(z: Float32Array, kept: Uint8Array, u: number): number {
  let zmax = -Infinity;
  for (let i = 0; i < z.length; i++) zmax = Math.max(zmax, z[i]!);
  let total = 0;
  let lastKept = -1;
  for (let i = 0; i < z.length; i++) {
    if (!kept[i]) continue;
    const e = Math.exp(z[i]! - zmax);
    total += e;
    if (e > 0) lastKept = i;
  }
  const target = u * total;
  let cumulative = 0;
  for (let i = 0; i < z.length; i++) {
    if (!kept[i]) continue;
    cumulative += Math.exp(z[i]! - zmax);
    if (cumulative > target) return i;
  }
  return lastKept;
}

/** The mask (disallowed -> -inf), then the bias, in f32. */
export function applyProcessing(logits: Float32Array, proc: LogitsProcessing | null | undefined): Float32Array {
  if (!proc) return logits;
  const out = Float32Array.from(logits);
  if (proc.allowedMask) {
    for (let i = 0; i < out.length; i++) if (((proc.allowedMask[i >> 5]! >>> (i & 31)) & 1) === 0) out[i] = Number.NEGATIVE_INFINITY;
  }
  proc.biasTokenIds.forEach((id, j) => (out[id] = f32(out[id]! + proc.biasValues[j]!)));
  return out;
}

const finite = (logprob: number) => (logprob === Number.NEGATIVE_INFINITY ? -9999 : logprob);

/** Samples one row exactly as GpuSampler does (up to floating-point rounding in sums). */
export function sampleReference(rawLogits: Float32Array, row: SamplingRow, processing: LogitsProcessing | null = null): SampleResult {
  const logits = applyProcessing(rawLogits, processing);
  const p: SamplingParams = { ...DEFAULT_SAMPLING, ...row.params };
  const lse = logSumExp(logits);
  const penalised = applyPenalties(logits, { ...row, params: p });
  let tokenId: number;
  if (isGreedy(p)) {
    tokenId = argmax(penalised);
  } else {
    const z = scaleByTemperature(penalised, p.temperature);
    tokenId = drawIndex(z, keptMask(z, p), uniformForStep(p.seed, row.step));
  }
  const numTop = p.logprobs !== null && p.logprobs > 0 ? Math.min(p.logprobs, MAX_TOP_LOGPROBS) : 0;
  return {
    tokenId,
    logprob: finite(logits[tokenId]! - lse),
    topLogprobs: numTop > 0 ? topLogprobs(logits, numTop, lse).map((c) => ({ ...c, logprob: finite(c.logprob) })) : [],
  };
}
