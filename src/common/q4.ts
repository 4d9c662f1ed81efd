// The one in-memory form of a 4-bit weight matrix, between the checkpoint readers (AWQ, GPTQ,
// compressed-tensors, all repacked into it) and the GPU upload. Plain data and pure functions, so
// the checkpoint, runner and kernel layers share it without importing each other.
//
// Semantics: W[r, k] = (q[r, k] - zero[r, g]) * scale[r, g] with g = floor(k / groupSize), in the HF
// [out, in] orientation the f16 path uses (r < rows = out features, k < cols = in features). An
// activation-ordered checkpoint (GPTQ desc_act: groups of scattered inputs) is held with its columns
// sorted by group and `inputPerm` saying where each came from: y = W x[inputPerm], the gather done
// before the matmul.

export interface Q4Matrix {
  /** Out features. */
  rows: number;
  /** In features; a multiple of groupSize. */
  cols: number;
  /** Input elements sharing one scale and zero: a power of two >= 8 (checkpoints use 32, 64, 128). */
  groupSize: number;
  /** u32 [rows, cols / 8]: word (r, k8) holds q[r, 8*k8 + j] (0..15) in bits 4j..4j+3, natural order. */
  qweight: Uint32Array;
  /** f16 bits [rows, cols / groupSize]. */
  scales: Uint16Array;
  /** [rows, cols / groupSize], the zero point itself (0..16: GPTQ's v1 format can yield 16). */
  zeros: Uint8Array;
  /** Activation order only: column k multiplies input element inputPerm[k] (a permutation of 0..cols-1). */
  inputPerm?: Uint32Array;
}

/** Throws naming what is wrong when m's arrays do not match its shape. */
export function checkQ4Matrix(m: Q4Matrix, label = 'q4 matrix'): void {
  const { rows, cols, groupSize: g } = m;
  const problems: string[] = [];
  if (!(Number.isInteger(rows) && rows > 0 && Number.isInteger(cols) && cols > 0)) problems.push(`shape ${rows} x ${cols}`);
  if (!(Number.isInteger(g) && g >= 8 && (g & (g - 1)) === 0)) problems.push(`group size ${g} is not a power of two >= 8`);
  else if (cols % g !== 0) problems.push(`in features ${cols} are not a multiple of the group size ${g}`);
  if (m.qweight.length !== (rows * cols) / 8) problems.push(`qweight has ${m.qweight.length} words, expected ${(rows * cols) / 8}`);
  const groups = rows * Math.floor(cols / g);
  if (m.scales.length !== groups) problems.push(`scales has ${m.scales.length} entries, expected ${groups}`);
  if (m.zeros.length !== groups) problems.push(`zeros has ${m.zeros.length} entries, expected ${groups}`);
  if (m.inputPerm && !isPermutation(m.inputPerm, cols)) problems.push(`inputPerm is not a permutation of 0..${cols - 1}`);
  if (problems.length) throw new Error(`${label}: ${problems.join('; ')}`);
}

function isPermutation(p: Uint32Array, n: number): boolean {
  if (p.length !== n) return false;
  const seen = new Uint8Array(n);
  for (const i of p) {
    if (i >= n || seen[i]) return false;
    seen[i] = 1;
  }
  return true;
}

/** Bytes the packed form takes (weights, scales and zeros), for memory accounting and logs. */
export function q4ByteLength(m: Q4Matrix): number {
  return m.qweight.byteLength + m.scales.byteLength + m.zeros.byteLength;
}

/** Throws unless [start, start + count) is a non-empty integer range inside [0, size). */
function checkRange(what: string, start: number, count: number, size: number): void {
  if (!(Number.isInteger(start) && Number.isInteger(count) && start >= 0 && count > 0 && start + count <= size)) {
    throw new Error(`${what} [${start}, ${start + count}) is not a non-empty range inside [0, ${size})`);
  }
}

/** Rows [start, start + count) (views, no copy). */
export function q4SliceRows(m: Q4Matrix, start: number, count: number): Q4Matrix {
  // subarray() clamps silently: an out-of-range slice would come back short instead of failing.
  checkRange('q4SliceRows: rows', start, count, m.rows);
  const words = m.cols / 8;
  const groups = m.cols / m.groupSize;
  return {
    rows: count,
    cols: m.cols,
    groupSize: m.groupSize,
    qweight: m.qweight.subarray(start * words, (start + count) * words),
    scales: m.scales.subarray(start * groups, (start + count) * groups),
    zeros: m.zeros.subarray(start * groups, (start + count) * groups),
    ...(m.inputPerm ? { inputPerm: m.inputPerm } : {}),
  };
}

/**
 * Input columns [start, start + count), as a row-parallel shard takes them; both must fall on group
 * boundaries, else an Error says which tensor-parallel split does not divide the groups.
 */
export function q4SliceCols(m: Q4Matrix, start: number, count: number): Q4Matrix {
  const g = m.groupSize;
  checkRange('q4SliceCols: columns', start, count, m.cols);
  if (m.inputPerm) {
    // Each shard holds a contiguous part of the input; sorted columns would need inputs from every shard.
    throw new Error(
      `a 4-bit weight with activation-ordered groups (GPTQ desc_act, a permuted g_idx) cannot be split along its ${m.cols} in features: ` +
        'run it on one device (tp 1), or use a checkpoint quantized with desc_act false or static_groups',
    );
  }
  if (g === m.cols && !(start === 0 && count === m.cols)) return sliceOneGroupCols(m, start, count);
  if (start % g !== 0 || count % g !== 0) {
    throw new Error(
      `a 4-bit weight with ${m.cols} in features and group size ${g} cannot be split at columns [${start}, ${start + count}): ` +
        'tensor-parallel shards must hold whole groups (choose a tp degree that divides in_features / group_size)',
    );
  }
  const words = m.cols / 8,
    groups = m.cols / g;
  const outWords = count / 8,
    outGroups = count / g;
  const out: Q4Matrix = {
    rows: m.rows,
    cols: count,
    groupSize: g,
    qweight: new Uint32Array(m.rows * outWords),
    scales: new Uint16Array(m.rows * outGroups),
    zeros: new Uint8Array(m.rows * outGroups),
  };
  for (let r = 0; r < m.rows; r++) {
    out.qweight.set(m.qweight.subarray(r * words + start / 8, r * words + (start + count) / 8), r * outWords);
    out.scales.set(m.scales.subarray(r * groups + start / g, r * groups + (start + count) / g), r * outGroups);
    out.zeros.set(m.zeros.subarray(r * groups + start / g, r * groups + (start + count) / g), r * outGroups);
  }
  return out;
}

/**
 * Columns of a matrix with one group per row (per-channel, group_size -1): each part keeps the row's
 * scale and zero and becomes one group of `count` inputs, which the kernels need to be a power of two.
 */
function sliceOneGroupCols(m: Q4Matrix, start: number, count: number): Q4Matrix {
  if (start % 8 !== 0 || !(count >= 8 && (count & (count - 1)) === 0)) {
    throw new Error(
      `a per-channel 4-bit weight (group_size -1) with ${m.cols} in features cannot be split at columns [${start}, ${start + count}): ` +
        "each shard's part becomes one group, which the 4-bit kernels need to be a power of two >= 8 (choose a tp degree that gives one)",
    );
  }
  const words = m.cols / 8;
  const qweight = new Uint32Array((m.rows * count) / 8);
  for (let r = 0; r < m.rows; r++) qweight.set(m.qweight.subarray(r * words + start / 8, r * words + (start + count) / 8), (r * count) / 8);
  return { rows: m.rows, cols: count, groupSize: count, qweight, scales: m.scales, zeros: m.zeros };
}

/** Stacks matrices with the same cols and group size (fused q/k/v, gate/up). */
export function q4ConcatRows(parts: readonly Q4Matrix[]): Q4Matrix {
  const first = parts[0];
  if (!first) throw new Error('q4ConcatRows: no parts');
  for (const p of parts) {
    if (p.cols !== first.cols || p.groupSize !== first.groupSize) {
      throw new Error(
        `cannot fuse 4-bit weights of ${p.cols} in features / group ${p.groupSize} with ${first.cols} / group ${first.groupSize}: ` +
          'fused projections (q/k/v, gate/up) must share in features and group size',
      );
    }
    if (!samePermutation(p.inputPerm, first.inputPerm)) {
      throw new Error(
        'cannot fuse 4-bit weights whose activation orders differ (GPTQ desc_act with different g_idx): ' +
          'fused projections (q/k/v, gate/up) read one input and must share its order',
      );
    }
  }
  const cat = <T extends Uint32Array | Uint16Array | Uint8Array>(arrays: T[]): T => {
    const out = new (arrays[0]!.constructor as { new (n: number): T })(arrays.reduce((n, a) => n + a.length, 0));
    let offset = 0;
    for (const a of arrays) {
      out.set(a, offset);
      offset += a.length;
    }
    return out;
  };
  return {
    rows: parts.reduce((n, p) => n + p.rows, 0),
    cols: first.cols,
    groupSize: first.groupSize,
    qweight: cat(parts.map((p) => p.qweight)),
    scales: cat(parts.map((p) => p.scales)),
    zeros: cat(parts.map((p) => p.zeros)),
    ...(first.inputPerm ? { inputPerm: first.inputPerm } : {}),
  };
}

function samePermutation(a: Uint32Array | undefined, b: Uint32Array | undefined): boolean {
  // Head slices of one matrix share its inputPerm object: no need to compare cols entries per head.
  if (a === b) return true;
  if (!a || !b) return false;
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** The rows of a q/k/v-shaped matrix for the given heads (headDim rows each). */
export function q4HeadRows(m: Q4Matrix, headDim: number, heads: readonly number[]): Q4Matrix {
  return q4ConcatRows(heads.map((h) => q4SliceRows(m, h * headDim, headDim)));
}
