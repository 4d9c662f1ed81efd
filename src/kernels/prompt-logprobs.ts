// Prompt logprobs on the GPU (shaders/prompt_logprobs.wgsl): per logits row the log-softmax logprob
// and rank of a given target token (the next prompt token) and the top-k alternatives. One workgroup
// per row; only those numbers are read back, never the logits.
import assert from 'node:assert/strict';
import { align, dispatch, loadShader, storageUsage, UniformArena, type GpuDevice } from '../gpu/index.js';
import { MAX_TOP_LOGPROBS, type TokenChoice } from '../sampling/params.js';

const RESULT_WORDS = 4 + 2 * MAX_TOP_LOGPROBS;
const MAX_ROWS_PER_DISPATCH = 65535;

/** One scored row: the target token's log-softmax logprob, its 1-based rank (vLLM's), and the top-k. */
export interface ScoredToken {
  tokenId: number;
  logprob: number;
  /** #{j : logit_j >= logit_target}: 1 for the argmax. */
  rank: number;
  /** The numTop most likely tokens, best first (ties: lowest id first). */
  top: TokenChoice[];
}

export class PromptLogprobsKernel {
  private readonly uniforms: UniformArena;

  private constructor(
    private readonly gpu: GpuDevice,
    readonly vocabSize: number,
    private readonly pipeline: GPUComputePipeline,
  ) {
    this.uniforms = new UniformArena(gpu.device);
  }

  static async create(gpu: GpuDevice, vocabSize: number): Promise<PromptLogprobsKernel> {
    assert(Number.isInteger(vocabSize) && vocabSize > 0, `PromptLogprobsKernel: vocabSize ${vocabSize} must be a positive integer`);
    assert(
      vocabSize * 4 + 256 <= gpu.limits.maxStorageBufferBindingSize,
      `PromptLogprobsKernel: one logits row (${vocabSize} f32) exceeds maxStorageBufferBindingSize`,
    );
    const pipeline = await gpu.pipelines.get({ kernel: 'prompt_logprobs', code: loadShader('prompt_logprobs'), entryPoint: 'prompt_logprobs' });
    return new PromptLogprobsKernel(gpu, vocabSize, pipeline);
  }

  /**
   * Scores rows [0, targets.length) of `logits` (f32 [rows, vocabSize], written by earlier submitted
   * work): row r against token targets[r], with the numTop (<= 20) best alternatives. Submits its own
   * command buffer; `waitKind` keys the device's WaitPacer.
   */
  async score(logits: GPUBuffer, targets: Uint32Array, numTop: number, waitKind = 'prompt-logprobs', waitWork = 1): Promise<ScoredToken[]> {
    const numRows = targets.length;
    if (numRows === 0) return [];
    const V = this.vocabSize;
    const k = Math.min(numTop, MAX_TOP_LOGPROBS, V);
    assert(Number.isInteger(k) && k >= 0, `PromptLogprobsKernel.score: numTop ${numTop} must be a non-negative integer`);
    for (const t of targets) assert(t < V, `PromptLogprobsKernel.score: target ${t} is outside the vocabulary [0, ${V})`);
    if (logits.size < numRows * V * 4) {
      throw new Error(`PromptLogprobsKernel.score: logits buffer holds ${logits.size} bytes, need ${numRows} rows x ${V} f32`);
    }
    const pool = this.gpu.pool;
    const resultBytes = numRows * RESULT_WORDS * 4;
    const targetBuf = pool.acquire(align(numRows * 4, 16), storageUsage());
    const results = pool.acquire(resultBytes, storageUsage());
    try {
      this.gpu.write(targetBuf, targets);
      const rowBytes = V * 4;
      const alignment = this.gpu.limits.minStorageBufferOffsetAlignment;
      const maxRows = Math.min(MAX_ROWS_PER_DISPATCH, Math.floor((this.gpu.limits.maxStorageBufferBindingSize - alignment) / rowBytes));
      const encoder = this.gpu.device.createCommandEncoder({ label: 'prompt-logprobs' });
      const pass = encoder.beginComputePass({ label: 'prompt-logprobs' });
      for (let first = 0; first < numRows; first += maxRows) {
        const n = Math.min(maxRows, numRows - first);
        const start = first * rowBytes;
        const offset = Math.floor(start / alignment) * alignment;
        const size = align(start + n * rowBytes - offset, 4);
        const u = this.uniforms.alloc(new Uint32Array([V, (start - offset) / 4, first, k]));
        dispatch(this.gpu.device, pass, this.pipeline, [{ buffer: logits, offset, size }, targetBuf, results, u], [n]);
      }
      pass.end();
      this.uniforms.flush();
      const words = new Uint32Array(
        await this.gpu.submitAndRead(encoder, results, resultBytes, 0, waitKind, waitWork, 'prompt logprobs readback', 'prompt_logprobs'),
      );
      const f32 = new Float32Array(words.buffer);
      return Array.from(targets, (tokenId, r): ScoredToken => {
        const o = r * RESULT_WORDS;
        const top: TokenChoice[] = [];
        for (let j = 0; j < k; j++) top.push({ tokenId: words[o + 4 + 2 * j]!, logprob: f32[o + 5 + 2 * j]! });
        return { tokenId, logprob: f32[o + 1]!, rank: words[o + 2]!, top };
      });
    } finally {
      pool.release(targetBuf);
      pool.release(results);
    }
  }

  destroy(): void {
    this.uniforms.destroy();
  }
}
