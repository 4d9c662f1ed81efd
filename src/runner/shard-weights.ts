// Uploads one shard's share of the canonical tensors to its device, fusing q/k/v and gate/up into
// single matrices so each layer needs two input matmuls instead of five. 4-bit projections stay packed
// (Q4Matrix row and group-aligned column slices); a fused group whose parts are not all 4-bit (one of
// q/k/v left in 16 bits by modules_to_not_convert) is dequantized and fused in the float dtype instead.
import type { GpuDevice } from '../gpu/index.js';
import { defaultWeightLayout } from '../kernels/matmul.js';
import { uploadQ4Weight, uploadWeight, type GpuWeight, type WeightDtype, type WeightLayout } from '../kernels/weight.js';
import type { ModelConfig } from '../checkpoint/config.js';
import { dequantizeQ4 } from '../checkpoint/quantized.js';
import type { CanonicalTensor, CanonicalWeight } from '../checkpoint/weights.js';
import { q4ConcatRows, q4HeadRows, q4SliceCols, q4SliceRows, type Q4Matrix } from '../common/q4.js';
import { f16BitsToF32 } from '../common/half.js';
import { createLogger } from '../common/log.js';
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
type AnyMatrix = Matrix | Q4Matrix;

const log = createLogger('runner');

/** The canonical layer tensors that may arrive 4-bit. */
const Q4_PARTS: ReadonlySet<string> = new Set(['q', 'k', 'v', 'o', 'gate', 'up', 'down']);

const isQ4 = (m: AnyMatrix): m is Q4Matrix => !ArrayBuffer.isView(m);

/** Collects a shard's tensors as they stream in and uploads each fused group once it is complete. */
export class ShardWeightBuilder {
  private readonly pending = new Map<string, CanonicalWeight>();
  private readonly layers: Partial<LayerWeights>[];
  private embed: GpuWeight | null = null;
  private lmHead: GpuWeight | null = null;
  private norm: GPUBuffer | null = null;
  numBytes = 0;
  /** Fused groups that mixed 4-bit and float parts and were uploaded dequantized (for the startup log). */
  readonly dequantizedGroups: string[] = [];
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

  add(t: CanonicalWeight): void {
    const m = /^layers\.(\d+)\.(.+)$/.exec(t.name);
    if (t.dtype === 'q4' && t.name === 'lm_head') {
      // GPTQModel lm_head: true: split by vocabulary rows like a float lm_head.
      const { vocabStart, vocabEnd } = this.layout;
      this.lmHead = this.q4Matrix('lm_head', q4SliceRows(t.q4, vocabStart, vocabEnd - vocabStart));
      return;
    }
    if (t.dtype === 'q4' && !(m && Q4_PARTS.has(m[2]!)))
      throw new Error(`a 4-bit ${t.name} is not supported (only the q/k/v/o and MLP projections and lm_head may be 4-bit)`);
    if (!m) {
      this.addGlobal(t.name, (t as CanonicalTensor).data);
      return;
    }
    const layer = Number(m[1]);
    const part = m[2]!;
    const lw = this.layers[layer]!;
    const data: AnyMatrix = t.dtype === 'q4' ? t.q4 : t.data;
    switch (part) {
      case 'input_norm':
        lw.inputNorm = this.vector(t.name, data as Float32Array);
        return;
      case 'post_norm':
        lw.postNorm = this.vector(t.name, data as Float32Array);
        return;
      case 'o': {
        const { numHeads, firstHead } = this.layout;
        const hd = this.config.headDim;
        lw.o = this.rowParallel(t.name, data, this.config.hiddenSize, this.config.numHeads * hd, firstHead * hd, numHeads * hd);
        return;
      }
      case 'q_norm':
      case 'k_norm': {
        this.pending.set(t.name, t);
        const q = this.pending.get(`layers.${layer}.q_norm`);
        const k = this.pending.get(`layers.${layer}.k_norm`);
        if (q && k && q.dtype !== 'q4' && k.dtype !== 'q4') {
          lw.qkNorm = this.vector(`layers.${layer}.qk_norm`, concatRows([q.data as Float32Array, k.data as Float32Array]));
          this.pending.delete(`layers.${layer}.q_norm`);
          this.pending.delete(`layers.${layer}.k_norm`);
        }
        return;
      }
      case 'o_bias':
        // Row-parallel o_proj: the bias is added once, by rank 0, before the all-reduce sums the shards.
        lw.oBias = this.layout.rank === 0 ? this.vector(t.name, data as Float32Array) : null;
        return;
      case 'down': {
        const { intermediate, firstIntermediate } = this.layout;
        lw.down = this.rowParallel(t.name, data, this.config.hiddenSize, this.config.intermediateSize, firstIntermediate, intermediate);
        return;
      }
      default:
        this.pending.set(t.name, t);
        this.tryFuse(layer);
    }
  }

  /** embed, a float lm_head and the final norm. */
  private addGlobal(name: string, data: Matrix): void {
    if (name === 'embed') this.addEmbedding(data);
    else if (name === 'lm_head')
      this.lmHead = this.matrix('lm_head', this.vocabRows(data), this.layout.vocabEnd - this.layout.vocabStart, this.config.hiddenSize);
    else if (name === 'norm') this.norm = this.vector('norm', data as Float32Array);
    else throw new Error(`unexpected canonical tensor ${name}`);
  }

  /**
   * A row-parallel projection (o, down) [rows, cols]: this shard's input columns [start, start + count).
   * 4-bit: whole groups only, which shardLayout has checked from quantization_config before any upload
   * (q4SliceCols refuses a cut group too); the order of an activation-ordered weight is only known here.
   */
  private rowParallel(label: string, data: AnyMatrix, rows: number, cols: number, start: number, count: number): GpuWeight {
    if (!isQ4(data)) return this.matrix(label, this.layout.tp === 1 ? data : sliceCols(data, rows, cols, start, count), rows, count);
    if (this.layout.tp === 1) return this.q4Matrix(label, data);
    if (data.inputPerm) {
      throw new Error(
        `cannot split this model over ${this.layout.tp} devices: the 4-bit ${label} has activation-ordered groups (GPTQ desc_act, a permuted g_idx), ` +
          "whose sorted inputs come from every shard's part of the activation; run it on one device, or use a checkpoint quantized with desc_act false or static_groups",
      );
    }
    return this.q4Matrix(label, q4SliceCols(data, start, count));
  }

  private addEmbedding(data: Matrix): void {
    const { vocabStart, vocabEnd, tp } = this.layout;
    const H = this.config.hiddenSize;
    const rows = this.vocabRows(data);
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
      const label = `layers.${layer}.qkv`;
      const parts = this.fusable(label, [q, k, v]);
      if (parts.every(isQ4)) {
        lw.qkv = this.q4Matrix(
          label,
          q4ConcatRows([q4HeadRows(parts[0]!, hd, qHeads), q4HeadRows(parts[1]!, hd, kvHeadIndices), q4HeadRows(parts[2]!, hd, kvHeadIndices)]),
        );
      } else {
        const [fq, fk, fv] = parts as Matrix[];
        const fused = concatRows([headRows(fq!, H, hd, qHeads), headRows(fk!, H, hd, kvHeadIndices), headRows(fv!, H, hd, kvHeadIndices)]);
        lw.qkv = this.matrix(label, fused, (numHeads + 2 * kvHeadIndices.length) * hd, H);
      }
      lw.qkvBias = null;
      if (this.config.qkvBias) {
        const bias = concatRows([
          headRows(this.vectorOf(p('q_bias')!), 1, hd, qHeads),
          headRows(this.vectorOf(p('k_bias')!), 1, hd, kvHeadIndices),
          headRows(this.vectorOf(p('v_bias')!), 1, hd, kvHeadIndices),
        ]);
        lw.qkvBias = this.vector(`layers.${layer}.qkv_bias`, bias);
      }
      for (const n of ['q', 'k', 'v', 'q_bias', 'k_bias', 'v_bias']) this.pending.delete(`layers.${layer}.${n}`);
    }
    const gate = p('gate'),
      up = p('up');
    if (!lw.gateUp && gate && up) {
      const { intermediate, firstIntermediate } = this.layout;
      const label = `layers.${layer}.gate_up`;
      const [g, u] = this.fusable(label, [gate, up]);
      if (isQ4(g!) && isQ4(u!)) {
        lw.gateUp = this.q4Matrix(label, q4ConcatRows([q4SliceRows(g, firstIntermediate, intermediate), q4SliceRows(u, firstIntermediate, intermediate)]));
      } else {
        const fused = concatRows([sliceRows(g as Matrix, H, firstIntermediate, intermediate), sliceRows(u as Matrix, H, firstIntermediate, intermediate)]);
        lw.gateUp = this.matrix(label, fused, 2 * intermediate, H);
      }
      this.pending.delete(`layers.${layer}.gate`);
      this.pending.delete(`layers.${layer}.up`);
    }
  }

  /**
   * The parts of a fused group as they will be fused: all 4-bit, all float, or (mixed) the 4-bit parts
   * dequantized to f32 (uploadWeight rounds them to f16 with --dtype f16), since one matmul reads one format.
   */
  private fusable(label: string, parts: CanonicalWeight[]): AnyMatrix[] {
    const matrices = parts.map((p): AnyMatrix => (p.dtype === 'q4' ? p.q4 : p.data));
    const q4 = matrices.filter(isQ4);
    if (q4.length === 0 || (q4.length === matrices.length && new Set(q4.map((m) => m.groupSize)).size === 1)) return matrices;
    this.dequantizedGroups.push(label);
    return matrices.map((m) => (isQ4(m) ? dequantizeQ4(m) : m instanceof Uint16Array ? f16BitsToF32(m) : m));
  }

  private vectorOf(t: CanonicalWeight): Float32Array {
    if (t.dtype === 'q4') throw new Error(`${t.name} must be a float vector`);
    return t.data as Float32Array;
  }

  private q4Matrix(label: string, m: Q4Matrix): GpuWeight {
    const w = uploadQ4Weight(this.gpu, `${this.gpu.label}:${label}`, m, undefined, this.weightLayout);
    this.numBytes += w.byteLength;
    return w;
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
    if (this.dequantizedGroups.length && this.layout.rank === 0) {
      log.warn(`fused ${this.dequantizedGroups.join(', ')} from 4-bit and 16-bit parts: uploaded dequantized as ${this.dtype} (one matmul reads one format)`);
    }
    return {
      embed: this.embed!,
      lmHead: this.lmHead!,
      norm: this.norm!,
      layers: this.layers.map((l) => ({ ...l, qkvBias: l.qkvBias ?? null, qkNorm: l.qkNorm ?? null, oBias: l.oBias ?? null }) as LayerWeights),
    };
  }
}
