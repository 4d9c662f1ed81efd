// Paged attention, one query token per workgroup, on devices whose subgroups have >= 8 lanes: chosen
// by src/kernels/attention.ts on CPU adapters (lavapipe) for every batch, pure decode (one query token
// per sequence), prefill and mixed alike (each token attends to keys up to its own position). An 8-lane
// workgroup is one subgroup, so scores are reduced with subgroupAdd and there is no workgroupBarrier:
// on llvmpipe a workgroup's SIMD-8 fibres switch at every barrier, which dominated the 64-thread kernel.
// Entry point:
//   attend_decode  one 8-lane workgroup per (token, kv head x head group, KV split). Lane i owns the
//                  vec4 columns i, i+8, i+16, ... of head_dim, so each K/V row is read by the 8 lanes
//                  as contiguous 128-byte runs, and every K/V load serves all the workgroup's q heads
//                  (up to MAX_HEADS of one kv head: GQA/MQA). Keys are walked one at a time by all lanes:
//                  partial dot -> subgroupAdd -> online softmax (running max and sum, same in every
//                  lane) -> acc = acc * alpha + p * v. f32 throughout.
//                  num_splits == 1: writes out; else per-split (max, sum, acc) partials, merged by
//                  reduce_splits in shaders/attention.wgsl (same bindings 0..3 and layouts).
// Bindings (group 0), identical to attention.wgsl's attend:
//   0 partial_acc: array<vec4f> [numTokens, numHeads, num_splits, head_dim/4] (unnormalised acc)
//   1 partial_ml:  array<vec2f> [numTokens, numHeads, num_splits] (running max, running sum)
//   2 out: array<vec4f> [numTokens, numHeads * head_dim/4]
//   3 params: uniform Params (attention.wgsl's layout section, which the host prepends; tokens_per_tile must be 1)
//   4 qkv: array<f32> [numTokens, row_stride], q head h of token t at t*row_stride + q_offset + h*head_dim
//   5 k_cache, 6 v_cache: [numBlocks, block_size, num_kv_heads, head_dim/4] vec4 columns, declared with
//     kv_row_params / load_k / load_v by attention.wgsl's cache sections (cache_f32, cache_f16, or
//     cache_int8 / cache_int4 with cache_quant), which the host prepends
//   7 block_tables: array<u32> [numSeqs, max_blocks_per_seq]
//   8 token_seq, 9 token_pos: array<u32> [numTokens]
//   10 kv_params (quantized caches only): per-row (k, v) f16 (scale, min) pairs, see attention.wgsl
// Masking: the token at pos attends to keys [pos - sliding_window + 1 (if window > 0), pos].
// Workgroup: 8 invocations (one subgroup). Limits: head_dim % 4 == 0, head_dim <= 256,
// heads_per_row_group <= MAX_HEADS.
// Tested against: the float64 reference in test/helpers/attention-reference.ts (test/gpu/attention.test.ts
// runs every decode case on this path and on the portable one): GQA 1/2/8, MQA, head dims 32..256,
// sliding window, split-KV up to 32k, f32 and f16 caches; int8/int4 caches in test/gpu/kv-quant.test.ts.

//#section decode
// requires: subgroups

const LANES: u32 = 8u;
const MAX_HEADS: u32 = 8u; // q heads per workgroup
const MAX_DPL: u32 = 8u;   // vec4 columns per lane: head_dim <= 8 * 4 * MAX_DPL
const NEG: f32 = -3.0e38;  // "minus infinity" that keeps exp(NEG - NEG) finite

@compute @workgroup_size(8)
fn attend_decode(@builtin(workgroup_id) wid: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
  let hd4 = params.head_dim / 4u;
  let dpl = (hd4 + LANES - 1u) / LANES;
  let t = wid.x;
  let kv_head = wid.y / params.num_head_groups;
  let first_head = kv_head * params.group_size + (wid.y % params.num_head_groups) * params.heads_per_row_group;
  let num_heads_here = min(params.heads_per_row_group, (kv_head + 1u) * params.group_size - first_head);
  let seq = token_seq[t];
  let pos = token_pos[t];
  // The last split runs to the end, so an understated maxContextLen never drops keys.
  var key_lo = wid.z * params.split_len;
  var key_hi = pos + 1u; // exclusive
  if (wid.z + 1u < params.num_splits) { key_hi = min(key_hi, key_lo + params.split_len); }
  let window = params.sliding_window;
  if (window > 0u) { key_lo = max(key_lo, max(pos + 1u, window) - window); }

  // [head * MAX_DPL + slot]; slot j of this lane is vec4 column lane + 8j. q is pre-scaled.
  // Every loop over heads or slots runs to its constant bound and breaks at the runtime count: fully
  // unrolled, these arrays become registers (llvmpipe runs a dynamically indexed private array through
  // memory, lane by lane, which made the kernel 3-4x slower).
  var q: array<vec4<f32>, 64>;
  var acc: array<vec4<f32>, 64>;
  // 1. This lane's columns of each q head, pre-scaled.
  for (var h = 0u; h < MAX_HEADS; h++) {
    let q_base = t * params.row_stride + params.q_offset + (first_head + h) * params.head_dim;
    for (var j = 0u; j < MAX_DPL; j++) {
      if (j >= dpl) { break; }
      let d = lane + LANES * j;
      var v = vec4<f32>(0.0);
      if (d < hd4 && h < num_heads_here) {
        let b = q_base + d * 4u;
        v = vec4<f32>(qkv[b], qkv[b + 1u], qkv[b + 2u], qkv[b + 3u]) * params.scale;
      }
      q[h * MAX_DPL + j] = v;
      acc[h * MAX_DPL + j] = vec4<f32>(0.0);
    }
  }

  // 2. All lanes walk the keys together; m and l are the same in every lane.
  var m: array<f32, MAX_HEADS>;
  var l: array<f32, MAX_HEADS>;
  for (var h = 0u; h < MAX_HEADS; h++) { m[h] = NEG; l[h] = 0.0; }
  let table = seq * params.max_blocks_per_seq;
  for (var key = key_lo; key < key_hi; key++) {
    let block = block_tables[table + key / params.block_size];
    let row = (block * params.block_size + key % params.block_size) * params.num_kv_heads + kv_head;
    let base = row * hd4;
    let kvp = kv_row_params(row);
    var kr: array<vec4<f32>, MAX_DPL>;
    var vr: array<vec4<f32>, MAX_DPL>;
    for (var j = 0u; j < MAX_DPL; j++) {
      if (j >= dpl) { break; }
      let d = lane + LANES * j;
      kr[j] = vec4<f32>(0.0);
      vr[j] = vec4<f32>(0.0);
      if (d < hd4) { kr[j] = load_k(base + d, kvp); vr[j] = load_v(base + d, kvp); }
    }
    for (var h = 0u; h < MAX_HEADS; h++) {
      if (h >= num_heads_here) { break; }
      var part = 0.0;
      for (var j = 0u; j < MAX_DPL; j++) {
        if (j >= dpl) { break; }
        part += dot(q[h * MAX_DPL + j], kr[j]);
      }
      let s = subgroupAdd(part);
      let m_new = max(m[h], s);
      let alpha = exp(m[h] - m_new);
      let p = exp(s - m_new);
      m[h] = m_new;
      l[h] = l[h] * alpha + p;
      for (var j = 0u; j < MAX_DPL; j++) {
        if (j >= dpl) { break; }
        acc[h * MAX_DPL + j] = acc[h * MAX_DPL + j] * alpha + p * vr[j];
      }
    }
  }

  // 3. Normalised output, or this split's partials for reduce_splits.
  for (var h = 0u; h < MAX_HEADS; h++) {
    if (h >= num_heads_here) { break; }
    let row = t * params.num_heads + first_head + h;
    let p = row * params.num_splits + wid.z;
    for (var j = 0u; j < MAX_DPL; j++) {
      if (j >= dpl) { break; }
      let d = lane + LANES * j;
      if (d >= hd4) { continue; }
      let a = acc[h * MAX_DPL + j];
      if (params.num_splits == 1u) {
        out[row * hd4 + d] = select(vec4<f32>(0.0), a / l[h], l[h] > 0.0);
      } else {
        partial_acc[p * hd4 + d] = a;
      }
    }
    if (params.num_splits > 1u && lane == 0u) { partial_ml[p] = vec2<f32>(m[h], l[h]); }
  }
}
