// Weight matrices on the GPU in the layout the matmul kernels read: HF [out, in] rows, each row
// padded with zeros to a multiple of 8 elements (so every row starts 16-byte aligned and the
// kernels load 8 weights at a time without a tail case), split into row chunks that each fit one
// storage binding. Optionally 'interleaved8': groups of 8 rows stored block-interleaved, so the 8
// lanes of a matmul workgroup, each on its own row, read one contiguous run of memory.
// 4-bit weights (src/common/q4.ts) keep their packed nibble words in the same block order, plus one
// scale/zero word per (row, group) in a second buffer per chunk.
import { f32ToF16Bits } from '../common/half.js';
import { checkQ4Matrix, type Q4Matrix } from '../common/q4.js';
import { align, type GpuDevice } from '../gpu/index.js';

/** 'q4': 4-bit weights with per-group f16 scales and integer zeros (uploadQ4Weight). */
export type WeightDtype = 'f32' | 'f16' | 'q4';

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

interface GpuWeightBase {
  label: string;
  /** Out features (HF layout [out, in]). */
  rows: number;
  /** In features. */
  cols: number;
  layout: WeightLayout;
  /** Row chunks, each <= device.limits.maxStorageBufferBindingSize bytes. */
  chunks: GPUBuffer[];
  /** Chunk i holds rows [i*rowsPerChunk, min(rows, (i+1)*rowsPerChunk)). */
  rowsPerChunk: number;
  /** Elements per stored row: cols rounded up to a multiple of WEIGHT_ROW_ALIGN (the pad is zeros). */
  rowStride: number;
  /** Bytes of every buffer the weight holds (for q4: packed words and scale/zero words). */
  byteLength: number;
}

/** f32 / f16 elements, one per stored position. */
export interface DenseGpuWeight extends GpuWeightBase {
  dtype: 'f32' | 'f16';
}

/**
 * 4-bit weights: chunk words are 8-element blocks (element 8*b + j in bits 4j..4j+3) in the block order
 * of `layout`, rowStride = cols (a multiple of groupSize, so no padding). scaleChunks[i] belongs to
 * chunks[i]: one u32 per (row, group), f16 scale bits in bits 0..15 and the zero point (0..16) in
 * bits 16..23, at row * groupsPerRow + g ('rows') or ((row >> 3) * groupsPerRow + g) * 8 + (row & 7)
 * ('interleaved8'), so the matmul kernels find a block's scale word by shifting its block index.
 */
export interface Q4GpuWeight extends GpuWeightBase {
  dtype: 'q4';
  /** Input elements per scale/zero: a power of two >= 8. */
  groupSize: number;
  scaleChunks: GPUBuffer[];
  /**
   * Activation order (Q4Matrix.inputPerm): u32 [cols], column k multiplies input element inputPerm[k];
   * whoever runs the matmul gathers the input by it first (kernels/permute.ts). null: inputs in order.
   */
  inputPerm: GPUBuffer | null;
}

export type GpuWeight = DenseGpuWeight | Q4GpuWeight;

/** Stored rows are padded to this many elements (16 bytes of f16, 32 bytes of f32, one u32 of q4). */
export const WEIGHT_ROW_ALIGN = 8;

/** Bytes per stored element; q4's per-group scale/zero words come on top. */
export function bytesPerElement(dtype: WeightDtype): number {
  return dtype === 'f32' ? 4 : dtype === 'f16' ? 2 : 0.5;
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
): DenseGpuWeight {
  if (!(Number.isInteger(rows) && rows > 0 && Number.isInteger(cols) && cols > 0)) {
    throw new Error(`uploadWeight(${label}): rows and cols must be positive integers, got ${rows} x ${cols}`);
  }
  if (data.length !== rows * cols) {
    throw new Error(`uploadWeight(${label}): data has ${data.length} elements, expected rows*cols = ${rows}*${cols} = ${rows * cols}`);
  }
  if (dtype === 'q4') throw new Error(`uploadWeight(${label}): 4-bit weights are uploaded from a Q4Matrix with uploadQ4Weight()`);
  if (data instanceof Uint16Array && dtype !== 'f16') {
    throw new Error(`uploadWeight(${label}): Uint16Array data holds f16 bits, so dtype must be 'f16' (got '${dtype}')`);
  }
  const limit = Math.min(maxChunkBytes, gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize);
  const rowStride = align(cols, WEIGHT_ROW_ALIGN);
  const rowsPerChunk = chunkRows(
    `uploadWeight(${label})`,
    rows,
    rowStride * bytesPerElement(dtype),
    limit,
    layout,
    `${cols} ${dtype} values`,
    BIGGER_CHUNKS_ADVICE,
  );
  const source = dtype === 'f16' && data instanceof Float32Array ? f32ToF16Bits(data) : data;
  const chunks: GPUBuffer[] = [];
  for (let row0 = 0; row0 < rows; row0 += rowsPerChunk) {
    const numRows = Math.min(rowsPerChunk, rows - row0);
    chunks.push(uploadChunk(gpu, `${label}[${chunks.length}]`, source, row0, numRows, cols, rowStride, layout));
  }
  const byteLength = chunks.reduce((sum, b) => sum + b.size, 0);
  return { label, rows, cols, dtype, layout, chunks, rowsPerChunk, rowStride, byteLength };
}

/**
 * Uploads a 4-bit matrix (checked with checkQ4Matrix; zeros must be 0..16) as a Q4GpuWeight: packed
 * words in `layout` block order and a scale/zero word per (row, group). maxChunkBytes bounds each
 * chunk's packed words (its scale buffer is never larger, since groupSize >= 8), as for uploadWeight.
 */
export function uploadQ4Weight(
  gpu: GpuDevice,
  label: string,
  m: Q4Matrix,
  maxChunkBytes = gpu.limits.maxStorageBufferBindingSize,
  layout: WeightLayout = 'rows',
): Q4GpuWeight {
  checkQ4Matrix(m, `uploadQ4Weight(${label})`);
  const badZero = m.zeros.findIndex((z) => z > 16);
  if (badZero >= 0) {
    throw new Error(`uploadQ4Weight(${label}): zeros[${badZero}] is ${m.zeros[badZero]}; 4-bit zero points must be 0..16`);
  }
  const { rows, cols, groupSize } = m;
  const limit = Math.min(maxChunkBytes, gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize);
  const rowsPerChunk = chunkRows(
    `uploadQ4Weight(${label})`,
    rows,
    cols / 2,
    limit,
    layout,
    `${cols} 4-bit values`,
    "use layout 'rows' or a device with a larger maxStorageBufferBindingSize",
  );
  const scaleZeros = packScaleZeros(m);
  const chunks: GPUBuffer[] = [];
  const scaleChunks: GPUBuffer[] = [];
  for (let row0 = 0; row0 < rows; row0 += rowsPerChunk) {
    const numRows = Math.min(rowsPerChunk, rows - row0);
    const i = chunks.length;
    chunks.push(uploadWords(gpu, `${label}[${i}]`, m.qweight, row0, numRows, cols / 8, layout));
    scaleChunks.push(uploadWords(gpu, `${label}.scales[${i}]`, scaleZeros, row0, numRows, cols / groupSize, layout));
  }
  const inputPerm = m.inputPerm ? gpu.upload(`${label}.input_perm`, m.inputPerm) : null;
  const byteLength = [...chunks, ...scaleChunks, ...(inputPerm ? [inputPerm] : [])].reduce((sum, b) => sum + b.size, 0);
  return { label, rows, cols, dtype: 'q4', layout, chunks, rowsPerChunk, rowStride: cols, byteLength, groupSize, scaleChunks, inputPerm };
}

/** One u32 per (row, group): f16 scale bits low, zero point in bits 16..23 (the kernels' scale/zero word). */
function packScaleZeros(m: Q4Matrix): Uint32Array {
  const out = new Uint32Array(m.scales.length);
  for (let i = 0; i < out.length; i++) out[i] = (m.scales[i]! | (m.zeros[i]! << 16)) >>> 0;
  return out;
}

/**
 * Copies rows [row0, row0+numRows) of a [rows, wordsPerRow] u32 matrix into a new buffer, with
 * 'interleaved8' putting word k of row r at ((r >> 3) * wordsPerRow + k) * 8 + (r & 7) (zero-padded
 * to a whole row group): the block order of the f16 path, one word standing for one block.
 */
function uploadWords(gpu: GpuDevice, label: string, source: Uint32Array, row0: number, numRows: number, wordsPerRow: number, layout: WeightLayout): GPUBuffer {
  const G = WEIGHT_ROW_GROUP;
  const storedRows = layout === 'interleaved8' ? align(numRows, G) : numRows;
  const buffer = gpu.device.createBuffer({
    label,
    size: align(storedRows * wordsPerRow * 4, 16),
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
    mappedAtCreation: true,
  });
  const dst = new Uint32Array(buffer.getMappedRange());
  const rowsSrc = source.subarray(row0 * wordsPerRow, (row0 + numRows) * wordsPerRow);
  if (layout === 'interleaved8') {
    for (let r = 0; r < numRows; r++) {
      const base = Math.floor(r / G) * wordsPerRow * G + (r % G);
      for (let k = 0; k < wordsPerRow; k++) dst[base + k * G] = rowsSrc[r * wordsPerRow + k]!;
    }
  } else {
    dst.set(rowsSrc);
  }
  buffer.unmap();
  return buffer;
}

const BIGGER_CHUNKS_ADVICE = "use f16, layout 'rows' or a device with a larger maxStorageBufferBindingSize";

/** Rows per chunk so that one chunk of rowBytes-long rows fits `limit`; interleaved chunks hold whole row groups. */
function chunkRows(what: string, rows: number, rowBytes: number, limit: number, layout: WeightLayout, rowDescription: string, advice: string): number {
  // Interleaved chunks start on a row group and hold whole (zero-padded) groups.
  const rowQuantum = layout === 'interleaved8' ? WEIGHT_ROW_GROUP : 1;
  const fitRows = Math.floor(limit / rowBytes / rowQuantum) * rowQuantum;
  if (fitRows < 1) {
    throw new Error(`${what}: ${rowQuantum} row(s) of ${rowDescription} (${rowQuantum * rowBytes} bytes) exceed the ${limit}-byte chunk limit; ${advice}`);
  }
  return Math.min(align(rows, rowQuantum), fitRows);
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
  if (w.dtype === 'q4') {
    for (const chunk of w.scaleChunks) chunk.destroy();
    w.scaleChunks.length = 0;
    w.inputPerm?.destroy();
    w.inputPerm = null;
  }
}

export { f32ToF16Bits, f32ToF16, f16BitsToF32, f16ToNumber } from '../common/half.js';
