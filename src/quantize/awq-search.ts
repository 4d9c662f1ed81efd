// AWQ's activation-aware scale search (AutoAWQ AwqQuantizer._search_best_scale / _compute_best_scale):
// for a group of linears that read the same input x, with x_mean = mean |x| per input channel, try for
// ratio = 0, 1/20, .., 19/20
//   duo scaling (AutoAWQ's default): s = max(x_mean^ratio / (w_mean^(1 - ratio) + 1e-4), 1e-4), where
//     w_mean is the group's stacked weights' |w| / (max |w| of its quantization group + 1e-6), averaged
//     over the output rows (one value per input channel): channels with small weights relative to their
//     group get scaled up more;
//   duo scaling off (llm-awq's original grid): s = max(x_mean^ratio, 1e-4);
// each normalised by sqrt(max(s) * min(s)), quantize W * s group-wise (RTN) and score the group's output
// ||Q(W s)(x / s) - W x||^2 / numel; keep the best s. s = 1 (plain RTN) is always scored as well: it is
// ratio 0 of the grid without duo scaling, but not with it (ratio 0 then scales by 1 / w_mean), so the
// candidates are a superset of AutoAWQ's and the chosen scales never score worse than RTN on the
// calibration tokens (one extra GEMM per group). What is scored is AutoAWQ's module2inspect output
// (`blockOutput`): q/k/v by the attention block's output (quantize/attention-block.ts on the host, then
// the unquantized o_proj on the GPU), gate/up by the MLP's, down(silu(gate x) * up x) with down_proj
// unquantized; o_proj and down_proj by their own outputs (their module2inspect is the linear itself).
// w_mean and the scales are computed in f32 (AutoAWQ: in the model's f16).
//
// The outputs are computed by the project's matmul kernel on the captured activations where they
// already are (the GPU): on lavapipe a 512-token GEMM runs some 20x faster than a JavaScript loop.
// The fused weights go up in f16 (as AutoAWQ searches in f16); only the outputs come back.
import { UniformArena, storageUsage, type GpuDevice } from '../gpu/index.js';
import type { MatmulKernels } from '../kernels/matmul.js';
import { destroyWeight, uploadWeight } from '../kernels/weight.js';
import { fakeQuantizeScaled } from './rtn.js';

export const AWQ_GRID = 20;

export interface ScaleSearchOptions {
  /** AutoAWQ's duo_scaling: divide by w_mean^(1 - ratio) as well (its default); false is x_mean^ratio alone. */
  duoScaling: boolean;
  /**
   * Maps the group's linear outputs [numTokens, rows] to the output the candidates are scored on
   * (AutoAWQ's module2inspect); default: the linear outputs themselves. Its first call is always the
   * reference, the unquantized weights' outputs.
   */
  blockOutput?: (linearOutputs: Float32Array) => Promise<Float32Array>;
}

export interface ScaleSearchResult {
  /** Per input channel; all ones when plain RTN scored best. */
  scales: Float32Array;
  /** The grid ratio of the chosen scales; null when plain RTN (s = 1) scored best. */
  bestRatio: number | null;
  /** Output MSE with the chosen scales, and with plain RTN (s = 1). */
  loss: number;
  rtnLoss: number;
}

/** mean |x| per column of x [numRows, cols]. */
export function meanAbsPerColumn(x: Float32Array, numRows: number, cols: number): Float32Array {
  const acc = new Float64Array(cols);
  for (let r = 0; r < numRows; r++) {
    const row = r * cols;
    for (let k = 0; k < cols; k++) acc[k]! += Math.abs(x[row + k]!);
  }
  const out = new Float32Array(cols);
  for (let k = 0; k < cols; k++) out[k] = acc[k]! / numRows;
  return out;
}

/**
 * AutoAWQ's w_mean for duo scaling: `w` [rows, cols] cut into groups of `groupSize` inputs per row, each
 * |w| / (max |w| of its group + 1e-6), then the mean over the rows of every input channel.
 */
export function weightMeanPerColumn(w: Float32Array, rows: number, cols: number, groupSize: number): Float32Array {
  if (w.length !== rows * cols) throw new Error(`awq search: weight has ${w.length} values, expected ${rows} x ${cols}`);
  if (!(Number.isInteger(groupSize) && groupSize >= 1 && cols % groupSize === 0))
    throw new Error(`awq search: in features ${cols} are not a multiple of the group size ${groupSize}`);
  const acc = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < cols; g += groupSize) {
      const base = r * cols + g;
      let max = 0;
      for (let j = 0; j < groupSize; j++) max = Math.max(max, Math.abs(w[base + j]!));
      const inv = 1 / (max + 1e-6);
      for (let j = 0; j < groupSize; j++) acc[g + j]! += Math.abs(w[base + j]!) * inv;
    }
  }
  const out = new Float32Array(cols);
  for (let k = 0; k < cols; k++) out[k] = acc[k]! / rows;
  return out;
}

/**
 * AutoAWQ's candidate scales for one grid ratio: s = x_mean^ratio, divided by (w_mean^(1 - ratio) + 1e-4)
 * when `wMean` is given (duo scaling), clamped at 1e-4, over sqrt(max * min), non-finite entries set to 1.
 */
export function awqScales(xMean: Float32Array, ratio: number, wMean: Float32Array | null = null): Float32Array {
  if (wMean && wMean.length !== xMean.length) throw new Error(`awq search: w_mean has ${wMean.length} channels, x_mean ${xMean.length}`);
  const s = new Float32Array(xMean.length);
  let max = -Infinity;
  let min = Infinity;
  for (let k = 0; k < s.length; k++) {
    const x = xMean[k]! ** ratio;
    const v = Math.max(wMean ? x / (wMean[k]! ** (1 - ratio) + 1e-4) : x, 1e-4);
    s[k] = v;
    if (v > max) max = v;
    if (v < min) min = v;
  }
  const norm = Math.sqrt(max * min);
  for (let k = 0; k < s.length; k++) {
    const v = s[k]! / norm;
    s[k] = Number.isFinite(v) ? v : 1;
  }
  return s;
}

/** silu(gate) * up of a fused [numTokens, 2 * intermediate] gate/up output, as the MLP computes it. */
export function siluAndMul(gateUp: Float32Array, numTokens: number, intermediate: number): Float32Array {
  if (gateUp.length !== numTokens * 2 * intermediate)
    throw new Error(`awq search: gate/up output has ${gateUp.length} values, expected ${numTokens} x 2 x ${intermediate}`);
  const out = new Float32Array(numTokens * intermediate);
  for (let t = 0; t < numTokens; t++) {
    const row = t * 2 * intermediate;
    for (let j = 0; j < intermediate; j++) {
      const g = gateUp[row + j]!;
      out[t * intermediate + j] = (g / (1 + Math.exp(-g))) * gateUp[row + intermediate + j]!;
    }
  }
  return out;
}

/** Evaluates a linear group's output on captured activations, on the GPU. */
export class GroupOutputs {
  private readonly uniforms: UniformArena;
  private out: GPUBuffer | null = null;
  private input: GPUBuffer | null = null;

  constructor(
    private readonly gpu: GpuDevice,
    private readonly matmul: MatmulKernels,
  ) {
    this.uniforms = new UniformArena(gpu.device);
  }

  /** x W^T for W [rows, cols] and x: f32 [numTokens, cols] on the GPU; returns [numTokens, rows]. */
  async compute(w: Float32Array, rows: number, cols: number, x: GPUBuffer, numTokens: number): Promise<Float32Array> {
    const bytes = numTokens * rows * 4;
    if (!this.out || this.out.size < bytes) {
      this.out?.destroy();
      this.out = this.gpu.createBuffer('awq.outputs', bytes, storageUsage());
    }
    const weight = uploadWeight(this.gpu, 'awq.search', w, rows, cols, 'f16', undefined, this.matmul.weightLayout);
    try {
      const encoder = this.gpu.device.createCommandEncoder({ label: 'awq.search' });
      const pass = encoder.beginComputePass();
      this.matmul.matmul(pass, this.uniforms, x, weight, this.out, numTokens);
      pass.end();
      this.uniforms.flush();
      this.gpu.device.queue.submit([encoder.finish()]);
      return await this.gpu.readF32(this.out, numTokens * rows);
    } finally {
      destroyWeight(weight);
    }
  }

  /** compute() for an input that is on the host: x f32 [numTokens, cols]. */
  async computeFromHost(w: Float32Array, rows: number, cols: number, x: Float32Array, numTokens: number): Promise<Float32Array> {
    if (!this.input || this.input.size < x.byteLength) {
      this.input?.destroy();
      this.input = this.gpu.createBuffer('awq.inputs', x.byteLength, storageUsage());
    }
    this.gpu.device.queue.writeBuffer(this.input, 0, x);
    return this.compute(w, rows, cols, this.input, numTokens);
  }

  destroy(): void {
    this.input?.destroy();
    this.out?.destroy();
    this.uniforms.destroy();
  }
}

function mse(a: Float32Array, b: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    sum += d * d;
  }
  return sum / a.length;
}

/**
 * The best AWQ scales for the linears stacked in `w` [rows, cols] (e.g. q, k and v, which read the
 * same input), whose input is `x` [numTokens, cols] on the GPU and `xMean` its mean |x| per column.
 */
export async function searchScales(
  outputs: GroupOutputs,
  w: Float32Array,
  rows: number,
  cols: number,
  groupSize: number,
  x: GPUBuffer,
  numTokens: number,
  xMean: Float32Array,
  options: ScaleSearchOptions,
): Promise<ScaleSearchResult> {
  const wMean = options.duoScaling ? weightMeanPerColumn(w, rows, cols, groupSize) : null;
  const block = options.blockOutput ?? (async (y: Float32Array) => y);
  const reference = await block(await outputs.compute(w, rows, cols, x, numTokens));
  const fake = new Float32Array(rows * cols);
  const score = async (s: Float32Array) => {
    // Q(W s) / s applied to x equals Q(W s) applied to x / s.
    fakeQuantizeScaled(w, rows, cols, groupSize, s, fake);
    return mse(await block(await outputs.compute(fake, rows, cols, x, numTokens)), reference);
  };
  const rtnLoss = await score(new Float32Array(cols).fill(1));
  // Scored first, so plain RTN wins ties, as ratio 0 does in AutoAWQ's grid without duo scaling.
  let best: ScaleSearchResult = { scales: new Float32Array(cols).fill(1), bestRatio: null, loss: rtnLoss, rtnLoss };
  // Without duo scaling ratio 0 is s = 1, already scored.
  for (let i = wMean ? 0 : 1; i < AWQ_GRID; i++) {
    const ratio = i / AWQ_GRID;
    const s = awqScales(xMean, ratio, wMean);
    const loss = await score(s);
    if (loss < best.loss) best = { scales: s, bestRatio: ratio, loss, rtnLoss };
  }
  return best;
}
