// Matmul family: y[m, c] = sum_k x[m, k] * W[c, k] (+ bias[c]), W in HF [out, in] layout.
//
// This file is assembled by src/kernels/matmul.ts from sections: exactly one `weights_*` section
// (load_w8_block: how one 8-element weight block is loaded), then `common`, `kernels`, and `subgroups` (the
// subgroup kernels) when they are used, plus `q4_subgroups` (gemv_q4_sg) for 4-bit weights. Sections
// start with a line `//#section <name>`; text before the first section is this header.
//
// Bindings (group 0), the same for every entry point:
//   0 x:      array<f32>        activations [num_rows, cols], row-major, unpadded (read)
//   1 x4:     array<vec4<f32>>  the same buffer seen as vec4s; only read when X_VEC4 (cols % 4 == 0;
//                               X_GUARD_HI false when cols % 8 == 0)
//   2 w:      weight row chunk, rows padded with zeros to row_stride8 * 8 elements (read), in the
//             'rows' or 'interleaved8' layout of src/kernels/weight.ts (params.w_interleaved; w_block()):
//             f32: array<vec4<f32>>; f16: array<vec4<f16>>; f16 packed: array<vec4<u32>> (2 halves per u32);
//             q4: array<u32>, one 8-nibble word per block (row_stride8 = cols / 8; gemv_q4_sg: array<vec4<u32>>)
//   3 bias:   array<f32> [total out rows] (read; ignored unless has_bias)
//   4 y:      array<f32> [num_rows, y_stride], this dispatch writes columns [out_offset, out_offset + out_rows)
//   5 params: uniform Params
//   6 w_scale_zero: q4 only, array<u32>, one f16 scale + zero word per (row, group) of the chunk, in the
//             weight's layout; the group size comes in as params.q4_gshift (one pipeline set serves
//             every group size: the shift as an override constant was no faster in a same-run A/B on
//             lavapipe, and would multiply pipelines and compile time); gemv_q4_sg views it as vec4<u32>
// Entry points:
//   gemv_sg:   one x row (decode), needs subgroups of >= 8 lanes. Each lane owns RPL weight rows and
//              streams them 8 k at a time (block indices computed once, the k loop only adds); the 8
//              x values of a block are loaded one per lane and shared with subgroupBroadcast (on
//              lavapipe every lane's load costs, uniform or not). x is read as scalars, guarded unless
//              X_VEC4 && !X_GUARD_HI (cols % 8 == 0). Grid: ceil(out_rows / (8 * RPL)) workgroups (2-D when large).
//   gemv:      one x row without subgroups. A workgroup of WG lanes owns RPW weight rows; lanes stride over k
//              in blocks of 8, each x block is loaded once for the RPW rows, and partial sums are
//              reduced through workgroup memory. Grid: ceil(out_rows / RPW) workgroups (2-D when large).
//   gemm_sg:   2+ rows, needs subgroups of >= 8 lanes (tile heights 2, 4, 8, 16 cover 2..16 rows in
//              one tile row, so each weight is read once: the skinny/batched-decode case). One 8-lane
//              workgroup computes a (8*(TM-1) + MR) x (8*TN) tile: each lane loads TM x rows (lanes
//              >= MR of the last group none) and TN weight rows (8 k at a time), and the x values are
//              shared across lanes with subgroupBroadcast, so each loaded value feeds 8*TN (x) or
//              8*TM (w) multiply-adds. Grid: (ceil(out_rows/(8TN)), ceil(num_rows/(8(TM-1)+MR))).
//   gemm_tile: 2+ rows without subgroups: each of 64 invocations computes a 4x4 block of a 32x32 tile.
//   gemv_q4_sg: one x row over 4-bit 'interleaved8' weights, needs subgroups of >= 8 lanes: vec4<u32>
//              loads of 4 rows' blocks, one scale/zero load per group, the zero applied per group
//              through the group's x sum. Grid: ceil(out_rows / (32 * QPL)) workgroups (2-D when large).
// Each entry point may take its own view of f16 weights (native vec4<f16> or packed vec4<u32>): the
// bytes are the same, see MatmulTuning.packedF16* in src/kernels/matmul.ts.
// Tested against plain-TS references (f32, f16-rounded weights, odd shapes, both weight layouts,
// chunked weights, packed and native f16 views, bias, the three x read modes with NaNs past the rows)
// in test/gpu/matmul.test.ts; 4-bit weights against a dequantize-then-matmul reference (group sizes
// 8..128, zeros 0..16, every path) in test/gpu/matmul-q4.test.ts.

//#section weights_f32
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;
struct W8 { lo: vec4<f32>, hi: vec4<f32> }
fn load_w8_block(block: u32) -> W8 {
  let i = 2u * block;
  return W8(w[i], w[i + 1u]);
}

//#section weights_f16
// requires: f16
@group(0) @binding(2) var<storage, read> w: array<vec4<f16>>;
struct W8 { lo: vec4<f32>, hi: vec4<f32> }
fn load_w8_block(block: u32) -> W8 {
  let i = 2u * block;
  return W8(vec4<f32>(w[i]), vec4<f32>(w[i + 1u]));
}

//#section weights_f16_packed
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;
struct W8 { lo: vec4<f32>, hi: vec4<f32> }
fn load_w8_block(block: u32) -> W8 {
  let q = w[block];
  return W8(vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)), vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w)));
}

//#section weights_q4
// 4-bit weights (src/kernels/weight.ts, Q4GpuWeight): one u32 per 8-element block, element j in
// bits 4j..4j+3, and one scale/zero word per (row, group) at binding 6. Dequantized in f32 with core
// WGSL only: OR-ing a nibble into the mantissa of f16 1024.0 (0x6400, whose ulp is 1) gives 1024 + q
// exactly, so one unpack2x16float turns nibbles j and j + 4 into floats.
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(6) var<storage, read> w_scale_zero: array<u32>;
struct W8 { lo: vec4<f32>, hi: vec4<f32> }

/**
 * The scale/zero word of weight block `block`. A row has row_stride8 = cols / 8 blocks and cols is
 * a multiple of the group size, so the (row, group) index is a shift of the block index: block >>
 * gshift ('rows'), or for 'interleaved8' the same on the row-group part with the lane (block & 7) kept.
 */
fn q4_scale_index(block: u32) -> u32 {
  let lane_bits = params.w_interleaved * 3u;
  return ((block >> (params.q4_gshift + lane_bits)) << lane_bits) | (block & ((1u << lane_bits) - 1u));
}

fn load_w8_block(block: u32) -> W8 {
  let q = w[block];
  // (scale, 1024 + zero): the zero (0..16) sits in bits 16..23, below 0x6400's mantissa top.
  let sz = unpack2x16float(w_scale_zero[q4_scale_index(block)] | 0x64000000u);
  let scale = vec4<f32>(sz.x);
  // (1024 + q) * scale - (1024 + zero) * scale: both products are exact in f32 (11 x 11 bits), so
  // the fma rounds (q - zero) * scale once, as the reference does; cheaper than a subtract and a
  // multiply (faster on lavapipe in same-run A/B runs: docs/benchmarks.md, "4-bit weights").
  let zs = vec4<f32>(-sz.y * sz.x);
  let q04 = unpack2x16float((q & 0x000F000Fu) | 0x64006400u);
  let q15 = unpack2x16float(((q >> 4u) & 0x000F000Fu) | 0x64006400u);
  let q26 = unpack2x16float(((q >> 8u) & 0x000F000Fu) | 0x64006400u);
  let q37 = unpack2x16float(((q >> 12u) & 0x000F000Fu) | 0x64006400u);
  return W8(fma(vec4<f32>(q04.x, q15.x, q26.x, q37.x), scale, zs), fma(vec4<f32>(q04.y, q15.y, q26.y, q37.y), scale, zs));
}

//#section common
struct Params {
  num_rows: u32,     // x rows (M)
  cols: u32,         // in features (K)
  row_stride8: u32,  // weight row stride in blocks of 8 elements
  out_rows: u32,     // weight rows in this chunk
  out_offset: u32,   // first y column this chunk writes (= chunk's first weight row)
  y_stride: u32,     // y row length (= total out rows)
  has_bias: u32,
  w_interleaved: u32, // weight layout (src/kernels/weight.ts): 0 rows, 1 interleaved8
  q4_gshift: u32,     // q4 weights: log2(group size / 8), blocks per scale/zero word as a shift; else 0
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

// cols % 4 == 0 (and a 16-byte aligned binding): x rows can be read as vec4s.
override X_VEC4: bool = true;
// With X_VEC4: cols % 8 == 4, so the second vec4 of a row's last block lies past the row and must
// read as zeros. Compiled false when cols % 8 == 0: the guard cost lavapipe's f16 prefill GEMM
// 4-12% in same-run A/B runs (docs/benchmarks.md, Kernels).
override X_GUARD_HI: bool = true;

struct X8 { lo: vec4<f32>, hi: vec4<f32> }

/** Index of the 8-element block k8 of weight row `row`, counted in 8-element blocks. */
fn w_block(row: u32, k8: u32) -> u32 {
  // interleaved8: the blocks of rows 8g..8g+7 sit side by side, so 8 lanes on 8 rows read 8 adjacent blocks.
  if (params.w_interleaved != 0u) { return ((row >> 3u) * params.row_stride8 + k8) * 8u + (row & 7u); }
  return row * params.row_stride8 + k8;
}

/** Blocks between k8 and k8 + 1 of one weight row: w_block(row, k8) = w_block(row, 0) + k8 * w_block_step(). */
fn w_block_step() -> u32 {
  return select(1u, 8u, params.w_interleaved != 0u);
}

/** Weights [row, 8*k8 .. 8*k8+7] (the load_w8_block of the weights_* section in use). */
fn load_w8(row: u32, k8: u32) -> W8 {
  return load_w8_block(w_block(row, k8));
}

/** x[row, 8*k8 .. 8*k8+7], zero past the end of the row (weights there are zero padding, but x must not be NaN). */
fn load_x8(row: u32, k8: u32) -> X8 {
  let k = 8u * k8;
  let cols = params.cols;
  if (X_VEC4) {
    let i = (row * cols + k) / 4u;
    if (!X_GUARD_HI) { return X8(x4[i], x4[i + 1u]); }
    return X8(x4[i], select(vec4<f32>(0.0), x4[i + 1u], k + 4u < cols));
  }
  let base = row * cols + k;
  var v: array<f32, 8>;
  for (var j = 0u; j < 8u; j++) {
    v[j] = select(0.0, x[base + j], k + j < cols);
  }
  return X8(vec4<f32>(v[0], v[1], v[2], v[3]), vec4<f32>(v[4], v[5], v[6], v[7]));
}

fn dot8(a: X8, b: W8) -> f32 {
  return dot(a.lo, b.lo) + dot(a.hi, b.hi);
}

fn store_y(m: u32, n: u32, value: f32) {
  var v = value;
  if (params.has_bias != 0u) { v += bias[params.out_offset + n]; }
  y[m * params.y_stride + params.out_offset + n] = v;
}

//#section kernels
// ---- gemv: one x row (decode) ------------------------------------------------------------
override WG: u32 = 8;    // lanes per workgroup
override RPW: u32 = 4;   // weight rows per workgroup (<= MAX_RPW)

const MAX_RPW = 16u;
var<private> gemv_acc: array<f32, MAX_RPW>;
var<workgroup> gemv_partial: array<f32, WG * RPW>;

@compute @workgroup_size(WG)
fn gemv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  // 1. Each lane accumulates its share of k (blocks lid, lid + WG, ...) for RPW weight rows,
  //    loading each x block once for all of them.
  let row0 = (wid.x + wid.y * nwg.x) * RPW;
  let last_row = params.out_rows - 1u;
  for (var k8 = lid; k8 < params.row_stride8; k8 += WG) {
    let xv = load_x8(0u, k8);
    for (var r = 0u; r < RPW; r++) { gemv_acc[r] += dot8(xv, load_w8(min(row0 + r, last_row), k8)); }
  }
  // 2. Reduce the WG partial sums of each row through workgroup memory.
  for (var r = 0u; r < RPW; r++) { gemv_partial[r * WG + lid] = gemv_acc[r]; }
  workgroupBarrier();
  for (var r = lid; r < RPW; r += WG) {
    var s = 0.0;
    for (var l = 0u; l < WG; l++) { s += gemv_partial[r * WG + l]; }
    if (row0 + r < params.out_rows) { store_y(0u, row0 + r, s); }
  }
}

// ---- gemm_tile: portable tiled GEMM (no subgroups) -----------------------------------------
// 8x8 invocations, each a 4x4 block of y: tile 32 x rows x 32 weight rows.
var<private> tile_acc: array<f32, 16>;

@compute @workgroup_size(8, 8)
fn gemm_tile(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let n0 = wid.x * 32u + lid3.x * 4u;
  let m0 = wid.y * 32u + lid3.y * 4u;
  let last_row = params.out_rows - 1u;
  let last_m = params.num_rows - 1u;
  for (var k8 = 0u; k8 < params.row_stride8; k8++) {
    var wv: array<W8, 4>;
    for (var j = 0u; j < 4u; j++) { wv[j] = load_w8(min(n0 + j, last_row), k8); }
    for (var i = 0u; i < 4u; i++) {
      let xv = load_x8(min(m0 + i, last_m), k8);
      for (var j = 0u; j < 4u; j++) { tile_acc[i * 4u + j] += dot8(xv, wv[j]); }
    }
  }
  for (var i = 0u; i < 4u; i++) {
    for (var j = 0u; j < 4u; j++) {
      if (m0 + i < params.num_rows && n0 + j < params.out_rows) { store_y(m0 + i, n0 + j, tile_acc[i * 4u + j]); }
    }
  }
}

//#section subgroups
// requires: subgroups
// ---- gemm_sg: register-tiled GEMM sharing x across an 8-lane subgroup ----------------------
override TM: u32 = 1;   // x rows per lane: tile height 8 * TM
override TN: u32 = 2;   // weight rows per lane: tile width 8 * TN
// x rows of the last 8-row group in use (1..8; < 8 only with TM = 1): tile height 8 * (TM - 1) + MR.
// Lanes >= MR load no x (lavapipe skips a masked lane's load loop) and their rows cost no FMAs.
override MR: u32 = 8;

const MAX_SG_ACC = 128u; // 8 * TM * TN must not exceed this
var<private> sg_acc: array<f32, MAX_SG_ACC>;
var<private> sg_w: array<W8, 8>;

/** Adds x row (8i + src lane) of the tile, broadcast to every lane, times each of this lane's TN weight rows. */
fn sg_accumulate(xv: X8, src: u32, i: u32) {
  for (var j = 0u; j < TN; j++) { sg_acc[(i * 8u + src) * TN + j] += dot8(xv, sg_w[j]); }
}

@compute @workgroup_size(8)
fn gemm_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
  let n0 = wid.x * 8u * TN;
  let m0 = wid.y * (8u * (TM - 1u) + MR);
  let last_row = params.out_rows - 1u;
  let last_m = params.num_rows - 1u;
  for (var k8 = 0u; k8 < params.row_stride8; k8++) {
    for (var j = 0u; j < TN; j++) { sg_w[j] = load_w8(min(n0 + 8u * j + lane, last_row), k8); }
    for (var i = 0u; i < TM; i++) {
      var xv = X8(vec4<f32>(0.0), vec4<f32>(0.0));
      if (lane < MR) { xv = load_x8(min(m0 + 8u * i + lane, last_m), k8); }
      // subgroupBroadcast needs a constant lane, hence the unrolled list; MR is constant per pipeline.
      sg_accumulate(X8(subgroupBroadcast(xv.lo, 0u), subgroupBroadcast(xv.hi, 0u)), 0u, i);
      if (MR > 1u) { sg_accumulate(X8(subgroupBroadcast(xv.lo, 1u), subgroupBroadcast(xv.hi, 1u)), 1u, i); }
      if (MR > 2u) { sg_accumulate(X8(subgroupBroadcast(xv.lo, 2u), subgroupBroadcast(xv.hi, 2u)), 2u, i); }
      if (MR > 3u) { sg_accumulate(X8(subgroupBroadcast(xv.lo, 3u), subgroupBroadcast(xv.hi, 3u)), 3u, i); }
      if (MR > 4u) { sg_accumulate(X8(subgroupBroadcast(xv.lo, 4u), subgroupBroadcast(xv.hi, 4u)), 4u, i); }
      if (MR > 5u) { sg_accumulate(X8(subgroupBroadcast(xv.lo, 5u), subgroupBroadcast(xv.hi, 5u)), 5u, i); }
      if (MR > 6u) { sg_accumulate(X8(subgroupBroadcast(xv.lo, 6u), subgroupBroadcast(xv.hi, 6u)), 6u, i); }
      if (MR > 7u) { sg_accumulate(X8(subgroupBroadcast(xv.lo, 7u), subgroupBroadcast(xv.hi, 7u)), 7u, i); }
    }
  }
  for (var i = 0u; i < TM; i++) {
    for (var s = 0u; s < select(8u, MR, i + 1u == TM); s++) {
      let m = m0 + 8u * i + s;
      for (var j = 0u; j < TN; j++) {
        let n = n0 + 8u * j + lane;
        if (m < params.num_rows && n < params.out_rows) { store_y(m, n, sg_acc[(i * 8u + s) * TN + j]); }
      }
    }
  }
}

// ---- gemv_sg: one x row, lane per weight row, x shared by subgroupBroadcast -----------------
override RPL: u32 = 2;   // weight rows per lane: a workgroup owns 8 * RPL rows
var<private> gsg_acc: array<f32, 8>;
var<private> gsg_block: array<u32, 8>;

@compute @workgroup_size(8)
fn gemv_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
  _ = &x4; // keeps the binding list the same as the other entry points
  let row0 = (wid.x + wid.y * nwg.x) * 8u * RPL;
  let last_row = params.out_rows - 1u;
  // Each row's first block and the step between blocks, so the k loop is loads, an add and the
  // multiply-adds: the clamp, layout test and index math hoisted out of it gave +3-20 points of the
  // streaming read on lavapipe (docs/benchmarks.md, Kernels).
  let step = w_block_step();
  for (var j = 0u; j < RPL; j++) { gsg_block[j] = w_block(min(row0 + 8u * j + lane, last_row), 0u); }
  let cols = params.cols;
  // x past the row only exists when cols % 8 != 0 (x modes 0 and 1); with X_VEC4 && !X_GUARD_HI the
  // row has whole blocks and x is read unguarded.
  let x_guard = !X_VEC4 || X_GUARD_HI;
  for (var k8 = 0u; k8 < params.row_stride8; k8++) {
    // Each lane loads one of the 8 x values; broadcasts give every lane all 8.
    let k = 8u * k8 + lane;
    var xl: f32;
    if (x_guard) { xl = select(0.0, x[k], k < cols); } else { xl = x[k]; }
    let xv = X8(
      vec4<f32>(subgroupBroadcast(xl, 0u), subgroupBroadcast(xl, 1u), subgroupBroadcast(xl, 2u), subgroupBroadcast(xl, 3u)),
      vec4<f32>(subgroupBroadcast(xl, 4u), subgroupBroadcast(xl, 5u), subgroupBroadcast(xl, 6u), subgroupBroadcast(xl, 7u)));
    let offset = step * k8;
    for (var j = 0u; j < RPL; j++) { gsg_acc[j] += dot8(xv, load_w8_block(gsg_block[j] + offset)); }
  }
  for (var j = 0u; j < RPL; j++) {
    let n = row0 + 8u * j + lane;
    if (n < params.out_rows) { store_y(0u, n, gsg_acc[j]); }
  }
}

//#section q4_subgroups
// requires: subgroups
// ---- gemv_q4_sg: one x row over 4-bit 'interleaved8' weights ----------------------------------
// gemv_sg's per-block load_w8_block costs as much per 8 weights as an f16 block (a word, a
// scale/zero word and the dequantization), so at a quarter of the bytes it ran at ~25% of the
// streaming read on lavapipe. Here each load is a vec4<u32>: 4 rows' words of one block, which
// 'interleaved8' stores side by side (rows 4h..4h+3 of a row group at words 4h..4h+3), so loads
// move 16 bytes like the streaming read does; each scale/zero word is loaded once per group; and
// the zero comes off once per group: sum x (q - z) = sum x q - z sum x, with the nibbles converted
// as small integers (exact) and the group's x sum shared by every row. Lane l owns the 4-row
// quads (l & 1) of row groups 4i + (l >> 1), QPL of them; a workgroup owns 32 * QPL rows.
@group(0) @binding(2) var<storage, read> w_quads: array<vec4<u32>>;
@group(0) @binding(6) var<storage, read> w_scale_zero_quads: array<vec4<u32>>;

override QPL: u32 = 2;   // 4-row quads per lane (1..4)
const MAX_QPL = 4u;
var<private> gq_word: array<u32, MAX_QPL>;   // vec4 index of each quad's block 0
var<private> gq_sz: array<u32, MAX_QPL>;     // vec4 index of each quad's group 0 scale/zero words
var<private> gq_acc: array<vec4<f32>, MAX_QPL>;
var<private> gq_sum: array<vec4<f32>, MAX_QPL>;
var<private> gq_scale: array<vec4<f32>, MAX_QPL>;
var<private> gq_zero: array<vec4<f32>, MAX_QPL>;

/** sum_j x[j] * q[j] over the 8 nibbles of one block word (exact integer weights). */
fn q4_dot_nibbles(q: u32, xlo: vec4<f32>, xhi: vec4<f32>) -> f32 {
  let lo = vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(q, q >> 4u, q >> 8u, q >> 12u) & vec4<u32>(15u)));
  let hi = vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(q >> 16u, q >> 20u, q >> 24u, q >> 28u) & vec4<u32>(15u)));
  return dot(xlo, lo) + dot(xhi, hi);
}

@compute @workgroup_size(8)
fn gemv_q4_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
  _ = &x4; // keeps the binding list the same as the other entry points
  let group0 = (wid.x + wid.y * nwg.x) * 4u * QPL; // first row group (8 rows) of this workgroup
  let last_group = (params.out_rows - 1u) >> 3u;
  let gshift = params.q4_gshift;
  let groups = params.row_stride8 >> gshift;
  let half = lane & 1u;
  for (var i = 0u; i < QPL; i++) {
    // Clamped: past the last row group a lane re-reads it and stores nothing.
    let g8 = min(group0 + 4u * i + (lane >> 1u), last_group);
    gq_word[i] = g8 * params.row_stride8 * 2u + half;
    gq_sz[i] = g8 * groups * 2u + half;
  }
  for (var g = 0u; g < groups; g++) {
    for (var i = 0u; i < QPL; i++) {
      let sz = w_scale_zero_quads[gq_sz[i] + 2u * g];
      gq_scale[i] = vec4<f32>(unpack2x16float(sz.x).x, unpack2x16float(sz.y).x, unpack2x16float(sz.z).x, unpack2x16float(sz.w).x);
      gq_zero[i] = vec4<f32>(bitcast<vec4<i32>>((sz >> vec4<u32>(16u)) & vec4<u32>(0xFFu)));
      gq_sum[i] = vec4<f32>(0.0);
    }
    var x_sum = 0.0;
    for (var k8 = g << gshift; k8 < (g + 1u) << gshift; k8++) {
      // cols is a multiple of 8 for 4-bit weights: x needs no guard.
      let xl = x[8u * k8 + lane];
      let xlo = vec4<f32>(subgroupBroadcast(xl, 0u), subgroupBroadcast(xl, 1u), subgroupBroadcast(xl, 2u), subgroupBroadcast(xl, 3u));
      let xhi = vec4<f32>(subgroupBroadcast(xl, 4u), subgroupBroadcast(xl, 5u), subgroupBroadcast(xl, 6u), subgroupBroadcast(xl, 7u));
      x_sum += dot(xlo + xhi, vec4<f32>(1.0));
      for (var i = 0u; i < QPL; i++) {
        let q = w_quads[gq_word[i] + 2u * k8];
        gq_sum[i] += vec4<f32>(q4_dot_nibbles(q.x, xlo, xhi), q4_dot_nibbles(q.y, xlo, xhi), q4_dot_nibbles(q.z, xlo, xhi), q4_dot_nibbles(q.w, xlo, xhi));
      }
    }
    for (var i = 0u; i < QPL; i++) { gq_acc[i] += (gq_sum[i] - gq_zero[i] * x_sum) * gq_scale[i]; }
  }
  for (var i = 0u; i < QPL; i++) {
    let row = (group0 + 4u * i + (lane >> 1u)) * 8u + 4u * half;
    for (var c = 0u; c < 4u; c++) {
      if (row + c < params.out_rows) { store_y(0u, row + c, gq_acc[i][c]); }
    }
  }
}
