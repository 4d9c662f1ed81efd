// Rotary position embedding, HF Llama "rotate_half" (GPT-NeoX) layout, in place on the q and k heads of
// a fused qkv activation.
// Bindings (group 0): 0 qkv: array<f32> (read_write), [numTokens, row_stride], q heads at
//   t*row_stride + q_offset + h*head_dim, k heads at t*row_stride + k_offset + h*head_dim (v untouched);
//   1 positions: array<u32> [numTokens]; 2 inv_freq: array<f32> [rows, rotary_dim/2];
//   3 token_seq: array<u32> [numTokens]; 4 params: uniform.
// Token t reads inv_freq row token_seq[t] * freq_stride: freq_stride 0 = one row for every token,
//   rotary_dim/2 = one row per sequence (dynamic NTK, whose frequencies depend on the sequence's length).
// Pair i < rotary_dim/2 of a head: angle = pos * inv_freq[row + i], x1 = x[i], x2 = x[i + rotary_dim/2],
//   out[i] = x1*cos - x2*sin, out[i + rotary_dim/2] = x2*cos + x1*sin (cos, sin times attention_scaling).
//   Dims >= rotary_dim pass through (partial rotary).
// Workgroup: WG lanes (override; 32 on CPU adapters, 64 otherwise), one (token, pair) each, looping
//   over the token's q heads then k heads, so cos/sin are computed once per (token, pair); the grid is
//   (ceil(rotary_dim/2 / WG), tokens), tokens split over y and z past 65535.
// Tested against: a float64 reference in test/support/reference-attention.ts (test/gpu/rotary.test.ts),
//   including positions up to 32767 where a naive f32 pos*inv_freq is off by ~2e-3 rad, and per-sequence
//   rows (freq_stride > 0) with tokens of three sequences interleaved.

struct Params {
  num_tokens: u32,
  row_stride: u32,
  q_offset: u32,
  num_heads: u32,
  k_offset: u32,
  num_kv_heads: u32,
  head_dim: u32,
  half_rotary: u32,
  attention_scaling: f32,
  freq_stride: u32,
  _pad1: u32,
  _pad2: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read_write> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> positions: array<u32>;
@group(0) @binding(2) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(3) var<storage, read> token_seq: array<u32>;
@group(0) @binding(4) var<uniform> params: Params;

const TWO_PI: f32 = 6.283185307179586;

// x with its low 12 mantissa bits cleared: 12 significant bits, so the product of two such numbers
// is exact in f32. Bit masking (not Veltkamp splitting) survives compiler reassociation.
fn high12(x: f32) -> f32 {
  return bitcast<f32>(bitcast<u32>(x) & 0xFFFFF000u);
}

// pos * f / (2*pi) reduced to [-0.5, 0.5] turns with ~1e-7 absolute error for pos < 2^24.
// A plain f32 product pos*f loses ~pos*6e-8 rad (2e-3 at pos 32k), so the product is formed from
// exact partial products: f/(2*pi) = gh + gl with gh of 12 bits, pos = ph + pl with 12 bits each.
fn angle_turns(pos: u32, f: f32) -> f32 {
  let c1h = bitcast<f32>(0x3E22F000u); // 1/(2*pi) = c1h + c1l + c2
  let c1l = bitcast<f32>(0x38183000u);
  let c2 = bitcast<f32>(0x31DC9C88u);
  let fh = high12(f);
  let fl = f - fh;
  let p1 = fh * c1h;
  let gh = high12(p1);
  let gl = ((p1 - gh) + (fh * c1l + fl * c1h)) + (fl * c1l + f * c2);
  let ph = f32(pos & 0xFFF000u);
  let pl = f32(pos & 0xFFFu);
  let t = fract(ph * gh) + fract(pl * gh) + fract(f32(pos) * gl);
  return t - round(t);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x;
  let t = gid.y + gid.z * nwg.y;
  let half_rot = params.half_rotary;
  if (i >= half_rot || t >= params.num_tokens) { return; }
  // One angle serves every q and k head of the token: sin/cos and the exact product are the costly part.
  let angle = TWO_PI * angle_turns(positions[t], inv_freq[token_seq[t] * params.freq_stride + i]);
  let c = cos(angle) * params.attention_scaling;
  let s = sin(angle) * params.attention_scaling;
  let row = t * params.row_stride;
  for (var h = 0u; h < params.num_heads; h++) {
    rotate_pair(row + params.q_offset + h * params.head_dim + i, half_rot, c, s);
  }
  for (var h = 0u; h < params.num_kv_heads; h++) {
    rotate_pair(row + params.k_offset + h * params.head_dim + i, half_rot, c, s);
  }
}

fn rotate_pair(at: u32, half_rot: u32, c: f32, s: f32) {
  let x1 = qkv[at];
  let x2 = qkv[at + half_rot];
  qkv[at] = x1 * c - x2 * s;
  qkv[at + half_rot] = x2 * c + x1 * s;
}
