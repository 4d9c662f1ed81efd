// RoPE inverse frequencies with transformers' modeling_rope_utils semantics (default, linear, dynamic NTK,
// llama3, yarn). The runner uploads invFreq and
// shaders/rotary.wgsl takes cos/sin of pos * invFreq per token. Dynamic NTK depends on the sequence's
// length, so the runner uploads one row per sequence every step (dynamicNtkRows).
// Values are computed in float64 and rounded once to float32 (transformers computes in float32; the
// difference is within one f32 ulp of each frequency).
import type { RopeConfig } from './config.js';

export interface RopeFrequencies {
  /** rotaryDim / 2 frequencies: angle(pos, i) = pos * invFreq[i]. */
  invFreq: Float32Array;
  /** Multiplies cos and sin (yarn's attention factor; 1 otherwise). */
  attentionScaling: number;
}

/**
 * Inverse frequencies for the rotary dimensions of one head.
 * Dynamic NTK follows transformers (`_compute_dynamic_ntk_parameters` + `dynamic_rope_update`): for a
 * sequence of `seqLen` = max(position) + 1 tokens, the default frequencies while
 * seqLen <= original max_position_embeddings, else those of the grown base
 * theta * (factor * seqLen / original - (factor - 1)) ^ (dim / (dim - 2)).
 * Without seqLen (or at or below the original length) dynamic gives the default frequencies.
 * Every other type ignores seqLen.
 */
export function ropeInvFreq(rope: RopeConfig, seqLen?: number): RopeFrequencies {
  const dim = rope.rotaryDim;
  const scaling = rope.scaling;
  if (scaling === null) return { invFreq: toF32(defaultInvFreq(rope.theta, dim)), attentionScaling: 1 };
  switch (scaling.type) {
    case 'linear':
      return { invFreq: toF32(defaultInvFreq(rope.theta, dim).map((f) => f / scaling.factor)), attentionScaling: 1 };
    case 'dynamic': {
      return { invFreq: toF32(defaultInvFreq(dynamicNtkBase(rope.theta, dim, scaling, seqLen), dim)), attentionScaling: 1 };
    }
    case 'llama3':
      return { invFreq: toF32(llama3InvFreq(defaultInvFreq(rope.theta, dim), scaling)), attentionScaling: 1 };
    case 'yarn':
      return yarnInvFreq(rope.theta, dim, scaling);
  }
}

type DynamicScaling = Extract<NonNullable<RopeConfig['scaling']>, { type: 'dynamic' }>;

/** transformers' dynamic NTK base for a sequence of seqLen tokens (theta itself up to the original length). */
function dynamicNtkBase(theta: number, dim: number, s: DynamicScaling, seqLen: number | undefined): number {
  const original = s.originalMaxPositionEmbeddings;
  if (seqLen === undefined || seqLen <= original) return theta;
  return theta * ((s.factor * seqLen) / original - (s.factor - 1)) ** (dim / (dim - 2));
}

/**
 * Dynamic NTK, per sequence: row s of `out` ([numSeqs, rotaryDim / 2]) gets the frequencies for
 * seqLens[s] tokens; rows of sequences within the original length copy `base` (the default frequencies).
 * The same float64 formula as ropeInvFreq, rounded once to f32, so both agree bit for bit.
 */
export function dynamicNtkRows(rope: RopeConfig, base: Float32Array, seqLens: ArrayLike<number>, out: Float32Array): void {
  const scaling = rope.scaling;
  if (scaling?.type !== 'dynamic') throw new Error('dynamicNtkRows: the model does not use dynamic NTK RoPE');
  const half = rope.rotaryDim / 2;
  const dim = rope.rotaryDim;
  for (let s = 0; s < seqLens.length; s++) {
    const seqLen = seqLens[s]!;
    if (seqLen <= scaling.originalMaxPositionEmbeddings) {
      out.set(base, s * half);
      continue;
    }
    const b = dynamicNtkBase(rope.theta, dim, scaling, seqLen);
    for (let i = 0; i < half; i++) out[s * half + i] = 1 / b ** ((2 * i) / dim);
  }
}

function defaultInvFreq(base: number, dim: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < dim; i += 2) out.push(1 / base ** (i / dim));
  return out;
}

/** Llama 3.1: long wavelengths are divided by factor, short ones kept, the band between blended smoothly. */
function llama3InvFreq(
  invFreq: number[],
  s: { factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number },
): number[] {
  const lowFreqWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highFreqWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  return invFreq.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen > lowFreqWavelen) return f / s.factor;
    if (wavelen < highFreqWavelen) return f;
    const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    return ((1 - smooth) * f) / s.factor + smooth * f;
  });
}

/** YaRN: interpolate low frequencies, extrapolate high ones, a linear ramp between; cos/sin scaled by mscale. */
function yarnInvFreq(base: number, dim: number, s: Extract<NonNullable<RopeConfig['scaling']>, { type: 'yarn' }>): RopeFrequencies {
  const getMscale = (scale: number, mscale = 1) => (scale <= 1 ? 1 : 0.1 * mscale * Math.log(scale) + 1);
  let attentionScaling = s.attentionFactor;
  if (attentionScaling === null) {
    attentionScaling = s.mscale && s.mscaleAllDim ? getMscale(s.factor, s.mscale) / getMscale(s.factor, s.mscaleAllDim) : getMscale(s.factor);
  }
  const correctionDim = (numRotations: number) => (dim * Math.log(s.originalMaxPositionEmbeddings / (numRotations * 2 * Math.PI))) / (2 * Math.log(base));
  const low = Math.max(Math.floor(correctionDim(s.betaFast)), 0);
  let high = Math.min(Math.ceil(correctionDim(s.betaSlow)), dim - 1);
  if (low === high) high += 0.001; // transformers' guard against a zero-width ramp
  const invFreq = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) {
    const posFreq = base ** ((2 * i) / dim);
    const ramp = Math.min(Math.max((i - low) / (high - low), 0), 1);
    const extrapolationWeight = 1 - ramp;
    invFreq[i] = (1 / (s.factor * posFreq)) * (1 - extrapolationWeight) + (1 / posFreq) * extrapolationWeight;
  }
  return { invFreq, attentionScaling };
}

function toF32(values: number[]): Float32Array {
  return Float32Array.from(values);
}
