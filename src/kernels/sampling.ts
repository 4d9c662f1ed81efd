// GPU sampling of a batch of logits rows: penalties, greedy or seeded top-k/top-p/min-p draws, and
// logprobs, one workgroup per row (shaders/sampling.wgsl). Only ids and logprobs come back to the host.
// Semantics are those of sampleReference (test/support/reference-sampling.ts), which the tests hold it to.
import assert from 'node:assert/strict';
import { align, dispatch, loadShader, storageUsage, UniformArena, type Binding, type GpuDevice } from '../gpu/index.js';
import { MAX_TOP_LOGPROBS, type LogitsProcessing, type SampleResult, type SamplingRow, type TokenChoice } from '../sampling/params.js';
import { isGreedy, penaltyTable } from '../sampling/penalties.js';
import { seedWords } from '../sampling/rng.js';

const PARAM_WORDS = 20;
const NONE = 0xffffffff;
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
  /** Some row of the group has a mask or a logit bias (its processed row lives in work too). */
  hasProcessing: boolean;
}

export class GpuSampler {
  private readonly uniforms: UniformArena;
  private work: GPUBuffer | null = null;
  private readonly dummy: GPUBuffer;
  /** Bound as the masks when no row has one (the work dummy is bound read-write). */
  private readonly noMasks: GPUBuffer;

  private constructor(
    private readonly gpu: GpuDevice,
    readonly vocabSize: number,
    private readonly pipeline: GPUComputePipeline,
  ) {
    this.uniforms = new UniformArena(gpu.device);
    this.dummy = gpu.createBuffer('sampling-dummy', 16, storageUsage());
    this.noMasks = gpu.createBuffer('sampling-no-masks', 16, storageUsage());
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
   * and `waitWork` how much of it (WaitPacer.wait). `processing[r]`: row r's grammar mask and logit
   * bias (applied before everything else, logprobs included); absent/null: none, and a batch where
   * no row has any binds no mask buffer and takes exactly the unprocessed path.
   */
  async sample(
    logits: GPUBuffer,
    rows: readonly SamplingRow[],
    waitKind = 'sampling',
    waitWork = 1,
    processing: readonly (LogitsProcessing | null | undefined)[] | null = null,
  ): Promise<SampleResult[]> {
    const numRows = rows.length;
    if (numRows === 0) return [];
    const V = this.vocabSize;
    if (logits.size < numRows * V * 4) {
      throw new Error(`GpuSampler.sample: logits buffer holds ${logits.size} bytes, need ${numRows} rows x ${V} f32 = ${numRows * V * 4}`);
    }
    const { paramBytes, penaltyWords, rowHasPenalties, rowHasProcessing, maskWords } = this.encodeRows(rows, processing);
    const pool = this.gpu.pool;
    const params = pool.acquire(paramBytes.byteLength, storageUsage());
    const penalties = pool.acquire(Math.max(16, penaltyWords.byteLength), storageUsage());
    const masks = maskWords ? pool.acquire(Math.max(16, maskWords.byteLength), storageUsage()) : null;
    const resultBytes = numRows * RESULT_WORDS * 4;
    const results = pool.acquire(resultBytes, storageUsage());
    try {
      this.gpu.write(params, new Uint8Array(paramBytes));
      if (penaltyWords.length > 0) this.gpu.write(penalties, penaltyWords);
      if (masks && maskWords) this.gpu.write(masks, maskWords);
      const groups = this.rowGroups(logits, numRows, rowHasPenalties, rowHasProcessing);
      // A group's work: penalised rows at r * V, processed rows at (numRows + r) * V.
      const workRows = Math.max(0, ...groups.map((g) => (g.hasProcessing ? 2 * g.numRows : g.hasPenalties ? g.numRows : 0)));
      const work = workRows > 0 ? this.workBuffer(workRows * V * 4) : this.dummy;

      const encoder = this.gpu.device.createCommandEncoder({ label: 'sampling' });
      const pass = encoder.beginComputePass({ label: 'sampling' });
      for (const g of groups) {
        const u = this.uniforms.alloc(new Uint32Array([V, g.elemOffset, g.firstRow, g.numRows]));
        const groupWork = g.hasPenalties || g.hasProcessing ? work : this.dummy;
        dispatch(this.gpu.device, pass, this.pipeline, [g.logits, groupWork, params, penalties, results, u, masks ?? this.noMasks], [g.numRows]);
      }
      pass.end();
      this.uniforms.flush();
      const words = new Uint32Array(await this.gpu.submitAndRead(encoder, results, resultBytes, 0, waitKind, waitWork, 'sampling readback', 'sampling'));
      return decodeResults(words, rows, V);
    } finally {
      pool.release(params);
      pool.release(penalties);
      if (masks) pool.release(masks);
      pool.release(results);
    }
  }

  /** Per-row parameter records, the flat (token, output count) penalty and (token, bias) lists, and the masks. */
  private encodeRows(
    rows: readonly SamplingRow[],
    processing: readonly (LogitsProcessing | null | undefined)[] | null,
  ): { paramBytes: ArrayBuffer; penaltyWords: Uint32Array; rowHasPenalties: boolean[]; rowHasProcessing: boolean[]; maskWords: Uint32Array | null } {
    const V = this.vocabSize;
    const W = Math.ceil(V / 32);
    const paramBytes = new ArrayBuffer(rows.length * PARAM_WORDS * 4);
    const asU32 = new Uint32Array(paramBytes);
    const asF32 = new Float32Array(paramBytes);
    const tables = rows.map((row) => penaltyTable(row, V));
    const procs = rows.map((_, r) => processing?.[r] ?? null);
    const numBias = procs.reduce((n, p) => n + (p ? p.biasTokenIds.length : 0), 0);
    const numMasks = procs.reduce((n, p) => n + (p?.allowedMask ? 1 : 0), 0);
    const penaltyWords = new Uint32Array(2 * (tables.reduce((n, t) => n + t.tokenIds.length, 0) + numBias));
    const penaltyF32 = new Float32Array(penaltyWords.buffer);
    const maskWords = numMasks > 0 ? new Uint32Array(numMasks * W) : null;
    let numMaskRows = 0;
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
      const proc = procs[r];
      asU32[o + 15] = NONE;
      asU32[o + 16] = numPairs;
      asU32[o + 17] = 0;
      if (proc?.allowedMask) {
        assert(proc.allowedMask.length >= W, `GpuSampler: row ${r} mask has ${proc.allowedMask.length} words, need ${W}`);
        maskWords!.set(proc.allowedMask.subarray(0, W), numMaskRows * W);
        asU32[o + 15] = numMaskRows++;
      }
      if (proc && proc.biasTokenIds.length > 0) {
        const seen = new Set<number>();
        for (let j = 0; j < proc.biasTokenIds.length; j++) {
          const id = proc.biasTokenIds[j]!;
          assert(id < V && !seen.has(id), `GpuSampler: row ${r} bias token ${id} is out of range or repeated`);
          seen.add(id);
          penaltyWords[2 * numPairs] = id;
          penaltyF32[2 * numPairs + 1] = proc.biasValues[j]!;
          numPairs++;
        }
        asU32[o + 17] = proc.biasTokenIds.length;
      }
    });
    return {
      paramBytes,
      penaltyWords,
      rowHasPenalties: tables.map((t) => t.tokenIds.length > 0),
      rowHasProcessing: procs.map((p) => p !== null && (p.allowedMask !== null || p.biasTokenIds.length > 0)),
      maskWords,
    };
  }

  /** Splits rows so each group's logits fit one binding at an aligned offset. */
  private rowGroups(logits: GPUBuffer, numRows: number, rowHasPenalties: readonly boolean[], rowHasProcessing: readonly boolean[]): RowGroup[] {
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
        hasProcessing: rowHasProcessing.slice(first, first + n).some(Boolean),
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
    this.noMasks.destroy();
    this.uniforms.destroy();
  }
}

function decodeResults(words: Uint32Array, rows: readonly SamplingRow[], vocabSize: number): SampleResult[] {
  const asF32 = new Float32Array(words.buffer, words.byteOffset, words.length);
  return rows.map((row, r) => {
    const o = r * RESULT_WORDS;
    const topLogprobs: TokenChoice[] = [];
    for (let j = 0; j < numTopLogprobs(row, vocabSize); j++) topLogprobs.push({ tokenId: words[o + 2 + 2 * j]!, logprob: finite(asF32[o + 3 + 2 * j]!) });
    return { tokenId: words[o]!, logprob: finite(asF32[o + 1]!), topLogprobs };
  });
}

/** A token a mask or a -inf bias excluded has logprob -inf, which JSON cannot carry: OpenAI's -9999. */
function finite(logprob: number): number {
  return logprob === Number.NEGATIVE_INFINITY ? -9999 : logprob;
}

function numTopLogprobs(row: SamplingRow, vocabSize: number): number {
  const n = row.params.logprobs;
  return n !== null && n > 0 ? Math.min(n, MAX_TOP_LOGPROBS, vocabSize) : 0;
}
