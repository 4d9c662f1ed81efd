// Weight matrices on the GPU in the layout the matmul kernels read: HF [out, in] rows, each row
// padded with zeros to a multiple of 8 elements (so every row starts 16-byte aligned and the
// kernels load 8 weights at a time without a tail case), split into row chunks that each fit one
// storage binding. Optionally 'interleaved8': groups of 8 rows stored block-interleaved, so the 8
// lanes of a matmul workgroup, each on its own row, read one contiguous run of memory.
import { f32ToF16Bits } from '../common/half.js';
import { align, type GpuDevice } from '../gpu/index.js';

export type WeightDtype = 'f32' | 'f16';

/**
 * 'rows': row r at r * rowStride (what gathers such as the embedding lookup need).
 * 'interleaved8': element k of row r at ((r >> 3) * rowStride + 8 * (k >> 3)) * 8 + 8 * (r & 7) + (k & 7),
 * i.e. 8-element blocks of rows 8g..8g+7 side by side; chunks hold multiples of 8 rows (the last
 * group zero-padded). Only the matmul kernels read it; they stream it 2x faster on lavapipe
 * (docs/benchmarks.md), where 8 lanes on 8 separate rows are 8 separate memory streams.
 */
export type WeightLayout = 'rows' | 'interleaved8';

/** Rows per group of the 'interleaved8' layout. */
export const WEIGHT_ROW_GROUP = 8;

export interface GpuWeight {
  label: string;
  /** Out features (HF layout [out, in]). */
  rows: number;
  /** In features. */
  cols: number;
  dtype: WeightDtype;
  layout: WeightLayout;
  /** Row chunks, each <= device.limits.maxStorageBufferBindingSize bytes. */
  chunks: GPUBuffer[];
  /** Chunk i holds rows [i*rowsPerChunk, min(rows, (i+1)*rowsPerChunk)). */
  rowsPerChunk: number;
  /** Elements per stored row: cols rounded up to a multiple of WEIGHT_ROW_ALIGN (the pad is zeros). */
  rowStride: number;
  byteLength: number;
}

/** Stored rows are padded to this many elements (16 bytes of f16, 32 bytes of f32). */
export const WEIGHT_ROW_ALIGN = 8;

export function bytesPerElement(dtype: WeightDtype): number {
  return dtype === 'f32' ? 4 : 2;
}

/**
 * Uploads a [rows, cols] weight. data: Float32Array (converted to f16 when dtype is 'f16') or
 * Uint16Array of IEEE f16 bits (dtype must be 'f16'). maxChunkBytes (default: the device's
 * maxStorageBufferBindingSize) lets tests force the chunked path on small weights. layout
 * 'interleaved8' is for weights only the matmul kernels read (not embedding tables).
 */
export function uploadWeight(
  gpu: GpuDevice,
  label: string,
  data: Float32Array | Uint16Array,
  rows: number,
  cols: number,
  dtype: WeightDtype,
  maxChunkBytes = gpu.limits.maxStorageBufferBindingSize,
  layout: WeightLayout = 'rows',
): GpuWeight {
  if (!(Number.isInteger(rows) && rows > 0 && Number.isInteger(cols) && cols > 0)) {
    throw new Error(`uploadWeight(${label}): rows and cols must be positive integers, got ${rows} x ${cols}`);
  }
  if (data.length !== rows * cols) {
    throw new Error(`uploadWeight(${label}): data has ${data.length} elements, expected rows*cols = ${rows}*${cols} = ${rows * cols}`);
  }
  if (data instanceof Uint16Array && dtype !== 'f16') {
    throw new Error(`uploadWeight(${label}): Uint16Array data holds f16 bits, so dtype must be 'f16' (got '${dtype}')`);
  }
  const limit = Math.min(maxChunkBytes, gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize);
  const rowStride = align(cols, WEIGHT_ROW_ALIGN);
  const rowBytes = rowStride * bytesPerElement(dtype);
  // Interleaved chunks start on a row group and hold whole (zero-padded) groups.
  const rowQuantum = layout === 'interleaved8' ? WEIGHT_ROW_GROUP : 1;
  const fitRows = Math.floor(limit / rowBytes / rowQuantum) * rowQuantum;
  if (fitRows < 1) {
    throw new Error(
      `uploadWeight(${label}): ${rowQuantum} row(s) of ${cols} ${dtype} values (${rowQuantum * rowBytes} bytes) exceed the ${limit}-byte chunk limit; use f16, layout 'rows' or a device with a larger maxStorageBufferBindingSize`,
    );
  }
  const rowsPerChunk = Math.min(align(rows, rowQuantum), fitRows);
  const source = dtype === 'f16' && data instanceof Float32Array ? f32ToF16Bits(data) : data;
  const chunks: GPUBuffer[] = [];
  for (let row0 = 0; row0 < rows; row0 += rowsPerChunk) {
    const numRows = Math.min(rowsPerChunk, rows - row0);
    chunks.push(uploadChunk(gpu, `${label}[${chunks.length}]`, source, row0, numRows, cols, rowStride, layout));
  }
  const byteLength = chunks.reduce((sum, b) => sum + b.size, 0);
  return { label, rows, cols, dtype, layout, chunks, rowsPerChunk, rowStride, byteLength };
}

/** Copies rows [row0, row0+numRows) into a new buffer in `layout`, padding each row to rowStride elements. */
function uploadChunk(
  gpu: GpuDevice,
  label: string,
  source: Float32Array | Uint16Array,
  row0: number,
  numRows: number,
  cols: number,
  rowStride: number,
  layout: WeightLayout,
): GPUBuffer {
  const elemBytes = source.BYTES_PER_ELEMENT;
  const storedRows = layout === 'interleaved8' ? align(numRows, WEIGHT_ROW_GROUP) : numRows;
  const buffer = gpu.device.createBuffer({
    label,
    size: align(storedRows * rowStride * elemBytes, 16),
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
    mappedAtCreation: true,
  });
  const mapped = buffer.getMappedRange();
  const dst = source instanceof Float32Array ? new Float32Array(mapped) : new Uint16Array(mapped);
  if (layout === 'interleaved8') {
    interleaveRows(source, row0, numRows, cols, rowStride, dst);
  } else if (rowStride === cols) {
    dst.set(source.subarray(row0 * cols, (row0 + numRows) * cols));
  } else {
    for (let r = 0; r < numRows; r++) dst.set(source.subarray((row0 + r) * cols, (row0 + r + 1) * cols), r * rowStride);
  }
  buffer.unmap();
  return buffer;
}

/** Writes rows [row0, row0+numRows) of source into dst in the 'interleaved8' layout (dst starts zeroed). */
function interleaveRows(
  source: Float32Array | Uint16Array,
  row0: number,
  numRows: number,
  cols: number,
  rowStride: number,
  dst: Float32Array | Uint16Array,
): void {
  const G = WEIGHT_ROW_GROUP;
  for (let r = 0; r < numRows; r++) {
    const src = (row0 + r) * cols;
    const rowBase = Math.floor(r / G) * rowStride * G + (r % G) * 8;
    for (let k = 0; k < cols; k += 8) {
      const d = rowBase + k * G;
      const n = Math.min(8, cols - k);
      for (let e = 0; e < n; e++) dst[d + e] = source[src + k + e]!;
    }
  }
}

export function destroyWeight(w: GpuWeight): void {
  for (const chunk of w.chunks) chunk.destroy();
  w.chunks.length = 0;
}

export { f32ToF16Bits, f32ToF16, f16BitsToF32, f16ToNumber } from '../common/half.js';
