// Rotary position embedding, HF Llama "rotate_half" (GPT-NeoX) layout, in place on the q and k heads of
// a fused qkv activation.
// Bindings (group 0): 0 qkv: array<f32> (read_write), [numTokens, row_stride], q heads at
//   t*row_stride + q_offset + h*head_dim, k heads at t*row_stride + k_offset + h*head_dim (v untouched);
//   1 positions: array<u32> [numTokens]; 2 inv_freq: array<f32> [rotary_dim/2]; 3 params: uniform.
// Pair i < rotary_dim/2 of a head: angle = pos * inv_freq[i], x1 = x[i], x2 = x[i + rotary_dim/2],
//   out[i] = x1*cos - x2*sin, out[i + rotary_dim/2] = x2*cos + x1*sin (cos, sin times attention_scaling).
//   Dims >= rotary_dim pass through (partial rotary).
// Workgroup: 64 threads, one (token, head, pair) each over q heads then k heads; the grid may be 2-D.
// Tested against: a float64 reference in test/helpers/attention-reference.ts (test/gpu/rotary.test.ts),
//   including positions up to 32767 where a naive f32 pos*inv_freq is off by ~2e-3 rad.

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
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

@group(0) @binding(0) var<storage, read_write> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> positions: array<u32>;
@group(0) @binding(2) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

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

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let idx = gid.x + gid.y * nwg.x * 64u;
  let half_rot = params.half_rotary;
  let heads_per_token = params.num_heads + params.num_kv_heads;
  if (idx >= params.num_tokens * heads_per_token * half_rot) { return; }
  let i = idx % half_rot;
  let head = (idx / half_rot) % heads_per_token;
  let t = idx / (half_rot * heads_per_token);
  var base = t * params.row_stride;
  if (head < params.num_heads) {
    base += params.q_offset + head * params.head_dim;
  } else {
    base += params.k_offset + (head - params.num_heads) * params.head_dim;
  }
  let angle = TWO_PI * angle_turns(positions[t], inv_freq[i]);
  let c = cos(angle) * params.attention_scaling;
  let s = sin(angle) * params.attention_scaling;
  let x1 = qkv[base + i];
  let x2 = qkv[base + i + half_rot];
  qkv[base + i] = x1 * c - x2 * s;
  qkv[base + i + half_rot] = x2 * c + x1 * s;
}
