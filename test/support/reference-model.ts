// A plain-TypeScript float32 forward pass of the supported architectures, written independently of the GPU
// kernels (it shares only config, rope and the weight loader): the oracle GPU model tests compare against.
// Standard HF Llama: pre-norm RMSNorm, rotate_half RoPE, grouped-query attention with a KV cache, SwiGLU,
// final norm, lm_head or tied embeddings; Qwen2/InternLM2 biases; Mistral/Qwen2 sliding window; Qwen3's
// q_norm/k_norm (modeling_qwen3.py: RMSNorm over each head of q and k, after the projections, before RoPE);
// dynamic NTK RoPE as transformers' `dynamic_rope_update` does it (written here from the formula, not
// taken from src/checkpoint/rope.ts): each forward call rotates its tokens with the frequencies for
// seq_len = max(position) + 1, the default ones while seq_len <= max_position_embeddings.
// Weights and activations are stored as f32; dot products accumulate in f64.
import { strict as assert } from 'node:assert';
import { loadModelConfig, type ModelConfig } from '../../src/checkpoint/config.js';
import { ropeInvFreq } from '../../src/checkpoint/rope.js';
import { SafetensorsReader } from '../../src/checkpoint/safetensors.js';
import { loadCanonicalTensors } from '../../src/checkpoint/weights.js';
import { dequantize, hadamardRotate, quantizeRow, type KvQuantBits } from './kv-quant.js';

export interface ReferenceOptions {
  /**
   * Store K and V as a quantized cache would (test/support/kv-quant.ts: per token and kv head), and
   * with rotateKeys rotate q and k by the block Hadamard matrix first (what the runner does for
   * quantized caches). Default: f32 cache, no rotation.
   */
  kvCache?: { bits: KvQuantBits; rotateKeys: boolean };
}

interface LayerCache {
  keys: Float32Array; // [capacity, numKvHeads * headDim]
  values: Float32Array;
}

export class ReferenceModel {
  private layerCaches: LayerCache[] = [];
  private numCachedTokens = 0;
  private invFreq: Float32Array;
  private readonly attentionScaling: number;

  private constructor(
    readonly config: ModelConfig,
    private readonly weights: ReadonlyMap<string, Float32Array>,
    private readonly options: ReferenceOptions,
  ) {
    const rope = ropeInvFreq(config.rope);
    this.invFreq = rope.invFreq;
    this.attentionScaling = rope.attentionScaling;
    this.reset();
  }

  /** Loads all weights as f32 into memory: meant for small models. */
  static async load(modelDir: string, options: ReferenceOptions = {}): Promise<ReferenceModel> {
    const config = await loadModelConfig(modelDir);
    const reader = await SafetensorsReader.open(modelDir);
    const weights = new Map<string, Float32Array>();
    try {
      await loadCanonicalTensors(reader, config, 'f32', (t) => {
        weights.set(t.name, t.data as Float32Array);
      });
    } finally {
      await reader.close();
    }
    return new ReferenceModel(config, weights, options);
  }

  /** Number of tokens in the KV cache (the position of the next token). */
  get numTokens(): number {
    return this.numCachedTokens;
  }

  reset(): void {
    const kvDim = this.config.numKvHeads * this.config.headDim;
    this.layerCaches = Array.from({ length: this.config.numLayers }, () => ({
      keys: new Float32Array(16 * kvDim),
      values: new Float32Array(16 * kvDim),
    }));
    this.numCachedTokens = 0;
  }

  /** Runs tokens after those already in the KV cache; returns logits [tokenIds.length, vocab]. */
  forward(tokenIds: number[]): Float32Array {
    const cfg = this.config;
    const numNew = tokenIds.length;
    assert.ok(numNew > 0, 'forward needs at least one token');
    for (const id of tokenIds) {
      if (!Number.isInteger(id) || id < 0 || id >= cfg.vocabSize) throw new Error(`token id ${id} is outside the vocabulary [0, ${cfg.vocabSize})`);
    }
    const h = cfg.hiddenSize;
    const embed = this.weight('embed');
    const x = new Float32Array(numNew * h);
    tokenIds.forEach((id, t) => x.set(embed.subarray(id * h, (id + 1) * h), t * h));
    this.growCaches(this.numCachedTokens + numNew);
    if (cfg.rope.scaling?.type === 'dynamic') this.invFreq = dynamicNtkInvFreq(cfg, this.numCachedTokens + numNew);

    for (let layer = 0; layer < cfg.numLayers; layer++) {
      const w = (name: string) => this.weight(`layers.${layer}.${name}`);
      const attnIn = rmsNorm(x, w('input_norm'), numNew, cfg.rmsNormEps);
      const attnOut = this.attention(layer, attnIn, numNew);
      addInPlace(x, linear(attnOut, w('o'), numNew, this.optionalWeight(`layers.${layer}.o_bias`)));
      const mlpIn = rmsNorm(x, w('post_norm'), numNew, cfg.rmsNormEps);
      const gate = linear(mlpIn, w('gate'), numNew);
      const up = linear(mlpIn, w('up'), numNew);
      for (let i = 0; i < gate.length; i++) gate[i] = silu(gate[i]!) * up[i]!;
      addInPlace(x, linear(gate, w('down'), numNew));
    }
    this.numCachedTokens += numNew;
    const final = rmsNorm(x, this.weight('norm'), numNew, cfg.rmsNormEps);
    return linear(final, cfg.tieWordEmbeddings ? embed : this.weight('lm_head'), numNew);
  }

  /** Causal (optionally sliding-window) grouped-query attention of the new tokens over cache + themselves. */
  private attention(layer: number, xNorm: Float32Array, numNew: number): Float32Array {
    const cfg = this.config;
    const { numHeads, numKvHeads, headDim } = cfg;
    const kvDim = numKvHeads * headDim;
    const prefix = `layers.${layer}.`;
    const q = linear(xNorm, this.weight(`${prefix}q`), numNew, this.optionalWeight(`${prefix}q_bias`));
    const k = linear(xNorm, this.weight(`${prefix}k`), numNew, this.optionalWeight(`${prefix}k_bias`));
    const v = linear(xNorm, this.weight(`${prefix}v`), numNew, this.optionalWeight(`${prefix}v_bias`));
    const start = this.numCachedTokens;
    const qNorm = this.optionalWeight(`${prefix}q_norm`);
    const kNorm = this.optionalWeight(`${prefix}k_norm`);
    if (cfg.qkNorm) {
      assert.ok(qNorm && kNorm, 'qwen3 needs q_norm and k_norm');
      q.set(rmsNorm(q, qNorm, numNew * numHeads, cfg.rmsNormEps));
      k.set(rmsNorm(k, kNorm, numNew * numKvHeads, cfg.rmsNormEps));
    }
    for (let t = 0; t < numNew; t++) {
      for (let hq = 0; hq < numHeads; hq++) this.rotate(q, (t * numHeads + hq) * headDim, start + t);
      for (let hk = 0; hk < numKvHeads; hk++) this.rotate(k, (t * numKvHeads + hk) * headDim, start + t);
    }
    const quant = this.options.kvCache;
    if (quant) {
      if (quant.rotateKeys) {
        for (let r = 0; r < numNew * numHeads; r++) hadamardRotate(q.subarray(r * headDim, (r + 1) * headDim));
        for (let r = 0; r < numNew * numKvHeads; r++) hadamardRotate(k.subarray(r * headDim, (r + 1) * headDim));
      }
      for (const x of [k, v]) {
        for (let r = 0; r < numNew * numKvHeads; r++) {
          const row = x.subarray(r * headDim, (r + 1) * headDim);
          const qr = quantizeRow(row, quant.bits);
          for (let d = 0; d < headDim; d++) row[d] = dequantize(qr.codes[d]!, qr.scale, qr.min);
        }
      }
    }
    const cache = this.layerCaches[layer]!;
    cache.keys.set(k, start * kvDim);
    cache.values.set(v, start * kvDim);

    const out = new Float32Array(numNew * numHeads * headDim);
    const group = numHeads / numKvHeads;
    const scale = 1 / Math.sqrt(headDim);
    const scores = new Float64Array(start + numNew);
    for (let t = 0; t < numNew; t++) {
      const pos = start + t;
      const first = cfg.slidingWindow === null ? 0 : Math.max(0, pos - cfg.slidingWindow + 1);
      for (let hq = 0; hq < numHeads; hq++) {
        const qOff = (t * numHeads + hq) * headDim;
        const kvOff = Math.floor(hq / group) * headDim;
        let max = -Infinity;
        for (let j = first; j <= pos; j++) {
          let dot = 0;
          const kOff = j * kvDim + kvOff;
          for (let d = 0; d < headDim; d++) dot += q[qOff + d]! * cache.keys[kOff + d]!;
          scores[j] = dot * scale;
          if (scores[j]! > max) max = scores[j]!;
        }
        let sum = 0;
        for (let j = first; j <= pos; j++) sum += scores[j] = Math.exp(scores[j]! - max);
        for (let d = 0; d < headDim; d++) {
          let acc = 0;
          for (let j = first; j <= pos; j++) acc += scores[j]! * cache.values[j * kvDim + kvOff + d]!;
          out[qOff + d] = acc / sum;
        }
      }
    }
    return out;
  }

  /** rotate_half RoPE on the first rotaryDim features of one head, in place. */
  private rotate(data: Float32Array, offset: number, pos: number): void {
    const half = this.config.rope.rotaryDim / 2;
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(pos * this.invFreq[i]!); // transformers forms the angle in f32
      const cos = Math.cos(angle) * this.attentionScaling;
      const sin = Math.sin(angle) * this.attentionScaling;
      const x1 = data[offset + i]!;
      const x2 = data[offset + i + half]!;
      data[offset + i] = x1 * cos - x2 * sin;
      data[offset + i + half] = x2 * cos + x1 * sin;
    }
  }

  private growCaches(numTokens: number): void {
    const kvDim = this.config.numKvHeads * this.config.headDim;
    for (const cache of this.layerCaches) {
      if (cache.keys.length >= numTokens * kvDim) continue;
      const capacity = Math.max(numTokens, (2 * cache.keys.length) / kvDim) * kvDim;
      const keys = new Float32Array(capacity),
        values = new Float32Array(capacity);
      keys.set(cache.keys);
      values.set(cache.values);
      cache.keys = keys;
      cache.values = values;
    }
  }

  private weight(name: string): Float32Array {
    const w = this.weights.get(name);
    assert.ok(w, `reference model has no weight ${name}`);
    return w;
  }

  private optionalWeight(name: string): Float32Array | undefined {
    return this.weights.get(name);
  }
}

/**
 * transformers' `_compute_dynamic_ntk_parameters(config, device, seq_len)` as `dynamic_rope_update` applies it:
 * base = rope_theta * ((factor * seq_len / max_position_embeddings) - (factor - 1)) ** (dim / (dim - 2)) when
 * seq_len > max_position_embeddings (the original one, before scaling), else rope_theta;
 * inv_freq[i] = 1 / base ** (2i / dim).
 */
function dynamicNtkInvFreq(cfg: ModelConfig, seqLen: number): Float32Array {
  const scaling = cfg.rope.scaling;
  assert.ok(scaling?.type === 'dynamic');
  const dim = cfg.rope.rotaryDim;
  const maxPositions = scaling.originalMaxPositionEmbeddings;
  let base = cfg.rope.theta;
  if (seqLen > maxPositions) base = base * ((scaling.factor * seqLen) / maxPositions - (scaling.factor - 1)) ** (dim / (dim - 2));
  const out = new Float32Array(dim / 2);
  for (let j = 0; j < dim; j += 2) out[j / 2] = 1 / base ** (j / dim);
  return out;
}

function rmsNorm(x: Float32Array, weight: Float32Array, rows: number, eps: number): Float32Array {
  const n = weight.length;
  const out = new Float32Array(x.length);
  for (let r = 0; r < rows; r++) {
    let sumSq = 0;
    for (let i = 0; i < n; i++) sumSq += x[r * n + i]! ** 2;
    const inv = 1 / Math.sqrt(sumSq / n + eps);
    for (let i = 0; i < n; i++) out[r * n + i] = weight[i]! * Math.fround(x[r * n + i]! * inv);
  }
  return out;
}

/** y[rows, out] = x[rows, in] · W[out, in]^T (+ bias). */
function linear(x: Float32Array, w: Float32Array, rows: number, bias?: Float32Array): Float32Array {
  const inDim = x.length / rows;
  const outDim = w.length / inDim;
  assert.ok(Number.isInteger(outDim), 'weight size must be a multiple of the input width');
  const y = new Float32Array(rows * outDim);
  for (let o = 0; o < outDim; o++) {
    const wOff = o * inDim;
    const b = bias ? bias[o]! : 0;
    for (let r = 0; r < rows; r++) {
      const xOff = r * inDim;
      let acc = 0;
      for (let i = 0; i < inDim; i++) acc += x[xOff + i]! * w[wOff + i]!;
      y[r * outDim + o] = acc + b;
    }
  }
  return y;
}

function addInPlace(x: Float32Array, y: Float32Array): void {
  for (let i = 0; i < x.length; i++) x[i]! += y[i]!;
}

function silu(v: number): number {
  return v / (1 + Math.exp(-v));
}
