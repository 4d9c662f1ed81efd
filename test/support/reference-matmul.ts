// The plain-TS matmul every matmul kernel test (f32, f16, 4-bit) checks against.

/** y[r, c] = sum_k x[r, k] * w[c, k] + bias[c], accumulated in f64; w in HF [out, in] layout. */
export function referenceMatmul(x: Float32Array, w: Float32Array, numRows: number, rows: number, cols: number, bias?: Float32Array): Float32Array {
  const y = new Float32Array(numRows * rows);
  for (let r = 0; r < numRows; r++) {
    for (let c = 0; c < rows; c++) {
      let s = bias ? bias[c]! : 0;
      for (let k = 0; k < cols; k++) s += x[r * cols + k]! * w[c * cols + k]!;
      y[r * rows + c] = s;
    }
  }
  return y;
}

/** Usage flags of buffers a matmul test binds, uploads to and reads back (call after testDevice(): the GPU globals exist only once Dawn is loaded). */
export const testStorageUsage = (): number => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
