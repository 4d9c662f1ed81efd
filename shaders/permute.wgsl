// Column gather for activation-ordered (GPTQ desc_act) linears: the loader sorts such a linear's input
// columns so that its quantization groups are contiguous and records the order as perm, so the reordered
// weight W' needs its input reordered alike before the matmul: y = W' x', x'[r, j] = x[r, perm[j]].
// Bindings (group 0): 0 x: array<f32> (read) [num_rows, cols]; 1 perm: array<u32> (read) [cols], a
//   permutation of 0..cols-1 (checked on the host: common/q4.ts checkQ4Matrix, Q4Matrix.inputPerm);
//   2 out: array<f32> (read_write) [num_rows, cols], rows past num_rows untouched; 3 params: uniform.
//   out[r * cols + j] = x[r * cols + perm[j]] (a copy: bit-exact).
// Workgroup: WG lanes (override) along a row's output columns, one column each, striding by the grid's
//   lanes when cols outgrows 65535 workgroups; the grid is (column blocks, rows), rows split over y and z
//   past 65535 (2-D, so no per-element u32 division, which lavapipe scalarises). Writes are coalesced,
//   reads follow perm (within one row, so they stay in the row's cache lines).
// Tested against: a plain-TS gather in test/gpu/permute.test.ts (identity, reversed and random
//   permutations, odd shapes, a grid split over z, sub-range bindings; bit-exact, rows and bytes outside
//   the output untouched).

struct Params {
  num_rows: u32,
  cols: u32,
  _pad0: u32,
  _pad1: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> perm: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn gather_columns(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let r = gid.y + gid.z * nwg.y;
  if (r >= params.num_rows) { return; }
  let cols = params.cols;
  let row = r * cols;
  for (var j = gid.x; j < cols; j += nwg.x * WG) {
    out[row + j] = x[row + perm[j]];
  }
}
