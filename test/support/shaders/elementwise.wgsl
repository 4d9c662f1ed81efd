// Elementwise kernels on f32 vectors.
// Bindings (group 0): 0 a: array<f32> (read), 1 b: array<f32> (read), 2 out: array<f32> (write), 3 params: uniform.
// Workgroup: 256 threads, one element each; the grid may be 2-D when n exceeds 65535 * 256.
// Tested against: plain TS loops in test/gpu/elementwise.test.ts.

struct Params { n: u32, row_stride: u32, _pad0: u32, _pad1: u32 }

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= params.n) { return; }
  out[i] = a[i] + b[i];
}
