// Uploads one shard's share of the canonical tensors to its device, fusing q/k/v and gate/up into
// single matrices so each layer needs two input matmuls instead of five.
import type { GpuDevice } from '../gpu/index.js';
import { defaultWeightLayout } from '../kernels/matmul.js';
import { uploadWeight, type GpuWeight, type WeightDtype, type WeightLayout } from '../kernels/weight.js';
import type { ModelConfig } from '../checkpoint/config.js';
import type { CanonicalTensor } from '../checkpoint/weights.js';
import { concatRows, headRows, sliceCols, sliceRows, type ShardLayout } from './sharding.js';

export interface LayerWeights {
  inputNorm: GPUBuffer;
  postNorm: GPUBuffer;
  qkv: GpuWeight;
  qkvBias: GPUBuffer | null;
  /** Qwen3: f32 [2, headDim], q_norm's weight then k_norm's (per head dim, so the same on every shard). */
  qkNorm: GPUBuffer | null;
  o: GpuWeight;
  oBias: GPUBuffer | null;
  gateUp: GpuWeight;
  down: GpuWeight;
}

export interface ShardWeights {
  /** Vocabulary rows [vocabStart, vocabEnd) (+ one zero row at the end when tp > 1, for out-of-shard ids). */
  embed: GpuWeight;
  lmHead: GpuWeight;
  norm: GPUBuffer;
  layers: LayerWeights[];
}

type Matrix = Float32Array | Uint16Array;

/** Collects a shard's tensors as they stream in and uploads each fused group once it is complete. */
export class ShardWeightBuilder {
  private readonly pending = new Map<string, CanonicalTensor>();
  private readonly layers: Partial<LayerWeights>[];
  private embed: GpuWeight | null = null;
  private lmHead: GpuWeight | null = null;
  private norm: GPUBuffer | null = null;
  numBytes = 0;
  /** Matmul weights go in the layout the device's matmul kernels read fastest; the embedding table stays row-major for the gather. */
  private readonly weightLayout: WeightLayout;

  constructor(
    private readonly gpu: GpuDevice,
    private readonly config: ModelConfig,
    private readonly layout: ShardLayout,
    private readonly dtype: WeightDtype,
  ) {
    this.layers = Array.from({ length: config.numLayers }, () => ({}));
    this.weightLayout = defaultWeightLayout(gpu);
  }

  add(t: CanonicalTensor): void {
    if (t.name === 'embed') {
      this.addEmbedding(t);
      return;
    }
    if (t.name === 'lm_head') {
      this.lmHead = this.matrix('lm_head', this.vocabRows(t.data), this.layout.vocabEnd - this.layout.vocabStart, this.config.hiddenSize);
      return;
    }
    if (t.name === 'norm') {
      this.norm = this.vector('norm', t.data as Float32Array);
      return;
    }
    const m = /^layers\.(\d+)\.(.+)$/.exec(t.name);
    if (!m) throw new Error(`unexpected canonical tensor ${t.name}`);
    const layer = Number(m[1]);
    const part = m[2]!;
    const lw = this.layers[layer]!;
    switch (part) {
      case 'input_norm':
        lw.inputNorm = this.vector(t.name, t.data as Float32Array);
        return;
      case 'post_norm':
        lw.postNorm = this.vector(t.name, t.data as Float32Array);
        return;
      case 'o': {
        const { numHeads, firstHead } = this.layout;
        const hd = this.config.headDim;
        const cols = this.config.numHeads * hd;
        const data = this.layout.tp === 1 ? t.data : sliceCols(t.data, this.config.hiddenSize, cols, firstHead * hd, numHeads * hd);
        lw.o = this.matrix(t.name, data, this.config.hiddenSize, numHeads * hd);
        return;
      }
      case 'q_norm':
      case 'k_norm': {
        this.pending.set(t.name, t);
        const q = this.pending.get(`layers.${layer}.q_norm`);
        const k = this.pending.get(`layers.${layer}.k_norm`);
        if (q && k) {
          lw.qkNorm = this.vector(`layers.${layer}.qk_norm`, concatRows([q.data as Float32Array, k.data as Float32Array]));
          this.pending.delete(`layers.${layer}.q_norm`);
          this.pending.delete(`layers.${layer}.k_norm`);
        }
        return;
      }
      case 'o_bias':
        // Row-parallel o_proj: the bias is added once, by rank 0, before the all-reduce sums the shards.
        lw.oBias = this.layout.rank === 0 ? this.vector(t.name, t.data as Float32Array) : null;
        return;
      case 'down': {
        const { intermediate, firstIntermediate } = this.layout;
        const I = this.config.intermediateSize;
        const data = this.layout.tp === 1 ? t.data : sliceCols(t.data, this.config.hiddenSize, I, firstIntermediate, intermediate);
        lw.down = this.matrix(t.name, data, this.config.hiddenSize, intermediate);
        return;
      }
      default:
        this.pending.set(t.name, t);
        this.tryFuse(layer);
    }
  }

  private addEmbedding(t: CanonicalTensor): void {
    const { vocabStart, vocabEnd, tp } = this.layout;
    const H = this.config.hiddenSize;
    const rows = this.vocabRows(t.data);
    const numRows = vocabEnd - vocabStart;
    if (tp === 1) {
      this.embed = this.matrix('embed', rows, numRows, H);
    } else {
      // A zero row at index numRows: ids owned by other shards are remapped to it, so the all-reduce
      // of the gathered rows yields every token's embedding.
      const padded = new (rows.constructor as { new (n: number): Matrix })((numRows + 1) * H);
      padded.set(rows);
      this.embed = this.matrix('embed', padded, numRows + 1, H);
    }
    if (this.config.tieWordEmbeddings) this.lmHead = { ...this.embed, rows: numRows };
  }

  private vocabRows(data: Matrix): Matrix {
    const { vocabStart, vocabEnd } = this.layout;
    return sliceRows(data, this.config.hiddenSize, vocabStart, vocabEnd - vocabStart);
  }

  private tryFuse(layer: number): void {
    const p = (name: string) => this.pending.get(`layers.${layer}.${name}`);
    const lw = this.layers[layer]!;
    const { kvHeadIndices, numHeads, firstHead } = this.layout;
    const H = this.config.hiddenSize;
    const hd = this.config.headDim;
    const qHeads = Array.from({ length: numHeads }, (_, i) => firstHead + i);
    const q = p('q'),
      k = p('k'),
      v = p('v');
    const biasesReady = !this.config.qkvBias || (p('q_bias') && p('k_bias') && p('v_bias'));
    if (!lw.qkv && q && k && v && biasesReady) {
      const fused = concatRows([headRows(q.data, H, hd, qHeads), headRows(k.data, H, hd, kvHeadIndices), headRows(v.data, H, hd, kvHeadIndices)]);
      lw.qkv = this.matrix(`layers.${layer}.qkv`, fused, (numHeads + 2 * kvHeadIndices.length) * hd, H);
      lw.qkvBias = null;
      if (this.config.qkvBias) {
        const bias = concatRows([
          headRows(p('q_bias')!.data as Float32Array, 1, hd, qHeads),
          headRows(p('k_bias')!.data as Float32Array, 1, hd, kvHeadIndices),
          headRows(p('v_bias')!.data as Float32Array, 1, hd, kvHeadIndices),
        ]);
        lw.qkvBias = this.vector(`layers.${layer}.qkv_bias`, bias);
      }
      for (const n of ['q', 'k', 'v', 'q_bias', 'k_bias', 'v_bias']) this.pending.delete(`layers.${layer}.${n}`);
    }
    const gate = p('gate'),
      up = p('up');
    if (!lw.gateUp && gate && up) {
      const { intermediate, firstIntermediate } = this.layout;
      const fused = concatRows([sliceRows(gate.data, H, firstIntermediate, intermediate), sliceRows(up.data, H, firstIntermediate, intermediate)]);
      lw.gateUp = this.matrix(`layers.${layer}.gate_up`, fused, 2 * intermediate, H);
      this.pending.delete(`layers.${layer}.gate`);
      this.pending.delete(`layers.${layer}.up`);
    }
  }

  private matrix(label: string, data: Matrix, rows: number, cols: number): GpuWeight {
    const layout = label === 'embed' ? 'rows' : this.weightLayout;
    const w = uploadWeight(this.gpu, `${this.gpu.label}:${label}`, data, rows, cols, this.dtype, undefined, layout);
    this.numBytes += w.byteLength;
    return w;
  }

  private vector(label: string, data: Float32Array): GPUBuffer {
    this.numBytes += data.byteLength;
    return this.gpu.upload(`${this.gpu.label}:${label}`, data);
  }

  /** The complete weights; throws naming what never arrived. */
  finish(): ShardWeights {
    const missing: string[] = [];
    if (!this.embed) missing.push('embed');
    if (!this.lmHead) missing.push('lm_head');
    if (!this.norm) missing.push('norm');
    this.layers.forEach((l, i) => {
      for (const key of ['inputNorm', 'postNorm', 'qkv', 'o', 'gateUp', 'down'] as const) if (!l[key]) missing.push(`layers.${i}.${key}`);
      if (this.config.qkNorm && !l.qkNorm) missing.push(`layers.${i}.qkNorm`);
    });
    if (missing.length) throw new Error(`model weights incomplete: missing ${missing.join(', ')}`);
    return {
      embed: this.embed!,
      lmHead: this.lmHead!,
      norm: this.norm!,
      layers: this.layers.map((l) => ({ ...l, qkvBias: l.qkvBias ?? null, qkNorm: l.qkNorm ?? null, oBias: l.oBias ?? null }) as LayerWeights),
    };
  }
}
