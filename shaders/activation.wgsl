// SwiGLU activation of a fused gate/up projection: out[r, i] = silu(gate[r, i]) * up[r, i], where
// silu(g) = g / (1 + exp(-g)) (HF's x * sigmoid(x); g -> -inf gives -0, not NaN).
// Bindings (group 0): 0 gate_up: array<f32> (read) [num_rows, 2 * intermediate], gate in columns
//   [0, I), up in [I, 2I); 1 out: array<f32> (read_write) [num_rows, intermediate]; 2 params: uniform.
//   `silu_and_mul_vec4` sees both as array<vec4f> and needs intermediate % 4 == 0.
// Workgroup: WG lanes (override) along a row's columns (vec4 columns in the vec4 entry), striding by
//   the row's lane count, so each lane handles several; the grid is (column groups, rows), rows split
//   over y and z past 65535. 2-D, because a per-element u32 division is scalarised on lavapipe.
// Tested against: a float64 loop in test/gpu/pointwise.test.ts (odd sizes and multiples of 4,
//   large |gate|).

override WG: u32 = 64u;

struct Params { num_rows: u32, intermediate: u32, _pad0: u32, _pad1: u32 }

@group(0) @binding(0) var<storage, read> gate_up: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@group(0) @binding(0) var<storage, read> gate_up4: array<vec4f>;
@group(0) @binding(1) var<storage, read_write> out4: array<vec4f>;

@compute @workgroup_size(WG)
fn silu_and_mul(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let r = gid.y + gid.z * nwg.y;
  if (r >= params.num_rows) { return; }
  let inter = params.intermediate;
  let gate_base = 2u * inter * r;
  for (var i = gid.x; i < inter; i += nwg.x * WG) {
    let g = gate_up[gate_base + i];
    out[inter * r + i] = g / (1.0 + exp(-g)) * gate_up[gate_base + inter + i];
  }
}

@compute @workgroup_size(WG)
fn silu_and_mul_vec4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let r = gid.y + gid.z * nwg.y;
  if (r >= params.num_rows) { return; }
  let inter4 = params.intermediate / 4u;
  let gate_base = 2u * inter4 * r;
  for (var i = gid.x; i < inter4; i += nwg.x * WG) {
    let g = gate_up4[gate_base + i];
    out4[inter4 * r + i] = g / (1.0 + exp(-g)) * gate_up4[gate_base + inter4 + i];
  }
}
