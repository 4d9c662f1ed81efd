// SwiGLU activation of a fused gate/up projection: out[r, i] = silu(gate[r, i]) * up[r, i], where
// silu(g) = g / (1 + exp(-g)) (HF's x * sigmoid(x); g -> -inf gives -0, not NaN).
// Bindings (group 0): 0 gate_up: array<f32> (read) [num_rows, 2 * intermediate], gate in columns
//   [0, I), up in [I, 2I); 1 out: array<f32> (read_write) [num_rows, intermediate]; 2 params: uniform.
// Workgroup: 256 threads, one output element each; the grid may be 2-D past 65535 workgroups.
// Tested against: a float64 loop in test/gpu/pointwise.test.ts (odd sizes, large |gate|).

struct Params { num_rows: u32, intermediate: u32, _pad0: u32, _pad1: u32 }

@group(0) @binding(0) var<storage, read> gate_up: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(256)
fn silu_and_mul(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let idx = gid.x + gid.y * nwg.x * 256u;
  let inter = params.intermediate;
  if (idx >= params.num_rows * inter) { return; }
  let r = idx / inter;
  let i = idx - r * inter;
  let g = gate_up[2u * inter * r + i];
  let up = gate_up[2u * inter * r + inter + i];
  out[idx] = g / (1.0 + exp(-g)) * up;
}
