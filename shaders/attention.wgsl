// Paged attention for prefill, decode and mixed batches, reading K/V only from the paged cache.
// Entry points:
//   attend        one workgroup per (query tile, kv head x head group, KV split). A tile holds up to
//                 ROWS query rows (token, head) that share one kv head, so GQA heads and neighbouring
//                 query tokens reuse each K/V load. Online softmax (running max and sum), f32 throughout.
//                 num_splits == 1: writes out directly; else writes per-split (max, sum, acc) partials.
//   reduce_splits one workgroup per (token, head): merges the partials of all splits into out; also
//                 merges the partials of attend_decode (shaders/attention_decode.wgsl, pure decode on
//                 CPU adapters with 8-lane subgroups), which shares this file's bindings and Params.
// Bindings (group 0; reduce_splits uses 0..3 only):
//   0 partial_acc: array<vec4f> [numTokens, numHeads, num_splits, head_dim/4] (unnormalised acc)
//   1 partial_ml:  array<vec2f> [numTokens, numHeads, num_splits] (running max, running sum)
//   2 out: array<vec4f> [numTokens, numHeads * head_dim/4]
//   3 params: uniform Params
//   4 qkv: array<f32> [numTokens, row_stride], q head h of token t at t*row_stride + q_offset + h*head_dim
//   5 k_cache, 6 v_cache: [numBlocks, block_size, num_kv_heads, head_dim/4] vec4 columns, declared by one
//     of the cache sections and read only through its functions. Row r = slot * num_kv_heads + kv head;
//     kv_row_params(r) -> vec4 (k scale, k min, v scale, v min), read once per key (float caches: zeros,
//     no load); load_k(i, p) / load_v(i, p): vec4 column i = r * head_dim/4 + d of the cache as f32;
//     share_row_params(j, p) / shared_row_params(j): the tiled kernel hands key j's params from its
//     score lane to the PV lanes (float caches: nothing).
//     cache_f32: array<vec4f>; cache_f16: array<vec2<u32>>, 4 halves per element (element e of the cache
//     is half e & 1 of u32 word e >> 1), unpacked with unpack2x16float (no shader-f16 needed).
//     cache_int8 / cache_int4 (+ cache_quant): array<u32> of codes as shaders/kv_cache.wgsl's write_quant
//     packs them (int8: column i is word i, bytes low first; int4: column i is half i & 1 of word i >> 1,
//     nibbles low first, head_dim % 8 == 0), dequantized in f32 as code * scale + min.
//   7 block_tables: array<u32> [numSeqs, max_blocks_per_seq]
//   8 token_seq, 9 token_pos: array<u32> [numTokens] (tokens of a sequence contiguous, in position order)
//   10 kv_params (cache_quant only): array<vec2<u32>> [numBlocks, block_size, num_kv_heads], (k, v)
//     pack2x16float(scale, min) per row.
// Sections: src/kernels/attention.ts joins one cache section (cache_f32, cache_f16, or cache_int8 /
//   cache_int4 with cache_quant) with `layout` and `attention`; shaders/attention_decode.wgsl's kernel
//   takes its cache sections from this file too. The float sections' params are constant zeros that the
//   compiler drops, so the unquantized variants compile to what they were before quantized caches.
// Masking: token at pos attends to keys [pos - sliding_window + 1 (if window > 0), pos] of its sequence.
// Workgroup: 64 threads. Score phase: one key per thread, ROWS dot products against q in workgroup memory.
//   PV phase: thread = (key group, head_dim/4 lane), keys strided over 64 / (head_dim/4) groups.
// Limits: head_dim % 4 == 0, head_dim <= 256.
// Tested against: a float64 reference in test/helpers/attention-reference.ts (test/gpu/attention.test.ts):
//   GQA 1/2/8 and MQA, mixed query lengths, shuffled block tables, sliding window, split-KV up to 32k;
//   the f16 cache against the same reference on f16-rounded K/V; int8/int4 caches against it on the
//   dequantized K/V (test/gpu/kv-quant.test.ts).

//#section cache_f32
@group(0) @binding(5) var<storage, read> k_cache: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> v_cache: array<vec4<f32>>;

fn kv_row_params(row: u32) -> vec4<f32> { return vec4<f32>(0.0); }
fn load_k(i: u32, p: vec4<f32>) -> vec4<f32> { return k_cache[i]; }
fn load_v(i: u32, p: vec4<f32>) -> vec4<f32> { return v_cache[i]; }
fn share_row_params(j: u32, p: vec4<f32>) {}
fn shared_row_params(j: u32) -> vec4<f32> { return vec4<f32>(0.0); }

//#section cache_f16
@group(0) @binding(5) var<storage, read> k_cache: array<vec2<u32>>;
@group(0) @binding(6) var<storage, read> v_cache: array<vec2<u32>>;

fn kv_row_params(row: u32) -> vec4<f32> { return vec4<f32>(0.0); }
fn load_k(i: u32, p: vec4<f32>) -> vec4<f32> { let w = k_cache[i]; return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)); }
fn load_v(i: u32, p: vec4<f32>) -> vec4<f32> { let w = v_cache[i]; return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)); }
fn share_row_params(j: u32, p: vec4<f32>) {}
fn shared_row_params(j: u32) -> vec4<f32> { return vec4<f32>(0.0); }

//#section cache_int8
@group(0) @binding(5) var<storage, read> k_cache: array<u32>;
@group(0) @binding(6) var<storage, read> v_cache: array<u32>;

/** The four byte codes of word w as floats. */
fn codes(w: u32) -> vec4<f32> { return vec4<f32>((vec4<u32>(w) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xFFu)); }
fn load_k(i: u32, p: vec4<f32>) -> vec4<f32> { return codes(k_cache[i]) * p.x + p.y; }
fn load_v(i: u32, p: vec4<f32>) -> vec4<f32> { return codes(v_cache[i]) * p.z + p.w; }

//#section cache_int4
@group(0) @binding(5) var<storage, read> k_cache: array<u32>;
@group(0) @binding(6) var<storage, read> v_cache: array<u32>;

/** The four nibble codes of vec4 column i (half i & 1 of its word w) as floats. */
fn codes(w: u32, i: u32) -> vec4<f32> {
  let h = w >> ((i & 1u) * 16u);
  return vec4<f32>((vec4<u32>(h) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(0xFu));
}
fn load_k(i: u32, p: vec4<f32>) -> vec4<f32> { return codes(k_cache[i >> 1u], i) * p.x + p.y; }
fn load_v(i: u32, p: vec4<f32>) -> vec4<f32> { return codes(v_cache[i >> 1u], i) * p.z + p.w; }

//#section cache_quant
@group(0) @binding(10) var<storage, read> kv_params: array<vec2<u32>>;

// Key j's params of the current chunk for the tiled kernel's PV lanes (64 = its CHUNK).
var<workgroup> chunk_row_params: array<vec4<f32>, 64>;

fn kv_row_params(row: u32) -> vec4<f32> { let w = kv_params[row]; return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)); }
fn share_row_params(j: u32, p: vec4<f32>) { chunk_row_params[j] = p; }
fn shared_row_params(j: u32) -> vec4<f32> { return chunk_row_params[j]; }

//#section layout

struct Params {
  num_tokens: u32,
  row_stride: u32,
  q_offset: u32,
  num_heads: u32,
  num_kv_heads: u32,
  head_dim: u32,
  block_size: u32,
  max_blocks_per_seq: u32,
  group_size: u32,          // num_heads / num_kv_heads
  heads_per_row_group: u32, // query heads of one kv head handled by one workgroup
  num_head_groups: u32,     // ceil(group_size / heads_per_row_group)
  tokens_per_tile: u32,     // tokens_per_tile * heads_per_row_group <= ROWS
  sliding_window: u32,
  num_splits: u32,
  split_len: u32,
  _pad0: u32,
  scale: f32,
  _pad1: u32,
  _pad2: u32,
  _pad3: u32,
}

@group(0) @binding(0) var<storage, read_write> partial_acc: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> partial_ml: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> params: Params;
@group(0) @binding(4) var<storage, read> qkv: array<f32>;
@group(0) @binding(7) var<storage, read> block_tables: array<u32>;
@group(0) @binding(8) var<storage, read> token_seq: array<u32>;
@group(0) @binding(9) var<storage, read> token_pos: array<u32>;

//#section attention

const WG: u32 = 64u;
const CHUNK: u32 = 64u;    // keys per chunk: one per thread in the score phase
const ROWS: u32 = 8u;      // query rows per workgroup
const PARTS: u32 = 8u;     // WG / ROWS threads reduce each row's chunk max
const MAX_HD4: u32 = 64u;  // head_dim <= 256
const NEG: f32 = -3.0e38;  // "minus infinity" that keeps exp(NEG - NEG) finite
const NO_KEY: f32 = -1.0e38;

var<workgroup> q_tile: array<vec4<f32>, 512>; // ROWS * MAX_HD4, q pre-scaled; reused for the final acc merge
var<workgroup> probs: array<f32, 512>;        // ROWS * CHUNK scores, then probabilities
var<workgroup> chunk_max: array<f32, 64>;     // ROWS * PARTS
var<workgroup> key_base: array<u32, 64>;      // vec4 index of each chunk key's head in the cache

@compute @workgroup_size(64)
fn attend(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) tid: u32) {
  let hd4 = params.head_dim / 4u;
  let hg = params.heads_per_row_group;
  let kv_head = wid.y / params.num_head_groups;
  let first_head = kv_head * params.group_size + (wid.y % params.num_head_groups) * hg;
  let last_head = (kv_head + 1u) * params.group_size; // exclusive
  let t0 = wid.x * params.tokens_per_tile;
  let t_end = min(t0 + params.tokens_per_tile, params.num_tokens);
  let window = params.sliding_window;
  let split_start = wid.z * params.split_len;
  // The last split runs to the end, so an understated maxContextLen never drops keys.
  var split_end = 0xFFFFFFFFu;
  if (wid.z + 1u < params.num_splits) { split_end = split_start + params.split_len; }

  // 1. Rows of this tile: r -> (token t0 + r / hg, head first_head + r % hg).
  var row_valid: array<bool, ROWS>;
  var row_token: array<u32, ROWS>;
  var row_head: array<u32, ROWS>;
  var row_pos: array<u32, ROWS>;
  for (var r = 0u; r < ROWS; r++) {
    row_token[r] = t0 + r / hg;
    row_head[r] = first_head + r % hg;
    row_valid[r] = r < params.tokens_per_tile * hg && row_token[r] < t_end && row_head[r] < last_head;
    row_pos[r] = 0u;
    if (row_valid[r]) { row_pos[r] = token_pos[row_token[r]]; }
  }
  for (var i = tid; i < ROWS * hd4; i += WG) {
    let r = i / hd4;
    let lane = i % hd4;
    var q = vec4<f32>(0.0);
    if (row_valid[r]) {
      let b = row_token[r] * params.row_stride + params.q_offset + row_head[r] * params.head_dim + lane * 4u;
      q = vec4<f32>(qkv[b], qkv[b + 1u], qkv[b + 2u], qkv[b + 3u]) * params.scale;
    }
    q_tile[r * hd4 + lane] = q;
  }
  workgroupBarrier();

  // Online softmax state. m_run is identical in every thread; l_part sums this thread's keys only;
  // acc holds this thread's PV lane for its key group.
  var m_run: array<f32, ROWS>;
  var l_part: array<f32, ROWS>;
  var acc: array<vec4<f32>, ROWS>;
  for (var r = 0u; r < ROWS; r++) { m_run[r] = NEG; l_part[r] = 0.0; acc[r] = vec4<f32>(0.0); }
  // Rows past num_rows are always empty; skipping them is a uniform branch (saves work for MHA decode).
  let num_rows = min(ROWS, params.tokens_per_tile * hg);
  let num_pv_groups = WG / hd4;
  let pv_group = tid / hd4;
  let lane = tid % hd4;

  // 2. Each run of same-sequence tokens in the tile (a segment) scans its sequence's keys.
  var seg_start = t0;
  loop {
    if (seg_start >= t_end) { break; }
    let seq = token_seq[seg_start];
    var seg_end = seg_start + 1u;
    var max_pos = token_pos[seg_start];
    var min_pos = max_pos;
    loop {
      if (seg_end >= t_end || token_seq[seg_end] != seq) { break; }
      max_pos = max(max_pos, token_pos[seg_end]);
      min_pos = min(min_pos, token_pos[seg_end]);
      seg_end++;
    }
    var key_lo = split_start;
    if (window > 0u) { key_lo = max(key_lo, max(min_pos + 1u, window) - window); }
    let key_hi = min(max_pos + 1u, split_end); // exclusive
    let table = seq * params.max_blocks_per_seq;

    for (var c0 = key_lo; c0 < key_hi; c0 += CHUNK) {
      // 2a. Scores of this thread's key against every row.
      let key = c0 + tid;
      var s: array<f32, ROWS>;
      for (var r = 0u; r < ROWS; r++) { s[r] = 0.0; }
      if (key < key_hi) {
        let block = block_tables[table + key / params.block_size];
        let row = (block * params.block_size + key % params.block_size) * params.num_kv_heads + kv_head;
        let base = row * hd4;
        let kvp = kv_row_params(row);
        key_base[tid] = base;
        share_row_params(tid, kvp);
        for (var d = 0u; d < hd4; d++) {
          let k = load_k(base + d, kvp);
          for (var r = 0u; r < ROWS; r++) {
            if (r < num_rows) { s[r] += dot(q_tile[r * hd4 + d], k); }
          }
        }
      }
      for (var r = 0u; r < ROWS; r++) {
        let t = row_token[r];
        let visible = key < key_hi && row_valid[r] && t >= seg_start && t < seg_end && key <= row_pos[r] &&
          (window == 0u || key + window > row_pos[r]);
        probs[r * CHUNK + tid] = select(NEG, s[r], visible);
      }
      workgroupBarrier();

      // 2b. Chunk max per row, PARTS threads per row.
      {
        let r = tid / PARTS;
        let part = tid % PARTS;
        var m = NEG;
        for (var j = 0u; j < CHUNK / PARTS; j++) { m = max(m, probs[r * CHUNK + part * (CHUNK / PARTS) + j]); }
        chunk_max[tid] = m;
      }
      workgroupBarrier();

      // 2c. New running max, rescale, and this thread's key's probability per row.
      var alpha: array<f32, ROWS>;
      for (var r = 0u; r < ROWS; r++) {
        var m = m_run[r];
        for (var part = 0u; part < PARTS; part++) { m = max(m, chunk_max[r * PARTS + part]); }
        alpha[r] = exp(m_run[r] - m);
        m_run[r] = m;
        let score = probs[r * CHUNK + tid];
        let p = select(0.0, exp(score - m), score > NO_KEY);
        probs[r * CHUNK + tid] = p;
        l_part[r] = l_part[r] * alpha[r] + p;
        acc[r] *= alpha[r];
      }
      workgroupBarrier();

      // 2d. acc += P V over this thread's key group.
      if (pv_group < num_pv_groups) {
        for (var j = pv_group; j < CHUNK; j += num_pv_groups) {
          if (c0 + j >= key_hi) { break; }
          let v = load_v(key_base[j] + lane, shared_row_params(j));
          for (var r = 0u; r < ROWS; r++) {
            if (r < num_rows) { acc[r] += probs[r * CHUNK + j] * v; }
          }
        }
      }
      workgroupBarrier();
    }
    seg_start = seg_end;
  }

  // 3. Merge the per-thread sums and per-key-group accumulators, then write out or partials.
  for (var r = 0u; r < ROWS; r++) {
    probs[r * CHUNK + tid] = l_part[r];
    if (pv_group < num_pv_groups) { q_tile[(pv_group * hd4 + lane) * ROWS + r] = acc[r]; }
  }
  workgroupBarrier();
  {
    let r = tid / PARTS;
    let part = tid % PARTS;
    var l = 0.0;
    for (var j = 0u; j < CHUNK / PARTS; j++) { l += probs[r * CHUNK + part * (CHUNK / PARTS) + j]; }
    chunk_max[tid] = l; // now per-part sums
  }
  workgroupBarrier();
  for (var i = tid; i < ROWS * hd4; i += WG) {
    let r = i / hd4;
    let ln = i % hd4;
    if (!row_valid[r]) { continue; }
    var l = 0.0;
    for (var part = 0u; part < PARTS; part++) { l += chunk_max[r * PARTS + part]; }
    var a = vec4<f32>(0.0);
    for (var g = 0u; g < num_pv_groups; g++) { a += q_tile[(g * hd4 + ln) * ROWS + r]; }
    let row = row_token[r] * params.num_heads + row_head[r];
    if (params.num_splits == 1u) {
      out[row * hd4 + ln] = select(vec4<f32>(0.0), a / l, l > 0.0);
    } else {
      let p = row * params.num_splits + wid.z;
      partial_acc[p * hd4 + ln] = a;
      if (ln == 0u) { partial_ml[p] = vec2<f32>(m_run[r], l); }
    }
  }
}

@compute @workgroup_size(64)
fn reduce_splits(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
                 @builtin(local_invocation_index) lane: u32) {
  let row = wid.x + wid.y * nwg.x; // token * num_heads + head
  let hd4 = params.head_dim / 4u;
  if (row >= params.num_tokens * params.num_heads || lane >= hd4) { return; }
  let first = row * params.num_splits;
  var m = NEG;
  for (var z = 0u; z < params.num_splits; z++) {
    let ml = partial_ml[first + z];
    if (ml.y > 0.0) { m = max(m, ml.x); }
  }
  var l = 0.0;
  var a = vec4<f32>(0.0);
  for (var z = 0u; z < params.num_splits; z++) {
    let ml = partial_ml[first + z];
    if (ml.y > 0.0) {
      let w = exp(ml.x - m);
      l += ml.y * w;
      a += partial_acc[(first + z) * hd4 + lane] * w;
    }
  }
  out[row * hd4 + lane] = select(vec4<f32>(0.0), a / l, l > 0.0);
}
