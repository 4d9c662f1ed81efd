// Prompt logprobs (scoring): per logits row, log_softmax statistics without reading the row back.
// Bindings (group 0):
//   0 logits:  array<f32> (read)        row r at r * vocab (r = workgroup id; the host binds each group
//                                        of rows at an aligned offset, see elem_offset)
//   1 targets: array<u32> (read)        the token whose logprob row r reports (the next prompt token)
//   2 results: array<u32> (read_write)  per row RESULT_STRIDE words: logsumexp bits, target logprob bits,
//                                        target rank, 0, then MAX_TOP (id, logprob bits) pairs, best first
//   3 u:       uniform Uniforms
// Semantics: logprob = x - logsumexp(row) in f32 (max-shifted); rank = #{j : x_j >= x_target} (vLLM's
// 1-based rank, ties counted against the target); top-k by (value desc, id asc), k <= MAX_TOP, found by
// k arg-max rounds each excluding what the previous rounds took (no marks, no sorting).
// Workgroup: WG threads (64) per row, each striding the vocabulary; tree reductions in workgroup memory.
// Tested against: a float64 log-softmax in test/gpu/prompt-logprobs.test.ts (odd vocab, ties, k = 0 and 20).

const WG: u32 = 64u;
const MAX_TOP: u32 = 20u;
const RESULT_STRIDE: u32 = 44u; // 4 + 2 * MAX_TOP
const NEG_BIG: f32 = -3.0e38;

struct Uniforms { vocab: u32, elem_offset: u32, row_base: u32, num_top: u32 }

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> targets: array<u32>;
@group(0) @binding(2) var<storage, read_write> results: array<u32>;
@group(0) @binding(3) var<uniform> u: Uniforms;

var<workgroup> red_v: array<f32, 64>;
var<workgroup> red_i: array<u32, 64>;

// After: red_v[0] = max over lanes (ties: lowest id in red_i).
fn reduce_argmax(lane: u32) {
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    workgroupBarrier();
    if (lane < s) {
      let a = red_v[lane];
      let b = red_v[lane + s];
      let ia = red_i[lane];
      let ib = red_i[lane + s];
      if (b > a || (b == a && ib < ia)) {
        red_v[lane] = b;
        red_i[lane] = ib;
      }
    }
  }
  workgroupBarrier();
}

fn reduce_sum(lane: u32) {
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    workgroupBarrier();
    if (lane < s) { red_v[lane] = red_v[lane] + red_v[lane + s]; }
  }
  workgroupBarrier();
}

fn reduce_count(lane: u32) {
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    workgroupBarrier();
    if (lane < s) { red_i[lane] = red_i[lane] + red_i[lane + s]; }
  }
  workgroupBarrier();
}

@compute @workgroup_size(64)
fn prompt_logprobs(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let lane = lid.x;
  let V = u.vocab;
  let base = u.elem_offset + wid.x * V;
  let row = u.row_base + wid.x;

  // 1. max
  var m = NEG_BIG;
  for (var j = lane; j < V; j += WG) { m = max(m, logits[base + j]); }
  red_v[lane] = m;
  red_i[lane] = 0u;
  reduce_argmax(lane);
  let row_max = red_v[0];
  workgroupBarrier();

  // 2. sum of exp(x - max) -> logsumexp
  var s = 0.0;
  for (var j = lane; j < V; j += WG) { s += exp(logits[base + j] - row_max); }
  red_v[lane] = s;
  reduce_sum(lane);
  let lse = row_max + log(red_v[0]);
  workgroupBarrier();

  // 3. the target's logit and rank
  let tgt = min(targets[row], V - 1u);
  let t = logits[base + tgt];
  var c = 0u;
  for (var j = lane; j < V; j += WG) { c += select(0u, 1u, logits[base + j] >= t); }
  red_i[lane] = c;
  reduce_count(lane);
  let rank = red_i[0];
  let o = row * RESULT_STRIDE;
  if (lane == 0u) {
    results[o] = bitcast<u32>(lse);
    results[o + 1u] = bitcast<u32>(t - lse);
    results[o + 2u] = rank;
    results[o + 3u] = 0u;
  }
  workgroupBarrier();

  // 4. top-k: round k takes the best element strictly after the previous pick in (value desc, id asc).
  var prev_v = 0.0;
  var prev_i = 0u;
  for (var k = 0u; k < u.num_top; k++) {
    var best_v = NEG_BIG;
    var best_i = 0xffffffffu;
    for (var j = lane; j < V; j += WG) {
      let x = logits[base + j];
      let after = k == 0u || x < prev_v || (x == prev_v && j > prev_i);
      if (after && (x > best_v || (x == best_v && j < best_i))) {
        best_v = x;
        best_i = j;
      }
    }
    red_v[lane] = best_v;
    red_i[lane] = best_i;
    reduce_argmax(lane);
    prev_v = red_v[0];
    prev_i = red_i[0];
    if (lane == 0u) {
      results[o + 4u + 2u * k] = prev_i;
      results[o + 5u + 2u * k] = bitcast<u32>(prev_v - lse);
    }
    workgroupBarrier();
  }
}
