// Paged KV-cache write: copies each new token's k and v heads out of the fused qkv activation into the
// cache slot the KV manager gave it.
// Bindings (group 0): 0 qkv: array<f32> (read) [numTokens, row_stride], k heads at t*row_stride + k_offset,
//   v heads at t*row_stride + v_offset; 1 k_cache, 2 v_cache: array<f32> (read_write), each
//   [numBlocks, blockSize, num_kv_heads, head_dim], slot s of kv head h at (s*num_kv_heads + h)*head_dim;
//   3 slot_mapping: array<u32> [numTokens] (0xFFFFFFFF = padding token, not written); 4 params: uniform.
// Workgroup: 64 threads, one (token, kv head, dim) element each, copying both k and v; the grid may be 2-D.
// Tested against: a plain-TS scatter in test/gpu/kv-cache.test.ts (written slots match, all others untouched).

struct Params {
  num_tokens: u32,
  row_stride: u32,
  k_offset: u32,
  v_offset: u32,
  num_kv_heads: u32,
  head_dim: u32,
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(2) var<storage, read_write> v_cache: array<f32>;
@group(0) @binding(3) var<storage, read> slot_mapping: array<u32>;
@group(0) @binding(4) var<uniform> params: Params;

const PADDING_SLOT: u32 = 0xFFFFFFFFu;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let idx = gid.x + gid.y * nwg.x * 64u;
  let row_len = params.num_kv_heads * params.head_dim;
  if (idx >= params.num_tokens * row_len) { return; }
  let t = idx / row_len;
  let within = idx % row_len; // kv head * head_dim + dim
  let slot = slot_mapping[t];
  if (slot == PADDING_SLOT) { return; }
  let src = t * params.row_stride + within;
  let dst = slot * row_len + within;
  k_cache[dst] = qkv[src + params.k_offset];
  v_cache[dst] = qkv[src + params.v_offset];
}
