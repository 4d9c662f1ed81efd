// RMSNorm as HF Llama computes it in f32: out = x / sqrt(mean(x^2) + eps) * weight.
// Entry `norm`:     0 x: array<f32> (read) [num_rows, dim]; 1 weight: array<f32> (read) [dim];
//                   2 out: array<f32> (read_write) [num_rows, dim]; 3 params: uniform.
// Entry `add_norm`: 0 x: array<f32> (read); 1 residual: array<f32> (read_write), residual += x is
//                   written back; 2 weight; 3 out = rmsnorm(residual) * weight; 4 params: uniform.
//                   out must not alias x or residual.
// Workgroup: 256 threads per row (strided loop over dim, tree reduction in workgroup memory); the grid
//   is (num_rows) split over x and y past 65535 rows.
// Tested against: a float64 loop in test/gpu/pointwise.test.ts (dims 1, 7, 64, 769, 4096; rows 1, 3, 33).

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

const WG: u32 = 256u;
var<workgroup> partial: array<f32, 256>;

/** 1 / sqrt(mean + eps) from every thread's partial sum of squares (uniform control flow). */
fn inv_rms(lid: u32, sum_sq: f32, dim: u32, eps: f32) -> f32 {
  partial[lid] = sum_sq;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) { partial[lid] = partial[lid] + partial[lid + s]; }
    workgroupBarrier();
  }
  return 1.0 / sqrt(partial[0] / f32(dim) + eps);
}

@compute @workgroup_size(256)
fn norm(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid3: vec3u) {
  let row = wid.x + wid.y * nwg.x;
  let lid = lid3.x;
  let dim = params.dim;
  // Rows past num_rows (2-D grid padding) still join the barriers, then write nothing.
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

@compute @workgroup_size(256)
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
