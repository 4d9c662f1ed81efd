// Streaming-read baseline for bench/kernels.ts: reads every 16-byte word of a buffer once and sums
// it, so a matmul's bandwidth can be compared with the best this device does on the same bytes.
// Bindings (group 0): 0 src: array<vec4<u32>> (read), 1 out: array<vec4<u32>> (write, one per
//   invocation; keeps the reads alive), 2 params: uniform { num_words, words_per_group }.
// Workgroup: WG lanes (override, 8 = one lavapipe subgroup) interleaved over a contiguous block of
//   words_per_group words, two words per lane per iteration (the access pattern of the GEMV kernel).
// Tested: bench-only; test/gpu/matmul.test.ts checks its sum against a TS sum.

struct Params { num_words: u32, words_per_group: u32, _pad0: u32, _pad1: u32 }

@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<u32>>;
@group(0) @binding(2) var<uniform> params: Params;

override WG: u32 = 8;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let group = wid.x + wid.y * nwg.x;
  let begin = group * params.words_per_group;
  let end = min(begin + params.words_per_group, params.num_words);
  var a = vec4<u32>(0u);
  var b = vec4<u32>(0u);
  var i = begin + 2u * lid;
  for (; i + 1u < end; i += 2u * WG) {
    a += src[i];
    b += src[i + 1u];
  }
  if (i < end) { a += src[i]; }
  out[group * WG + lid] = a + b;
}
