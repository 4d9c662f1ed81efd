// Paged KV-cache write: copies each new token's k and v heads out of the fused qkv activation into the
// cache slot the KV manager gave it.
// Bindings (group 0): 0 qkv: array<f32> (read) [numTokens, row_stride], k heads at t*row_stride + k_offset,
//   v heads at t*row_stride + v_offset; 1 k_cache, 2 v_cache: array<f32> (read_write), each
//   [numBlocks, blockSize, num_kv_heads, head_dim], slot s of kv head h at (s*num_kv_heads + h)*head_dim;
//   3 slot_mapping: array<u32> [numTokens] (0xFFFFFFFF = padding token, not written); 4 params: uniform.
//   `write_vec4` sees qkv and the caches as array<vec4f>, with row_stride, k_offset, v_offset and
//   row_len given in vec4s by the host (it needs all of them % 4 == 0).
//   f16 cache (kvCacheDtype 'f16'): 1 k_cache_h, 2 v_cache_h: array<u32>, element e of the cache is half
//   e & 1 of word e >> 1 (pack2x16float, low half first). `write_f16` copies one word (two halves) per
//   step with row_stride, offsets in f32 elements and row_len in words; `write_f16_vec4` copies a vec4
//   of qkv into a vec2<u32> of the cache, with the same vec4 units as `write_vec4`.
// Workgroup: WG lanes (override) along a token's k/v row (num_kv_heads * head_dim elements), striding by
//   the grid's lanes, each copying k and v; the grid is (column groups, tokens), tokens split over y and
//   z past 65535 (2-D, so no per-element u32 division, which lavapipe scalarises).
// Tested against: a plain-TS scatter in test/gpu/kv-cache.test.ts (written slots match, all others
//   untouched; vec4 and scalar entries), and for f16 against the same scatter of f16-rounded values
//   (bit-exact).

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

@group(0) @binding(1) var<storage, read_write> k_cache_h: array<u32>;
@group(0) @binding(2) var<storage, read_write> v_cache_h: array<u32>;
@group(0) @binding(1) var<storage, read_write> k_cache_h2: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read_write> v_cache_h2: array<vec2<u32>>;

const PADDING_SLOT: u32 = 0xFFFFFFFFu;

/** Token t's cache slot; PADDING_SLOT (write nothing) for padding entries and tokens past num_tokens. */
fn slot_of(t: u32) -> u32 {
  if (t >= params.num_tokens) { return PADDING_SLOT; }
  return slot_mapping[t];
}

@compute @workgroup_size(WG)
fn write(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = gid.y + gid.z * nwg.y;
  let slot = slot_of(t);
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
  let slot = slot_of(t);
  if (slot == PADDING_SLOT) { return; }
  let row_len = params.row_len;
  let src = t * params.row_stride;
  let dst = slot * row_len;
  for (var i = gid.x; i < row_len; i += nwg.x * WG) {
    k_cache4[dst + i] = qkv4[src + params.k_offset + i];
    v_cache4[dst + i] = qkv4[src + params.v_offset + i];
  }
}

fn pack4(v: vec4f) -> vec2<u32> {
  return vec2<u32>(pack2x16float(v.xy), pack2x16float(v.zw));
}

@compute @workgroup_size(WG)
fn write_f16(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = gid.y + gid.z * nwg.y;
  let slot = slot_of(t);
  if (slot == PADDING_SLOT) { return; }
  let words = params.row_len;
  let k_src = t * params.row_stride + params.k_offset;
  let v_src = t * params.row_stride + params.v_offset;
  let dst = slot * words;
  for (var i = gid.x; i < words; i += nwg.x * WG) {
    k_cache_h[dst + i] = pack2x16float(vec2f(qkv[k_src + 2u * i], qkv[k_src + 2u * i + 1u]));
    v_cache_h[dst + i] = pack2x16float(vec2f(qkv[v_src + 2u * i], qkv[v_src + 2u * i + 1u]));
  }
}

@compute @workgroup_size(WG)
fn write_f16_vec4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = gid.y + gid.z * nwg.y;
  let slot = slot_of(t);
  if (slot == PADDING_SLOT) { return; }
  let row_len = params.row_len;
  let src = t * params.row_stride;
  let dst = slot * row_len;
  for (var i = gid.x; i < row_len; i += nwg.x * WG) {
    k_cache_h2[dst + i] = pack4(qkv4[src + params.k_offset + i]);
    v_cache_h2[dst + i] = pack4(qkv4[src + params.v_offset + i]);
  }
}
