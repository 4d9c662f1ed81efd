// GPU sampling of a batch of logits rows: penalties, greedy or seeded top-k/top-p/min-p draws, and
// logprobs, one workgroup per row (shaders/sampling.wgsl). Only ids and logprobs come back to the host.
// Semantics are those of sampleReference (test/support/reference-sampling.ts), which the tests hold it to.
import assert from 'node:assert/strict';
import { align, dispatch, GpuError, loadShader, storageUsage, UniformArena, type Binding, type GpuDevice } from '../gpu/index.js';
import { MAX_TOP_LOGPROBS, type SampleResult, type SamplingRow, type TokenChoice } from '../sampling/params.js';
import { isGreedy, penaltyTable } from '../sampling/penalties.js';
import { seedWords } from '../sampling/rng.js';

const PARAM_WORDS = 16;
const RESULT_WORDS = 2 + 2 * MAX_TOP_LOGPROBS;
/** The fixed-point top-p histogram sums 13-bit words per token into u32 bins. */
const MAX_VOCAB = 2 ** 19 - 1;
const MAX_ROWS_PER_DISPATCH = 65535;

/** A run of consecutive rows whose logits fit one storage binding. */
interface RowGroup {
  firstRow: number;
  numRows: number;
  logits: Binding;
  /** Index of the group's first logit inside the binding (the binding offset is aligned down). */
  elemOffset: number;
  hasPenalties: boolean;
}

export class GpuSampler {
  private readonly uniforms: UniformArena;
  private work: GPUBuffer | null = null;
  private readonly dummy: GPUBuffer;

  private constructor(
    private readonly gpu: GpuDevice,
    readonly vocabSize: number,
    private readonly pipeline: GPUComputePipeline,
  ) {
    this.uniforms = new UniformArena(gpu.device);
    this.dummy = gpu.createBuffer('sampling-dummy', 16, storageUsage());
  }

  static async create(gpu: GpuDevice, vocabSize: number): Promise<GpuSampler> {
    assert(Number.isInteger(vocabSize) && vocabSize > 0 && vocabSize <= MAX_VOCAB, `GpuSampler: vocabSize ${vocabSize} must be in [1, ${MAX_VOCAB}]`);
    assert(vocabSize * 4 + 256 <= gpu.limits.maxStorageBufferBindingSize, `GpuSampler: one logits row (${vocabSize} f32) exceeds maxStorageBufferBindingSize`);
    const pipeline = await gpu.pipelines.get({ kernel: 'sampling', code: loadShader('sampling') });
    return new GpuSampler(gpu, vocabSize, pipeline);
  }

  /**
   * Samples one token per row. logits: f32 [rows.length, vocabSize] written by earlier submitted work.
   * Submits its own command buffer and reads back only ids and logprobs. `waitKind` keys the
   * device's WaitPacer: what the readback waits for (e.g. the forward step of N tokens before it),
   * and `waitWork` how much of it (WaitPacer.wait).
   */
  async sample(logits: GPUBuffer, rows: readonly SamplingRow[], waitKind = 'sampling', waitWork = 1): Promise<SampleResult[]> {
    const numRows = rows.length;
    if (numRows === 0) return [];
    const V = this.vocabSize;
    if (logits.size < numRows * V * 4) {
      throw new Error(`GpuSampler.sample: logits buffer holds ${logits.size} bytes, need ${numRows} rows x ${V} f32 = ${numRows * V * 4}`);
    }
    const { paramBytes, penaltyWords, rowHasPenalties } = this.encodeRows(rows);
    const pool = this.gpu.pool;
    const params = pool.acquire(paramBytes.byteLength, storageUsage());
    const penalties = pool.acquire(Math.max(16, penaltyWords.byteLength), storageUsage());
    const resultBytes = numRows * RESULT_WORDS * 4;
    const results = pool.acquire(resultBytes, storageUsage());
    const staging = pool.acquireReadback(resultBytes);
    try {
      this.gpu.write(params, new Uint8Array(paramBytes));
      if (penaltyWords.length > 0) this.gpu.write(penalties, penaltyWords);
      const groups = this.rowGroups(logits, numRows, rowHasPenalties);
      const maxPenalisedRows = Math.max(0, ...groups.filter((g) => g.hasPenalties).map((g) => g.numRows));
      const work = maxPenalisedRows > 0 ? this.workBuffer(maxPenalisedRows * V * 4) : this.dummy;

      const encoder = this.gpu.device.createCommandEncoder({ label: 'sampling' });
      const pass = encoder.beginComputePass({ label: 'sampling' });
      for (const g of groups) {
        const u = this.uniforms.alloc(new Uint32Array([V, g.elemOffset, g.firstRow, 0]));
        dispatch(this.gpu.device, pass, this.pipeline, [g.logits, g.hasPenalties ? work : this.dummy, params, penalties, results, u], [g.numRows]);
      }
      pass.end();
      encoder.copyBufferToBuffer(results, 0, staging, 0, resultBytes);
      this.uniforms.flush();
      this.gpu.device.queue.submit([encoder.finish()]);
      try {
        await this.gpu.pacer.wait(waitKind, () => staging.mapAsync(GPUMapMode.READ, 0, resultBytes), waitWork);
      } catch (err) {
        this.gpu.throwIfFailed();
        throw new GpuError(`sampling readback failed: ${(err as Error).message}`, 'sampling');
      }
      const words = new Uint32Array(staging.getMappedRange(0, resultBytes).slice(0));
      staging.unmap();
      this.gpu.throwIfFailed();
      return decodeResults(words, rows, V);
    } finally {
      pool.release(params);
      pool.release(penalties);
      pool.release(results);
      pool.releaseReadback(staging);
    }
  }

  /** Per-row parameter records and the flat (token, output count) penalty list. */
  private encodeRows(rows: readonly SamplingRow[]): { paramBytes: ArrayBuffer; penaltyWords: Uint32Array; rowHasPenalties: boolean[] } {
    const V = this.vocabSize;
    const paramBytes = new ArrayBuffer(rows.length * PARAM_WORDS * 4);
    const asU32 = new Uint32Array(paramBytes);
    const asF32 = new Float32Array(paramBytes);
    const tables = rows.map((row) => penaltyTable(row, V));
    const penaltyWords = new Uint32Array(2 * tables.reduce((n, t) => n + t.tokenIds.length, 0));
    let numPairs = 0;
    rows.forEach((row, r) => {
      const p = row.params;
      assert(Number.isInteger(row.step) && row.step >= 0, `GpuSampler: row ${r} step ${row.step} must be a non-negative integer`);
      const o = r * PARAM_WORDS;
      const greedy = isGreedy(p);
      const [seedLo, seedHi] = seedWords(p.seed);
      asF32[o + 0] = greedy ? 0 : 1 / p.temperature;
      asU32[o + 1] = p.topK > 0 && p.topK < V ? p.topK : 0;
      // A top-p of 0 keeps only the best tokens; the shader needs a positive target for that.
      asF32[o + 2] = Math.max(p.topP, 1e-30);
      asF32[o + 3] = p.minP;
      asU32[o + 4] = seedLo;
      asU32[o + 5] = seedHi;
      asU32[o + 6] = row.step >>> 0;
      asU32[o + 7] = numTopLogprobs(row, V);
      asU32[o + 8] = greedy ? 1 : 0;
      asF32[o + 9] = p.repetitionPenalty;
      asF32[o + 10] = 1 / p.repetitionPenalty;
      asF32[o + 11] = p.frequencyPenalty;
      asF32[o + 12] = p.presencePenalty;
      const table = tables[r]!;
      asU32[o + 13] = numPairs;
      asU32[o + 14] = table.tokenIds.length;
      for (let j = 0; j < table.tokenIds.length; j++, numPairs++) {
        penaltyWords[2 * numPairs] = table.tokenIds[j]!;
        penaltyWords[2 * numPairs + 1] = table.outputCounts[j]!;
      }
    });
    return { paramBytes, penaltyWords, rowHasPenalties: tables.map((t) => t.tokenIds.length > 0) };
  }

  /** Splits rows so each group's logits fit one binding at an aligned offset. */
  private rowGroups(logits: GPUBuffer, numRows: number, rowHasPenalties: readonly boolean[]): RowGroup[] {
    const rowBytes = this.vocabSize * 4;
    const alignment = this.gpu.limits.minStorageBufferOffsetAlignment;
    const maxRows = Math.min(MAX_ROWS_PER_DISPATCH, Math.floor((this.gpu.limits.maxStorageBufferBindingSize - alignment) / rowBytes));
    const groups: RowGroup[] = [];
    for (let first = 0; first < numRows; first += maxRows) {
      const n = Math.min(maxRows, numRows - first);
      const start = first * rowBytes;
      const offset = Math.floor(start / alignment) * alignment;
      const size = align(start + n * rowBytes - offset, 4);
      groups.push({
        firstRow: first,
        numRows: n,
        logits: { buffer: logits, offset, size },
        elemOffset: (start - offset) / 4,
        hasPenalties: rowHasPenalties.slice(first, first + n).some(Boolean),
      });
    }
    return groups;
  }

  private workBuffer(bytes: number): GPUBuffer {
    if (!this.work || this.work.size < bytes) {
      this.work?.destroy();
      this.work = this.gpu.createBuffer('sampling-penalised-logits', bytes, storageUsage());
    }
    return this.work;
  }

  destroy(): void {
    this.work?.destroy();
    this.work = null;
    this.dummy.destroy();
    this.uniforms.destroy();
  }
}

function decodeResults(words: Uint32Array, rows: readonly SamplingRow[], vocabSize: number): SampleResult[] {
  const asF32 = new Float32Array(words.buffer, words.byteOffset, words.length);
  return rows.map((row, r) => {
    const o = r * RESULT_WORDS;
    const topLogprobs: TokenChoice[] = [];
    for (let j = 0; j < numTopLogprobs(row, vocabSize); j++) topLogprobs.push({ tokenId: words[o + 2 + 2 * j]!, logprob: asF32[o + 3 + 2 * j]! });
    return { tokenId: words[o]!, logprob: asF32[o + 1]!, topLogprobs };
  });
}

function numTopLogprobs(row: SamplingRow, vocabSize: number): number {
  const n = row.params.logprobs;
  return n !== null && n > 0 ? Math.min(n, MAX_TOP_LOGPROBS, vocabSize) : 0;
}
