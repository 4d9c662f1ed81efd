// The attention block on the host, for AWQ's q/k/v scale search: AutoAWQ scores a q/k/v candidate by
// the output of the whole self-attention module (module2inspect), not by the projections' outputs,
// because the softmax weighs errors in q and k by how much they move the attention pattern. Given the
// projections' outputs for the calibration tokens (computed on the GPU), this forms what the shard's
// kernels would: biases, Qwen3's per-head q/k RMSNorm, RoPE (rotate_half, partial rotary, the model's
// rope scaling at the calibration length), causal grouped-query attention within each calibration
// sequence (sliding window honoured), scale 1/sqrt(head_dim). o_proj is applied by the caller (GPU).
// The caller checks it once per layer against the attention output the engine itself computed.
import type { ModelConfig } from '../checkpoint/config.js';
import { ropeInvFreq } from '../checkpoint/rope.js';

/** The layer's tensors the block needs besides the projections (absent when the model has none). */
export interface AttentionBlockWeights {
  qBias?: Float32Array;
  kBias?: Float32Array;
  vBias?: Float32Array;
  qNorm?: Float32Array;
  kNorm?: Float32Array;
}

export class AttentionBlock {
  private readonly cos: Float64Array;
  private readonly sin: Float64Array;

  /** `seqLen` tokens per calibration sequence, sequences back to back. */
  constructor(
    private readonly config: ModelConfig,
    private readonly weights: AttentionBlockWeights,
    private readonly seqLen: number,
  ) {
    if (config.qkNorm && !(weights.qNorm && weights.kNorm)) throw new Error('quantize: the model normalises q and k per head, but q_norm / k_norm are missing');
    const half = config.rope.rotaryDim / 2;
    const { invFreq, attentionScaling } = ropeInvFreq(config.rope, seqLen);
    this.cos = new Float64Array(seqLen * half);
    this.sin = new Float64Array(seqLen * half);
    for (let p = 0; p < seqLen; p++) {
      for (let i = 0; i < half; i++) {
        const angle = p * invFreq[i]!;
        this.cos[p * half + i] = Math.cos(angle) * attentionScaling;
        this.sin[p * half + i] = Math.sin(angle) * attentionScaling;
      }
    }
  }

  /** qkv [numTokens, (heads + 2 kv heads) * headDim] (q, then k, then v, no bias) -> attention output [numTokens, heads * headDim]. */
  attend(qkv: Float32Array, numTokens: number): Float32Array {
    const { numHeads: H, numKvHeads: KV, headDim: D } = this.config;
    const width = (H + 2 * KV) * D;
    if (qkv.length !== numTokens * width) throw new Error(`quantize: q/k/v outputs have ${qkv.length} values, expected ${numTokens} x ${width}`);
    if (numTokens % this.seqLen !== 0) throw new Error(`quantize: ${numTokens} calibration tokens are not whole sequences of ${this.seqLen}`);
    const q = new Float64Array(numTokens * H * D);
    const k = new Float64Array(numTokens * KV * D);
    const v = new Float64Array(numTokens * KV * D);
    for (let t = 0; t < numTokens; t++) {
      const row = t * width;
      for (let j = 0; j < H * D; j++) q[t * H * D + j] = qkv[row + j]! + (this.weights.qBias?.[j] ?? 0);
      for (let j = 0; j < KV * D; j++) {
        k[t * KV * D + j] = qkv[row + H * D + j]! + (this.weights.kBias?.[j] ?? 0);
        v[t * KV * D + j] = qkv[row + (H + KV) * D + j]! + (this.weights.vBias?.[j] ?? 0);
      }
      const pos = t % this.seqLen;
      for (let h = 0; h < H; h++) this.headNormAndRope(q, (t * H + h) * D, pos, this.weights.qNorm);
      for (let h = 0; h < KV; h++) this.headNormAndRope(k, (t * KV + h) * D, pos, this.weights.kNorm);
    }
    const out = new Float32Array(numTokens * H * D);
    const scale = 1 / Math.sqrt(D);
    const window = this.config.slidingWindow ?? 0;
    const scores = new Float64Array(this.seqLen);
    const group = H / KV;
    for (let t = 0; t < numTokens; t++) {
      const pos = t % this.seqLen;
      const first = t - pos + (window > 0 ? Math.max(0, pos - window + 1) : 0);
      for (let h = 0; h < H; h++) {
        const qOff = (t * H + h) * D;
        const kvHead = Math.floor(h / group);
        let max = -Infinity;
        for (let j = first; j <= t; j++) {
          const kOff = (j * KV + kvHead) * D;
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q[qOff + d]! * k[kOff + d]!;
          scores[j - first] = dot * scale;
          if (scores[j - first]! > max) max = scores[j - first]!;
        }
        let sum = 0;
        for (let j = first; j <= t; j++) sum += scores[j - first] = Math.exp(scores[j - first]! - max);
        for (let d = 0; d < D; d++) {
          let acc = 0;
          for (let j = first; j <= t; j++) acc += scores[j - first]! * v[(j * KV + kvHead) * D + d]!;
          out[qOff + d] = acc / sum;
        }
      }
    }
    return out;
  }

  /** Qwen3's RMSNorm over one head (when normWeight is given), then RoPE at `pos`, in place. */
  private headNormAndRope(x: Float64Array, at: number, pos: number, normWeight: Float32Array | undefined): void {
    const D = this.config.headDim;
    if (normWeight) {
      let ss = 0;
      for (let d = 0; d < D; d++) ss += x[at + d]! * x[at + d]!;
      const inv = 1 / Math.sqrt(ss / D + this.config.rmsNormEps);
      for (let d = 0; d < D; d++) x[at + d] = x[at + d]! * inv * normWeight[d]!;
    }
    const half = this.config.rope.rotaryDim / 2;
    for (let i = 0; i < half; i++) {
      const c = this.cos[pos * half + i]!;
      const s = this.sin[pos * half + i]!;
      const x1 = x[at + i]!;
      const x2 = x[at + i + half]!;
      x[at + i] = x1 * c - x2 * s;
      x[at + i + half] = x2 * c + x1 * s;
    }
  }
}
