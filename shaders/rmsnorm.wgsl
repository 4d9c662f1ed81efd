// RMSNorm as HF Llama computes it in f32: out = x / sqrt(mean(x^2) + eps) * weight.
//
// Assembled by src/kernels/rmsnorm.ts from sections (`//#section <name>` lines): exactly one
// `reduce_*` section (how a workgroup sums its lanes' partial sums), then `kernels`.
//   reduce_workgroup: tree reduction in workgroup memory, any WG (a power of two); portable.
//   reduce_subgroup:  subgroupAdd, WG must be 8 and the device's subgroups >= 8 lanes (one subgroup
//                     per workgroup, no barrier). Lavapipe runs a workgroup as SIMD-8 fibers and every
//                     barrier switches between all of them, so 256-wide trees cost ~6x a subgroupAdd there.
//
// Entry `norm`:     0 x: array<f32> (read) [num_rows, dim]; 1 weight: array<f32> (read) [dim];
//                   2 out: array<f32> (read_write) [num_rows, dim]; 3 params: uniform.
// Entry `add_norm`: 0 x: array<f32> (read); 1 residual: array<f32> (read_write), residual += x is
//                   written back; 2 weight; 3 out = rmsnorm(residual) * weight; 4 params: uniform.
//                   out must not alias x or residual.
// `norm_vec4` / `add_norm_vec4`: the same bindings seen as array<vec4f>; only for dim % 4 == 0.
// Entry `head_norm`: per-head RMSNorm in place (Qwen3's q_norm/k_norm). 0 x: array<f32> (read_write),
//                   token t's heads h < heads at t*row_stride + h*dim; 1 weight: array<f32> [2, dim]
//                   (row 0 for heads h < q_heads, row 1 for the rest); 2 params: uniform. One
//                   workgroup row per (token, head); each lane rereads only the elements it wrote.
// Workgroup: WG (override, default 256) threads per row, strided over dim; the grid is (num_rows)
//   split over x and y past 65535 rows. The kernel picks WG 256 on GPUs, 8 on CPU adapters.
// Tested against: a float64 loop in test/gpu/pointwise.test.ts (dims 1, 7, 64, 769, 4096; rows 1, 3,
//   33), every path (256-wide tree, 8-wide tree, subgroup; scalar and vec4); head_norm in
//   test/gpu/rotary.test.ts (odd head dims, strides and head counts).

//#section reduce_workgroup
var<workgroup> partial: array<f32, WG>;

/** Sum over the workgroup of every lane's v (uniform control flow). */
fn workgroup_sum(lid: u32, v: f32) -> f32 {
  partial[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) { partial[lid] = partial[lid] + partial[lid + s]; }
    workgroupBarrier();
  }
  return partial[0];
}

//#section reduce_subgroup
// requires: subgroups
/** Sum over the workgroup, which is one subgroup (WG == 8 <= subgroup size). */
fn workgroup_sum(lid: u32, v: f32) -> f32 {
  return subgroupAdd(v);
}

//#section kernels
override WG: u32 = 256u;

struct Params { num_rows: u32, dim: u32, eps: f32, _pad: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

// add_norm's bindings (only that entry point uses them).
@group(0) @binding(1) var<storage, read_write> residual: array<f32>;
@group(0) @binding(2) var<storage, read> weight_an: array<f32>;
@group(0) @binding(3) var<storage, read_write> out_an: array<f32>;
@group(0) @binding(4) var<uniform> params_an: Params;

// The vec4 entry points' views of the same bindings.
@group(0) @binding(0) var<storage, read> x4: array<vec4f>;
@group(0) @binding(1) var<storage, read> weight4: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> out4: array<vec4f>;
@group(0) @binding(1) var<storage, read_write> residual4: array<vec4f>;
@group(0) @binding(2) var<storage, read> weight4_an: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> out4_an: array<vec4f>;

fn inv_rms(lid: u32, sum_sq: f32, dim: u32, eps: f32) -> f32 {
  return 1.0 / sqrt(workgroup_sum(lid, sum_sq) / f32(dim) + eps);
}

@compute @workgroup_size(WG)
fn norm(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid3: vec3u) {
  let row = wid.x + wid.y * nwg.x;
  let lid = lid3.x;
  let dim = params.dim;
  // Rows past num_rows (2-D grid padding) still join the reduction, then write nothing.
  let live = row < params.num_rows;
  let base = select(0u, row * dim, live);
  var sum_sq = 0.0;
  if (live) {
    for (var i = lid; i < dim; i = i + WG) { let v = x[base + i]; sum_sq = sum_sq + v * v; }
  }
  let scale = inv_rms(lid, sum_sq, dim, params.eps);
  if (!live) { return; }
  for (var i = lid; i < dim; i = i + WG) { out[base + i] = (x[base + i] * scale) * weight[i]; }
}

@compute @workgroup_size(WG)
fn add_norm(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid3: vec3u) {
  let row = wid.x + wid.y * nwg.x;
  let lid = lid3.x;
  let dim = params_an.dim;
  let live = row < params_an.num_rows;
  let base = select(0u, row * dim, live);
  var sum_sq = 0.0;
  if (live) {
    for (var i = lid; i < dim; i = i + WG) {
      let r = residual[base + i] + x[base + i];
      residual[base + i] = r;
      sum_sq = sum_sq + r * r;
    }
  }
  let scale = inv_rms(lid, sum_sq, dim, params_an.eps);
  if (!live) { return; }
  // Each thread rereads only the residual elements it wrote itself.
  for (var i = lid; i < dim; i = i + WG) { out_an[base + i] = (residual[base + i] * scale) * weight_an[i]; }
}

@compute @workgroup_size(WG)
fn norm_vec4(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid3: vec3u) {
  let row = wid.x + wid.y * nwg.x;
  let lid = lid3.x;
  let dim4 = params.dim / 4u;
  let live = row < params.num_rows;
  let base = select(0u, row * dim4, live);
  var sum_sq = 0.0;
  if (live) {
    for (var i = lid; i < dim4; i = i + WG) { let v = x4[base + i]; sum_sq = sum_sq + dot(v, v); }
  }
  let scale = inv_rms(lid, sum_sq, params.dim, params.eps);
  if (!live) { return; }
  for (var i = lid; i < dim4; i = i + WG) { out4[base + i] = (x4[base + i] * scale) * weight4[i]; }
}

@compute @workgroup_size(WG)
fn add_norm_vec4(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid3: vec3u) {
  let row = wid.x + wid.y * nwg.x;
  let lid = lid3.x;
  let dim4 = params_an.dim / 4u;
  let live = row < params_an.num_rows;
  let base = select(0u, row * dim4, live);
  var sum_sq = 0.0;
  if (live) {
    for (var i = lid; i < dim4; i = i + WG) {
      let r = residual4[base + i] + x4[base + i];
      residual4[base + i] = r;
      sum_sq = sum_sq + dot(r, r);
    }
  }
  let scale = inv_rms(lid, sum_sq, params_an.dim, params_an.eps);
  if (!live) { return; }
  for (var i = lid; i < dim4; i = i + WG) { out4_an[base + i] = (residual4[base + i] * scale) * weight4_an[i]; }
}

struct HeadNormParams { num_tokens: u32, heads: u32, dim: u32, eps: f32, row_stride: u32, q_heads: u32, _pad0: u32, _pad1: u32 }

// head_norm's bindings (only that entry point uses them).
@group(0) @binding(0) var<storage, read_write> x_hn: array<f32>;
@group(0) @binding(1) var<storage, read> weight_hn: array<f32>;
@group(0) @binding(2) var<uniform> params_hn: HeadNormParams;

@compute @workgroup_size(WG)
fn head_norm(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid3: vec3u) {
  let row = wid.x + wid.y * nwg.x;
  let lid = lid3.x;
  let dim = params_hn.dim;
  let heads = params_hn.heads;
  let live = row < params_hn.num_tokens * heads;
  let t = row / heads;
  let h = row % heads;
  let base = select(0u, t * params_hn.row_stride + h * dim, live);
  let w = select(0u, dim, h >= params_hn.q_heads);
  var sum_sq = 0.0;
  if (live) {
    for (var i = lid; i < dim; i = i + WG) { let v = x_hn[base + i]; sum_sq = sum_sq + v * v; }
  }
  let scale = inv_rms(lid, sum_sq, dim, params_hn.eps);
  if (!live) { return; }
  for (var i = lid; i < dim; i = i + WG) { x_hn[base + i] = (x_hn[base + i] * scale) * weight_hn[w + i]; }
}
