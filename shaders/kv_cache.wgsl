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
//   Quantized cache (kvCacheDtype 'int8' / 'int4', LMDeploy's quant_policy 8 / 4): `write_quant` with the
//   BITS override (the shard has already rotated k by a Hadamard matrix, kernels/hadamard.ts; this
//   kernel quantizes whatever k it is given). 1 k_cache_h, 2 v_cache_h: array<u32> of codes, element
//   e of a (slot, kv head) row is bits [(e % P) * BITS, +BITS) of the row's word e / P, P = 32 / BITS (low bits first); row r =
//   slot * num_kv_heads + h starts at word r * head_dim / P. 4 qparams: uniform QuantParams.
//   5 kv_params: array<u32> [numBlocks, blockSize, num_kv_heads, 2]: pack2x16float(scale, min) of the
//   row's k (index 0) and v (index 1). Per (token, kv head) and separately for k and v, over head_dim:
//   scale = (max - min) * (1 / (2^BITS - 1)), zero = min (LMDeploy's turbomind stores min itself, not
//   an integer zero point), both rounded to f16 first and the codes computed from the rounded pair:
//   q = clamp(round((x - min_h) / scale_h), 0, 2^BITS - 1) (round half to even); dequant x' = q * scale_h
//   + min_h. A constant row (max == min, or a range below f16's smallest subnormal) gets scale 0 and all
//   codes 0, so it reads back as min_h. Both halves are clamped to f16's finite range.
// Workgroup: WG lanes (override) along a token's k/v row (num_kv_heads * head_dim elements), striding by
//   the grid's lanes, each copying k and v; the grid is (column groups, tokens), tokens split over y and
//   z past 65535 (2-D, so no per-element u32 division, which lavapipe scalarises).
//   `write_quant`: one lane per (token, kv head, k or v) row, which needs the row's min and max before
//   any code, so a lane reads its head_dim values twice; WG lanes per workgroup, workgroups over (x, y).
// Tested against: a plain-TS scatter in test/gpu/kv-cache.test.ts (written slots match, all others
//   untouched; vec4 and scalar entries), and for f16 against the same scatter of f16-rounded values
//   (bit-exact); `write_quant` against test/support/kv-quant.ts's quantize-then-scatter in
//   test/gpu/kv-quant.test.ts (scale/min bit-exact; codes bit-exact, a +-1 code allowed only where x
//   sits within 1e-3 of a rounding midpoint, and none seen on lavapipe).

override WG: u32 = 64u;
/** `write_quant` only: bits per code, 8 or 4. */
override BITS: u32 = 8u;

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

// u32 words: f16 pairs, or the codes of a quantized cache.
@group(0) @binding(1) var<storage, read_write> k_cache_h: array<u32>;
@group(0) @binding(2) var<storage, read_write> v_cache_h: array<u32>;
@group(0) @binding(1) var<storage, read_write> k_cache_h2: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read_write> v_cache_h2: array<vec2<u32>>;

struct QuantParams {
  num_tokens: u32,
  row_stride: u32,
  k_offset: u32,
  v_offset: u32,
  num_kv_heads: u32,
  head_dim: u32,
  num_rows: u32, // num_tokens * 2 * num_kv_heads: one lane each
  _pad0: u32,
}

@group(0) @binding(4) var<uniform> qparams: QuantParams;
@group(0) @binding(5) var<storage, read_write> kv_params: array<u32>;

const PADDING_SLOT: u32 = 0xFFFFFFFFu;
const F16_MAX: f32 = 65504.0;

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

/**
 * x rounded to the nearest f16 value (ties to even), as an f32; |x| <= F16_MAX. Integer arithmetic on
 * purpose: lavapipe folds unpack2x16float(pack2x16float(v)) back to v, so codes came from the unrounded
 * pair and did not match what the reader dequantizes with.
 */
fn f16_round(x: f32) -> f32 {
  let b = bitcast<u32>(x);
  let a = b & 0x7FFFFFFFu;
  if (a < 0x38800000u) {
    // Below f16's smallest normal (2^-14) the f16 values are the multiples of 2^-24; scaling by powers
    // of two is exact, round() is ties-to-even.
    return round(x * 16777216.0) * 5.9604644775390625e-8;
  }
  // Keep 10 of the 23 mantissa bits, rounding the 13 dropped ones to nearest even.
  let kept = (a + 0xFFFu + ((a >> 13u) & 1u)) & 0xFFFFE000u;
  return bitcast<f32>(kept | (b & 0x80000000u));
}

/**
 * The code of y = x - min: round(y / scale), clamped. WGSL lets 1 / scale be off by 2.5 ulp (a GPU may
 * use an approximate reciprocal); the remainder against scale itself (a multiply and a subtract, both
 * correctly rounded) moves a code that such an error pushed across a rounding midpoint back.
 */
fn quant_code(y: f32, scale: f32, inv: f32, levels: f32) -> u32 {
  var q = round(y * inv);
  if (scale > 0.0) {
    let r = y - q * scale;
    q += select(0.0, 1.0, r > 0.5 * scale) - select(0.0, 1.0, r < -0.5 * scale);
  }
  return u32(clamp(q, 0.0, levels));
}

@compute @workgroup_size(WG)
fn write_quant(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= qparams.num_rows) { return; }
  // Lane i -> (token t, j): j < num_kv_heads is k head j, the rest v head j - num_kv_heads.
  let per_token = 2u * qparams.num_kv_heads;
  let t = i / per_token;
  let j = i - t * per_token;
  let is_v = j >= qparams.num_kv_heads;
  let head = select(j, j - qparams.num_kv_heads, is_v);
  let slot = slot_mapping[t];
  if (slot == PADDING_SLOT) { return; }
  let hd = qparams.head_dim;
  let src = t * qparams.row_stride + select(qparams.k_offset, qparams.v_offset, is_v) + head * hd;
  var lo = qkv[src];
  var hi = lo;
  for (var d = 1u; d < hd; d++) {
    let x = qkv[src + d];
    lo = min(lo, x);
    hi = max(hi, x);
  }
  let levels = f32((1u << BITS) - 1u);
  // Codes come from the f16-rounded pair the reader will see, so a stored value is off by at most
  // half a step (plus the clamp at the top when scale rounds down).
  let p = vec2f(f16_round(clamp((hi - lo) * (1.0 / levels), 0.0, F16_MAX)), f16_round(clamp(lo, -F16_MAX, F16_MAX)));
  let packed = pack2x16float(p);
  let inv = select(0.0, 1.0 / p.x, p.x > 0.0);
  let row = slot * qparams.num_kv_heads + head;
  kv_params[row * 2u + select(0u, 1u, is_v)] = packed;
  let per_word = 32u / BITS;
  let words = hd / per_word;
  let dst = row * words;
  for (var w = 0u; w < words; w++) {
    var word = 0u;
    for (var e = 0u; e < per_word; e++) {
      word |= quant_code(qkv[src + w * per_word + e] - p.y, p.x, inv, levels) << (e * BITS);
    }
    if (is_v) { v_cache_h[dst + w] = word; } else { k_cache_h[dst + w] = word; }
  }
}
