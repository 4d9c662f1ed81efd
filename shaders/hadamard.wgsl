// Walsh-Hadamard rotation of the q and k heads of a fused qkv activation, in place, before a quantized
// KV cache stores k. Per-token int4/int8 quantization of k loses most where a few channels (RoPE's low
// frequencies) dominate a row's range; an orthonormal rotation spreads them over the row (QuaRot's
// online Hadamard on keys), and rotating q by the same matrix keeps every q.k score: (Hq).(Hk) = q.k.
// Bindings (group 0): 0 qkv: array<f32> (read_write), [numTokens, row_stride], q heads at
//   t*row_stride + q_offset + h*head_dim, k heads at t*row_stride + k_offset + h*head_dim (v untouched);
//   1 params: uniform.
// Each head row is split into head_dim / block blocks of `block` (a power of two) elements and each
//   block x becomes H_block x / sqrt(block), H the Sylvester Hadamard matrix (H_1 = [1],
//   H_2n = [[H_n, H_n], [H_n, -H_n]]): symmetric and orthonormal after the scaling, so its own inverse.
//   Computed by the fast transform: log2(block) butterfly stages (a, b) -> (a + b, a - b).
// Workgroup: WG lanes (override), one (token, head) row each, q heads first; rows over (x, y) past
//   65535 workgroups. A lane owns its row, so the stages need no barrier.
// Tested against: the explicit matrix product in float64 (test/gpu/hadamard.test.ts), odd shapes and
//   every block size the runner picks.

struct Params {
  num_rows: u32, // num_tokens * (num_heads + num_kv_heads)
  heads_per_token: u32,
  num_heads: u32,
  row_stride: u32,
  q_offset: u32,
  k_offset: u32,
  head_dim: u32,
  block: u32,
  scale: f32, // 1 / sqrt(block)
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read_write> qkv: array<f32>;
@group(0) @binding(1) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let r = gid.x + gid.y * nwg.x * WG;
  if (r >= params.num_rows) { return; }
  let t = r / params.heads_per_token;
  let h = r % params.heads_per_token;
  var start = t * params.row_stride;
  if (h < params.num_heads) {
    start += params.q_offset + h * params.head_dim;
  } else {
    start += params.k_offset + (h - params.num_heads) * params.head_dim;
  }
  let end = start + params.head_dim;
  for (var span = 1u; span < params.block; span <<= 1u) {
    // Pairs (i, i + span) in each run of 2 * span elements (blocks are whole runs: block % (2 * span) == 0).
    for (var run = start; run < end; run += 2u * span) {
      for (var i = run; i < run + span; i++) {
        let a = qkv[i];
        let b = qkv[i + span];
        qkv[i] = a + b;
        qkv[i + span] = a - b;
      }
    }
  }
  for (var i = start; i < end; i++) { qkv[i] *= params.scale; }
}
