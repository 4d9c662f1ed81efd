// The 4-bit matrix helpers (src/common/q4.ts) that tensor-parallel sharding and weight fusion use:
// every slice and concatenation must dequantize to the same slice of the dequantized matrix.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { checkQ4Matrix, q4ByteLength, q4ConcatRows, q4HeadRows, q4SliceCols, q4SliceRows, type Q4Matrix } from '../../src/common/q4.js';
import { dequantizeQ4, randomQ4Matrix } from '../support/q4-reference.js';

/** Rows [r0, r0 + nr) and columns [c0, c0 + nc) of a row-major [*, cols] matrix. */
function block(w: Float32Array, cols: number, r0: number, nr: number, c0: number, nc: number): number[] {
  const out: number[] = [];
  for (let r = r0; r < r0 + nr; r++) out.push(...w.subarray(r * cols + c0, r * cols + c0 + nc));
  return out;
}

test('checkQ4Matrix accepts a consistent matrix and names each inconsistency', () => {
  const m = randomQ4Matrix(3, 64, 32, 1);
  checkQ4Matrix(m);
  assert.throws(() => checkQ4Matrix({ ...m, groupSize: 12 }, 'layers.0.q'), /layers\.0\.q: group size 12 is not a power of two >= 8/);
  assert.throws(() => checkQ4Matrix({ ...m, groupSize: 4 }), /group size 4 is not a power of two >= 8/);
  assert.throws(() => checkQ4Matrix({ ...m, groupSize: 128 }), /in features 64 are not a multiple of the group size 128/);
  assert.throws(() => checkQ4Matrix({ ...m, qweight: m.qweight.subarray(1) }), /qweight has 23 words, expected 24/);
  assert.throws(() => checkQ4Matrix({ ...m, zeros: new Uint8Array(5) }), /zeros has 5 entries, expected 6/);
  assert.throws(() => checkQ4Matrix({ ...m, rows: 0 }), /shape 0 x 64/);
  assert.is(q4ByteLength(m), 24 * 4 + 6 * 2 + 6);
});

test('q4SliceRows: views of whole rows; out-of-range slices fail instead of coming back short', () => {
  const m = randomQ4Matrix(7, 64, 16, 2);
  const s = q4SliceRows(m, 2, 3);
  checkQ4Matrix(s);
  assert.is(s.rows, 3);
  assert.is(s.qweight.buffer, m.qweight.buffer, 'a view, not a copy');
  assert.equal([...dequantizeQ4(s)], block(dequantizeQ4(m), 64, 2, 3, 0, 64));
  assert.throws(() => q4SliceRows(m, 5, 3), /q4SliceRows: rows \[5, 8\) is not a non-empty range inside \[0, 7\)/);
  assert.throws(() => q4SliceRows(m, 0, 0), /not a non-empty range/);
});

test('q4SliceCols: whole groups per row-parallel shard; a split inside a group says which tp degree to use', () => {
  const m = randomQ4Matrix(5, 256, 32, 3);
  const w = dequantizeQ4(m);
  for (const [start, count] of [
    [0, 128],
    [128, 128],
    [64, 96],
    [224, 32],
  ] as const) {
    const s = q4SliceCols(m, start, count);
    checkQ4Matrix(s);
    assert.equal([...dequantizeQ4(s)], block(w, 256, 0, 5, start, count), `columns [${start}, ${start + count})`);
  }
  assert.throws(() => q4SliceCols(m, 16, 64), /cannot be split at columns \[16, 80\).*choose a tp degree that divides in_features \/ group_size/);
  assert.throws(() => q4SliceCols(m, 0, 48), /group size 32 cannot be split at columns \[0, 48\)/);
  assert.throws(() => q4SliceCols(m, 224, 64), /q4SliceCols: columns \[224, 288\) is not a non-empty range inside \[0, 256\)/);
});

test('q4ConcatRows stacks fused projections; mismatched in features or group sizes are refused', () => {
  const parts = [randomQ4Matrix(3, 128, 64, 4), randomQ4Matrix(1, 128, 64, 5), randomQ4Matrix(4, 128, 64, 6)];
  const cat = q4ConcatRows(parts);
  checkQ4Matrix(cat);
  assert.is(cat.rows, 8);
  assert.equal(
    [...dequantizeQ4(cat)],
    parts.flatMap((p) => [...dequantizeQ4(p)]),
  );
  assert.throws(
    () => q4ConcatRows([parts[0]!, randomQ4Matrix(2, 128, 32, 7)]),
    /fused projections \(q\/k\/v, gate\/up\) must share in features and group size/,
  );
  assert.throws(() => q4ConcatRows([parts[0]!, randomQ4Matrix(2, 64, 64, 8)]), /cannot fuse 4-bit weights of 64 in features/);
  assert.throws(() => q4ConcatRows([]), /no parts/);
});

test('q4HeadRows picks headDim rows per head in the given order', () => {
  const headDim = 4;
  const m: Q4Matrix = randomQ4Matrix(5 * headDim, 32, 8, 9);
  const w = dequantizeQ4(m);
  const h = q4HeadRows(m, headDim, [3, 0, 4]);
  checkQ4Matrix(h);
  assert.equal(
    [...dequantizeQ4(h)],
    [3, 0, 4].flatMap((head) => block(w, 32, head * headDim, headDim, 0, 32)),
  );
  assert.throws(() => q4HeadRows(m, headDim, [5]), /q4SliceRows: rows \[20, 24\)/);
});

test('activation order: slices and fusion keep inputPerm, fusing different orders or splitting columns throws, a non-permutation is rejected', () => {
  const perm = Uint32Array.from({ length: 32 }, (_, i) => (i * 7) % 32);
  const m: Q4Matrix = { ...randomQ4Matrix(16, 32, 8, 3), inputPerm: perm };
  checkQ4Matrix(m);
  assert.is(q4SliceRows(m, 8, 8).inputPerm, perm);
  assert.is(q4ConcatRows([q4SliceRows(m, 0, 8), q4SliceRows(m, 8, 8)]).inputPerm, perm);
  assert.throws(() => q4ConcatRows([m, { ...m, inputPerm: Uint32Array.from({ length: 32 }, (_, i) => i) }]), /activation orders differ/);
  assert.throws(() => q4ConcatRows([m, { ...m, inputPerm: undefined }]), /activation orders differ/);
  assert.throws(() => q4SliceCols(m, 0, 16), /activation-ordered groups .* desc_act/);
  assert.throws(() => checkQ4Matrix({ ...m, inputPerm: Uint32Array.from({ length: 32 }, () => 0) }), /inputPerm is not a permutation/);
});

test('per-channel (one group per row): a column slice keeps each row scale and zero and is one group itself', () => {
  const m = randomQ4Matrix(5, 64, 64, 9);
  const w = dequantizeQ4(m);
  for (const [start, count] of [
    [0, 32],
    [32, 32],
    [16, 16],
  ] as const) {
    const s = q4SliceCols(m, start, count);
    checkQ4Matrix(s);
    assert.is(s.groupSize, count);
    assert.equal([...dequantizeQ4(s)], block(w, 64, 0, 5, start, count), `columns [${start}, ${start + count})`);
  }
  assert.throws(() => q4SliceCols(m, 0, 24), /per-channel 4-bit weight .* power of two >= 8/);
});

test.run();
