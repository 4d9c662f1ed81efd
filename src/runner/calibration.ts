// Calibration forward passes for weight quantization (AWQ): the unquantized model on one in-process
// shard, prefilled with the calibration sequences one layer at a time; after each layer the inputs of
// its linear groups (what q/k/v, o_proj, gate/up and down_proj read) are handed to the caller, who
// reads them before the next layer overwrites them. Every layer sees the full-precision outputs of
// the layers before it, as AutoAWQ's layer-by-layer search does.
import { storageUsage, type GpuDevice } from '../gpu/index.js';
import type { ModelConfig } from '../checkpoint/config.js';
import { planMemory } from './memory.js';
import { loadShards } from './shard-loader.js';
import { shardLayout } from './sharding.js';
import type { LinearInputCapture, Shard } from './shard.js';
import { buildStepMetadata } from './step-metadata.js';

/** One layer's linear inputs on the GPU, f32 rows [numTokens, width]; valid until the next layer is requested. */
export interface LayerInputs {
  layer: number;
  numTokens: number;
  /** [numTokens, hidden]: input_layernorm's output. */
  qkv: GPUBuffer;
  /** [numTokens, heads * headDim]: the attention output. */
  o: GPUBuffer;
  /** [numTokens, hidden]: post_attention_layernorm's output. */
  gateUp: GPUBuffer;
  /** [numTokens, intermediate]: silu(gate) * up. */
  down: GPUBuffer;
}

export interface CalibrationShape {
  numSeqs: number;
  seqLen: number;
  /** Weights on the GPU (f16 as AutoAWQ runs its calibration; f32 for exactness on small models). */
  dtype: 'f16' | 'f32';
  gpuMemoryBytes?: number;
}

const BLOCK_SIZE = 16;

export class CalibrationRunner {
  private constructor(
    readonly config: ModelConfig,
    private readonly shard: Shard,
    private readonly shape: CalibrationShape,
    private readonly capture: LinearInputCapture,
  ) {}

  get gpu(): GpuDevice {
    return this.shard.gpu;
  }

  /** Loads the model (tp 1) with room for numSeqs sequences of seqLen tokens in one prefill step. */
  static async load(modelDir: string, config: ModelConfig, gpu: GpuDevice, shape: CalibrationShape): Promise<CalibrationRunner> {
    const layout = shardLayout(config, 1, 0);
    const blocksPerSeq = Math.ceil(shape.seqLen / BLOCK_SIZE);
    const options = {
      dtype: shape.dtype,
      blockSize: BLOCK_SIZE,
      maxNumSeqs: shape.numSeqs,
      maxModelLen: shape.seqLen,
      maxNumBatchedTokens: shape.numSeqs * shape.seqLen,
      kvCacheBlocks: shape.numSeqs * blocksPerSeq,
      cacheMaxEntryCount: 0.9,
      gpuMemoryBytes: shape.gpuMemoryBytes,
    };
    const plan = planMemory(config, layout, gpu, options);
    if (plan.maxTokensPerStep < shape.numSeqs * shape.seqLen) {
      throw new Error(
        `calibration needs ${shape.numSeqs * shape.seqLen} tokens in one step but this device allows ${plan.maxTokensPerStep}; lower --calib-samples or --calib-seqlen`,
      );
    }
    const [shard] = await loadShards(modelDir, config, [{ gpu, layout }], plan, options);
    const T = shape.numSeqs * shape.seqLen;
    const buffer = (label: string, width: number) => gpu.createBuffer(`calibration.${label}`, T * width * 4, storageUsage());
    const capture: LinearInputCapture = {
      layer: -1,
      qkv: buffer('qkv', config.hiddenSize),
      o: buffer('o', config.numHeads * config.headDim),
      gateUp: buffer('gate_up', config.hiddenSize),
      down: buffer('down', config.intermediateSize),
    };
    return new CalibrationRunner(config, shard!, shape, capture);
  }

  /**
   * Prefills `sequences` (each at most seqLen tokens, at most numSeqs of them) and yields each layer's
   * linear inputs in layer order; the forward of layer l + 1 runs when the caller asks for it.
   */
  async *layerInputs(sequences: readonly (readonly number[])[]): AsyncGenerator<LayerInputs> {
    const { numSeqs, seqLen } = this.shape;
    if (sequences.length === 0 || sequences.length > numSeqs) throw new Error(`calibration: ${sequences.length} sequences, expected 1..${numSeqs}`);
    const blocksPerSeq = Math.ceil(seqLen / BLOCK_SIZE);
    const scheduled = sequences.map((ids, i) => {
      if (ids.length === 0 || ids.length > seqLen) throw new Error(`calibration: sequence ${i} has ${ids.length} tokens, expected 1..${seqLen}`);
      return {
        requestId: `calibration-${i}`,
        tokenIds: [...ids],
        startPosition: 0,
        blockIds: Array.from({ length: blocksPerSeq }, (_, b) => i * blocksPerSeq + b),
        sample: false,
      };
    });
    const meta = buildStepMetadata({ sequences: scheduled }, BLOCK_SIZE, blocksPerSeq);
    const shape = meta.shape;
    const shard = this.shard;
    shard.uploadMetadata(meta);
    shard.begin();
    shard.encodeEmbedding(shape);
    try {
      for (let l = 0; l < this.config.numLayers; l++) {
        if (l > 0) shard.begin();
        shard.capture = { ...this.capture, layer: l };
        shard.encodeAttention(l, shape);
        shard.encodeMlp(l, shape);
        shard.submit();
        shard.capture = null;
        await shard.gpu.sync();
        const c = this.capture;
        yield { layer: l, numTokens: shape.numTokens, qkv: c.qkv, o: c.o, gateUp: c.gateUp, down: c.down };
      }
    } finally {
      shard.capture = null;
    }
  }

  destroy(): void {
    for (const b of [this.capture.qkv, this.capture.o, this.capture.gateUp, this.capture.down]) b.destroy();
    this.shard.destroy();
  }
}
