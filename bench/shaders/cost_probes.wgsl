// Cost probes for bench/floor.ts: loops that each do one kind of work ITERS times, so a same-run
// comparison tells what the adapter charges per load path and per arithmetic operation. On lavapipe
// these costs, not the kernels' shapes, bound the matmul ratios the kernel and engine issues ask for
// (docs/benchmarks.md, "What lavapipe charges").
//
// Bindings (group 0), the same for every entry point (each one touches all of them so that the
// 'auto' layouts match):
//   0 src:   array<vec4<u32>> (read), at least HOT_WORDS * 8 words
//   1 src32: the same buffer as array<u32> (read)
//   2 ubo:   array<vec4<u32>, 4096> (uniform, 64 KiB)
//   3 tex:   texture_2d<u32>, rgba32uint, HOT_WORDS x 8 texels
//   4 out:   array<vec4<u32>> (write), one per invocation: keeps every loaded value alive
// Workgroup: 8 lanes (one lavapipe subgroup). Each workgroup reads one of 8 rows of HOT_WORDS
// 16-byte words, so the data stays in cache: the probes measure instructions, not DRAM.
// Tested: test/gpu/cost-probes.test.ts (storage, uniform and texture probes load the same words as a
// CPU sum; the timing-only probes compile and run).

@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> src32: array<u32>;
@group(0) @binding(2) var<uniform> ubo: array<vec4<u32>, 4096>;
@group(0) @binding(3) var tex: texture_2d<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<u32>>;

override ITERS: u32 = 2048;
const HOT_WORDS = 4096u;

fn touch_all() {
  _ = &src; _ = &src32; _ = &ubo; _ = tex;
}

/** Word of lane `lane` in iteration i within a row: lanes interleaved, two words per lane per iteration. */
fn column(i: u32, lane: u32) -> u32 {
  return (16u * i + 2u * lane) % HOT_WORDS;
}

/** The same word in workgroup wid's row of the storage copy. */
fn word(wid: u32, i: u32, lane: u32) -> u32 {
  return (wid % 8u) * HOT_WORDS + column(i, lane);
}

@compute @workgroup_size(8)
fn empty_loop(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  touch_all();
  var a = lane;
  for (var i = 0u; i < ITERS; i++) { a = a ^ i; }
  out[wid.x * 8u + lane] = vec4<u32>(a);
}

/** Eight independent multiply-add chains (two vec4s): what a matmul's inner product costs per step. */
@compute @workgroup_size(8)
fn mul_add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  touch_all();
  var a = vec4<f32>(f32(lane));
  var c = a + 1.0;
  let b = bitcast<f32>(src32[0] | 0x3f800000u);
  for (var i = 0u; i < ITERS; i++) { a = a * b + 0.5; c = c * b + 0.25; }
  out[wid.x * 8u + lane] = bitcast<vec4<u32>>(a + c);
}

@compute @workgroup_size(8)
fn ssbo_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  touch_all();
  var a = vec4<u32>(0u);
  var b = vec4<u32>(0u);
  for (var i = 0u; i < ITERS; i++) {
    let w = word(wid.x, i, lane);
    a += src[w];
    b += src[w + 1u];
  }
  out[wid.x * 8u + lane] = a + b;
}

@compute @workgroup_size(8)
fn ssbo_u32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  touch_all();
  var a = 0u;
  var b = 0u;
  for (var i = 0u; i < ITERS; i++) {
    let w = 4u * word(wid.x, i, lane);
    a += src32[w];
    b += src32[w + 4u];
  }
  out[wid.x * 8u + lane] = vec4<u32>(a, b, 0u, 0u);
}

@compute @workgroup_size(8)
fn ubo_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  touch_all();
  var a = vec4<u32>(0u);
  var b = vec4<u32>(0u);
  for (var i = 0u; i < ITERS; i++) {
    let w = column(i, lane);
    a += ubo[w];
    b += ubo[w + 1u];
  }
  out[wid.x * 8u + lane] = a + b;
}

@compute @workgroup_size(8)
fn texture_rgba32uint(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  touch_all();
  var a = vec4<u32>(0u);
  var b = vec4<u32>(0u);
  let row = i32(wid.x % 8u);
  for (var i = 0u; i < ITERS; i++) {
    let w = i32(column(i, lane));
    a += textureLoad(tex, vec2<i32>(w, row), 0);
    b += textureLoad(tex, vec2<i32>(w + 1, row), 0);
  }
  out[wid.x * 8u + lane] = a + b;
}

/** One store per invocation: dispatched many times over, it measures the cost of a dispatch. */
@compute @workgroup_size(8)
fn tiny(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  touch_all();
  out[(wid.x * 8u + lane) % 4096u] = vec4<u32>(lane);
}
