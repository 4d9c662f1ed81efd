// AWQ's activation-aware scale search (AutoAWQ AwqQuantizer._search_best_scale, duo_scaling off, i.e.
// llm-awq's original grid): for a group of linears that read the same input x, with x_mean = mean |x|
// per input channel, try s = x_mean^ratio for ratio = 0, 1/20, .., 19/20, each normalised by
// sqrt(max(s) * min(s)), quantize W * s group-wise (RTN) and score the group's output
// ||Q(W s)(x / s) - W x||^2 / numel; keep the best s. ratio 0 is s = 1, plain RTN, so the chosen
// scales never score worse than RTN on the calibration tokens. AutoAWQ scores q/k/v by the attention
// block's output and gate/up by the MLP's; here every group is scored by its own linear outputs, which
// needs no attention or activation on the host and keeps one code path for all four groups.
//
// The outputs are computed by the project's matmul kernel on the captured activations where they
// already are (the GPU): on lavapipe a 512-token GEMM runs some 20x faster than a JavaScript loop.
// The fused weights go up in f16 (as AutoAWQ searches in f16); only the outputs come back.
import { UniformArena, storageUsage, type GpuDevice } from '../gpu/index.js';
import type { MatmulKernels } from '../kernels/matmul.js';
import { destroyWeight, uploadWeight } from '../kernels/weight.js';
import { fakeQuantizeScaled } from './rtn.js';

export const AWQ_GRID = 20;

export interface ScaleSearchResult {
  /** Per input channel; all ones when the best ratio is 0. */
  scales: Float32Array;
  bestRatio: number;
  /** Output MSE with the chosen scales, and with plain RTN (ratio 0). */
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

/** s = x_mean^ratio clamped at 1e-4, over sqrt(max * min), non-finite entries set to 1 (AutoAWQ). */
export function awqScales(xMean: Float32Array, ratio: number): Float32Array {
  const s = new Float32Array(xMean.length);
  let max = -Infinity;
  let min = Infinity;
  for (let k = 0; k < s.length; k++) {
    const v = Math.max(xMean[k]! ** ratio, 1e-4);
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

/** Evaluates a linear group's output on captured activations, on the GPU. */
export class GroupOutputs {
  private readonly uniforms: UniformArena;
  private out: GPUBuffer | null = null;

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

  destroy(): void {
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
): Promise<ScaleSearchResult> {
  const reference = await outputs.compute(w, rows, cols, x, numTokens);
  const fake = new Float32Array(rows * cols);
  let best: ScaleSearchResult | null = null;
  let rtnLoss = Infinity;
  for (let i = 0; i < AWQ_GRID; i++) {
    const ratio = i / AWQ_GRID;
    const s = awqScales(xMean, ratio);
    // Q(W s) / s applied to x equals Q(W s) applied to x / s.
    fakeQuantizeScaled(w, rows, cols, groupSize, s, fake);
    const loss = mse(await outputs.compute(fake, rows, cols, x, numTokens), reference);
    if (i === 0) rtnLoss = loss;
    if (!best || loss < best.loss) best = { scales: s, bestRatio: ratio, loss, rtnLoss };
  }
  return { ...best!, rtnLoss };
}
