// Paged KV-cache write: copies each new token's k and v heads out of the fused qkv activation into the
// cache slot the KV manager gave it.
// Bindings (group 0): 0 qkv: array<f32> (read) [numTokens, row_stride], k heads at t*row_stride + k_offset,
//   v heads at t*row_stride + v_offset; 1 k_cache, 2 v_cache: array<f32> (read_write), each
//   [numBlocks, blockSize, num_kv_heads, head_dim], slot s of kv head h at (s*num_kv_heads + h)*head_dim;
//   3 slot_mapping: array<u32> [numTokens] (0xFFFFFFFF = padding token, not written); 4 params: uniform.
//   `write_vec4` sees qkv and the caches as array<vec4f>, with row_stride, k_offset, v_offset and
//   row_len given in vec4s by the host (it needs all of them % 4 == 0).
// Workgroup: WG lanes (override) along a token's k/v row (num_kv_heads * head_dim elements), striding by
//   the grid's lanes, each copying k and v; the grid is (column groups, tokens), tokens split over y and
//   z past 65535 (2-D, so no per-element u32 division, which lavapipe scalarises).
// Tested against: a plain-TS scatter in test/gpu/kv-cache.test.ts (written slots match, all others
//   untouched; vec4 and scalar entries).

override WG: u32 = 64u;

struct Params {
  num_tokens: u32,
  row_stride: u32,
  k_offset: u32,
  v_offset: u32,
  row_len: u32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(2) var<storage, read_write> v_cache: array<f32>;
@group(0) @binding(3) var<storage, read> slot_mapping: array<u32>;
@group(0) @binding(4) var<uniform> params: Params;

@group(0) @binding(0) var<storage, read> qkv4: array<vec4f>;
@group(0) @binding(1) var<storage, read_write> k_cache4: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> v_cache4: array<vec4f>;

const PADDING_SLOT: u32 = 0xFFFFFFFFu;

@compute @workgroup_size(WG)
fn write(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = gid.y + gid.z * nwg.y;
  if (t >= params.num_tokens) { return; }
  let slot = slot_mapping[t];
  if (slot == PADDING_SLOT) { return; }
  let row_len = params.row_len;
  let src = t * params.row_stride;
  let dst = slot * row_len;
  for (var i = gid.x; i < row_len; i += nwg.x * WG) {
    k_cache[dst + i] = qkv[src + params.k_offset + i];
    v_cache[dst + i] = qkv[src + params.v_offset + i];
  }
}

@compute @workgroup_size(WG)
fn write_vec4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = gid.y + gid.z * nwg.y;
  if (t >= params.num_tokens) { return; }
  let slot = slot_mapping[t];
  if (slot == PADDING_SLOT) { return; }
  let row_len = params.row_len;
  let src = t * params.row_stride;
  let dst = slot * row_len;
  for (var i = gid.x; i < row_len; i += nwg.x * WG) {
    k_cache4[dst + i] = qkv4[src + params.k_offset + i];
    v_cache4[dst + i] = qkv4[src + params.v_offset + i];
  }
}
