// Token sampling: one workgroup of 256 threads per logits row; reads back only ids and logprobs.
// Bindings (group 0):
//   0 logits:    array<f32> (read)        raw rows, row r at elem_offset + r * vocab (r = workgroup id)
//   1 work:      array<f32> (read_write)  penalised copy of row r at r * vocab; touched only by rows with
//                                         penalties (pen_count > 0), otherwise may be a dummy buffer
//   2 params:    array<RowParams> (read)  indexed by row_base + r
//   3 penalties: array<u32> (read)        (token, output count) pairs; a row owns pairs [pen_start, +pen_count)
//   4 results:   array<u32> (read_write)  per row (row_base + r) RESULT_STRIDE words: token, logprob bits,
//                                         then MAX_TOP (id, logprob bits) pairs, best first
//   5 u:         uniform Uniforms
//   6 masks:     array<u32> (read)        allowed-token bitmasks, ceil(vocab / 32) words each; a row with
//                                         mask_row != NONE owns the one at mask_row (else may be a dummy)
// Logits processing (rows with mask_row != NONE or bias_count > 0, in vLLM v1's order): the grammar mask
// (disallowed tokens become -inf), then the logit bias ((token, f32 bias bits) pairs in `penalties` at
// [bias_start, +bias_count)); the result replaces the raw row for everything below, logprobs included.
// It lives in work at (row_count + r) * vocab.
// Semantics (same as src/sampling/reference.ts): logprobs = log_softmax(raw); penalties on a copy
// (repetition, then frequency, then presence); greedy = argmax of the penalised row (lowest id on ties);
// otherwise z = y * inv_temp, then top-k, top-p (on the top-k survivors), min-p as thresholds on z, and an
// inverse-CDF draw in token-id order with the counter-based uniform of (seed, step) from src/sampling/rng.ts.
// Thresholds are found without sorting: radix select over order-preserving u32 keys of the values, 8 bits
// per round, with a 256-bin histogram in workgroup memory (counts for top-k / top-N, 3-word fixed-point
// masses for top-p, so sums are deterministic).
// Workgroup: 256 threads; the dispatch is (rows in this group, 1, 1).
// Tested against: sampleReference (src/sampling/reference.ts) in test/gpu/sampling.test.ts (greedy,
//   penalties, logprobs, seeded draws, chi-square of 10k draws, filters never emitting excluded tokens).

struct Uniforms { vocab: u32, elem_offset: u32, row_base: u32, num_rows: u32 }

struct RowParams {
  inv_temp: f32,
  top_k: u32,       // 0 = off (host turns k >= vocab into 0)
  top_p: f32,       // >= 1 = off
  min_p: f32,       // 0 = off
  seed_lo: u32,
  seed_hi: u32,
  step: u32,
  num_top: u32,     // top logprobs to return, <= MAX_TOP and <= vocab
  greedy: u32,
  rep: f32,
  inv_rep: f32,
  freq: f32,
  presence: f32,
  pen_start: u32,
  pen_count: u32,
  mask_row: u32,    // NONE = no mask
  bias_start: u32,  // in pairs, like pen_start
  bias_count: u32,
  _pad0: u32,
  _pad1: u32,
}

const WG: u32 = 256u;
const MAX_TOP: u32 = 20u;
const RESULT_STRIDE: u32 = 42u;
const NONE: u32 = 0xffffffffu;
const NEG_BIG: f32 = -3.0e38;

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> work: array<f32>;
@group(0) @binding(2) var<storage, read> params: array<RowParams>;
@group(0) @binding(3) var<storage, read> penalties: array<u32>;
@group(0) @binding(4) var<storage, read_write> results: array<u32>;
@group(0) @binding(5) var<uniform> u: Uniforms;
@group(0) @binding(6) var<storage, read> masks: array<u32>;

var<private> lid: u32;
var<private> vocab: u32;
var<private> raw_base: u32;
var<private> work_base: u32;
var<private> has_pen: bool;
var<private> has_proc: bool;
var<private> proc_base: u32;
var<private> inv_temp: f32;
var<private> zmax: f32;

var<workgroup> red_f: array<f32, 256>;
var<workgroup> red_u: array<u32, 256>;
var<workgroup> hist: array<atomic<u32>, 256>;
// Fixed-point masses of the top-p histogram: 3 words of 13 bits each per bin, so a bin sums < 2^32
// for vocab < 2^19 and tokens down to 2^-39 of the best one still count.
var<workgroup> mass_hi: array<atomic<u32>, 256>;
var<workgroup> mass_mid: array<atomic<u32>, 256>;
var<workgroup> mass_lo: array<atomic<u32>, 256>;
var<workgroup> bc_bin: u32;
var<workgroup> bc_u: u32;
var<workgroup> bc_ties: u32;
var<workgroup> bc_f: f32;
var<workgroup> bc_pick: atomic<u32>;
var<workgroup> last_kept: atomic<u32>;
var<workgroup> num_cand: atomic<u32>;
var<workgroup> cand_id: array<u32, 20>;
var<workgroup> cand_val: array<f32, 20>;

// ---- values --------------------------------------------------------------------------------------

/** Order-preserving map f32 -> u32 (-0 and +0 share a key). */
fn sort_key(v: f32) -> u32 {
  let b = select(bitcast<u32>(v), 0u, v == 0.0);
  if ((b & 0x80000000u) != 0u) { return ~b; }
  return b | 0x80000000u;
}

fn raw_at(i: u32) -> f32 {
  if (has_proc) { return work[proc_base + i]; }
  return logits[raw_base + i];
}

fn pen_at(i: u32) -> f32 {
  if (has_pen) { return work[work_base + i]; }
  return raw_at(i);
}

fn z_at(i: u32) -> f32 { return pen_at(i) * inv_temp; }

fn mix32(x0: u32) -> u32 {
  var x = x0;
  x = x ^ (x >> 16u);
  x = x * 0x7feb352du;
  x = x ^ (x >> 15u);
  x = x * 0x846ca68bu;
  return x ^ (x >> 16u);
}

fn uniform_draw(seed_lo: u32, seed_hi: u32, step: u32) -> f32 {
  var h = mix32(seed_lo + 0x9e3779b9u);
  h = mix32(h ^ seed_hi);
  h = mix32(h ^ step);
  return f32(h >> 8u) * (1.0 / 16777216.0);
}

// ---- workgroup reductions and scans (call from uniform control flow) -----------------------------

fn reduce_max(v: f32) -> f32 {
  red_f[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) { red_f[lid] = max(red_f[lid], red_f[lid + s]); }
    workgroupBarrier();
  }
  let r = red_f[0];
  workgroupBarrier();
  return r;
}

fn reduce_sum(v: f32) -> f32 {
  red_f[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) { red_f[lid] = red_f[lid] + red_f[lid + s]; }
    workgroupBarrier();
  }
  let r = red_f[0];
  workgroupBarrier();
  return r;
}

/** red_u[t] becomes the sum of red_u[t..255]. */
fn suffix_scan_u() {
  workgroupBarrier();
  for (var off = 1u; off < WG; off = off << 1u) {
    var v = red_u[lid];
    if (lid + off < WG) { v = v + red_u[lid + off]; }
    workgroupBarrier();
    red_u[lid] = v;
    workgroupBarrier();
  }
}

/** red_f[t] becomes the sum of red_f[t..255] (fixed association: deterministic). */
fn suffix_scan_f() {
  workgroupBarrier();
  for (var off = 1u; off < WG; off = off << 1u) {
    var v = red_f[lid];
    if (lid + off < WG) { v = v + red_f[lid + off]; }
    workgroupBarrier();
    red_f[lid] = v;
    workgroupBarrier();
  }
}

/** red_f[t] becomes the sum of red_f[0..t]. */
fn prefix_scan_f() {
  workgroupBarrier();
  for (var off = 1u; off < WG; off = off << 1u) {
    var v = red_f[lid];
    if (lid >= off) { v = v + red_f[lid - off]; }
    workgroupBarrier();
    red_f[lid] = v;
    workgroupBarrier();
  }
}

// ---- penalties -----------------------------------------------------------------------------------

/** Copies the raw row into work and rewrites the penalised tokens (distinct per row). */
fn apply_penalties(p: RowParams) {
  for (var i = lid; i < vocab; i = i + WG) { work[work_base + i] = raw_at(i); }
  storageBarrier();
  for (var j = lid; j < p.pen_count; j = j + WG) {
    let token = penalties[2u * (p.pen_start + j)];
    let count = penalties[2u * (p.pen_start + j) + 1u];
    var y = raw_at(token);
    if (p.rep != 1.0) { y = select(y * p.rep, y * p.inv_rep, y > 0.0); }
    if (count > 0u) {
      y = y - p.freq * f32(count);
      y = y - p.presence;
    }
    work[work_base + token] = y;
  }
  storageBarrier();
}

/** The processed raw row: mask (disallowed -> -inf), then bias; written to work at proc_base. */
fn apply_processing(p: RowParams) {
  // A runtime value: WGSL's constant evaluation refuses infinities.
  var inf_bits = 0xff800000u;
  let neg_inf = bitcast<f32>(inf_bits);
  let words = (vocab + 31u) / 32u;
  for (var i = lid; i < vocab; i = i + WG) {
    var y = logits[raw_base + i];
    if (p.mask_row != NONE) {
      let w = masks[p.mask_row * words + (i >> 5u)];
      if (((w >> (i & 31u)) & 1u) == 0u) { y = neg_inf; }
    }
    work[proc_base + i] = y;
  }
  storageBarrier();
  for (var j = lid; j < p.bias_count; j = j + WG) {
    let token = penalties[2u * (p.bias_start + j)];
    let b = bitcast<f32>(penalties[2u * (p.bias_start + j) + 1u]);
    // Distinct tokens per row: no two threads touch the same slot.
    work[proc_base + token] = work[proc_base + token] + b;
  }
  storageBarrier();
}

// ---- selection -----------------------------------------------------------------------------------

const MODE_RAW: u32 = 0u;      // keys of raw logits
const MODE_Z: u32 = 1u;        // keys of temperature-scaled penalised logits
const MODE_TIE_ID: u32 = 2u;   // ~id, only among raw logits whose key equals eq_key (lowest id = largest)

/** Greedy: argmax of the penalised row, lowest id on ties. */
fn argmax_penalised() -> u32 {
  var best = NEG_BIG;
  var best_id = NONE;
  for (var i = lid; i < vocab; i = i + WG) {
    let v = pen_at(i);
    if (best_id == NONE || v > best) { best = v; best_id = i; }
  }
  red_f[lid] = best;
  red_u[lid] = best_id;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      let other_id = red_u[lid + s];
      let other = red_f[lid + s];
      let mine_id = red_u[lid];
      if (other_id != NONE && (mine_id == NONE || other > red_f[lid] || (other == red_f[lid] && other_id < mine_id))) {
        red_f[lid] = other;
        red_u[lid] = other_id;
      }
    }
    workgroupBarrier();
  }
  let r = red_u[0];
  workgroupBarrier();
  return r;
}

/**
 * Radix select by counts: the key of the k-th largest element (1-based) in `mode`, how many elements
 * with exactly that key are needed to make k, and how many have it. Returned values are uniform.
 */
fn count_select(mode: u32, k: u32, eq_key: u32) -> vec3u {
  var prefix = 0u;
  var mask = 0u;
  var need = k;
  var ties = 0u;
  for (var round = 0u; round < 4u; round = round + 1u) {
    let shift = 24u - 8u * round;
    atomicStore(&hist[lid], 0u);
    workgroupBarrier();
    for (var i = lid; i < vocab; i = i + WG) {
      var key: u32;
      if (mode == MODE_RAW) {
        key = sort_key(raw_at(i));
      } else if (mode == MODE_Z) {
        key = sort_key(z_at(i));
      } else {
        if (sort_key(raw_at(i)) != eq_key) { continue; }
        key = ~i;
      }
      if ((key & mask) == prefix) { atomicAdd(&hist[(key >> shift) & 255u], 1u); }
    }
    workgroupBarrier();
    red_u[lid] = atomicLoad(&hist[lid]);
    suffix_scan_u();
    let next = select(0u, red_u[min(lid + 1u, WG - 1u)], lid + 1u < WG);
    // Exactly one bin satisfies this: the highest whose suffix count reaches `need`.
    if ((red_u[lid] >= need || lid == 0u) && next < need) {
      bc_bin = lid;
      bc_u = next;
      bc_ties = red_u[lid] - next;
    }
    let bin = workgroupUniformLoad(&bc_bin);
    let above = workgroupUniformLoad(&bc_u);
    ties = workgroupUniformLoad(&bc_ties);
    need = need - above;
    prefix = prefix | (bin << shift);
    mask = mask | (255u << shift);
  }
  return vec3u(prefix, need, ties);
}

/**
 * Radix select by probability mass for top-p: the largest key t such that the mass of elements with
 * key >= t (and >= floor_key) reaches top_p of the mass of all elements with key >= floor_key.
 */
fn mass_select(floor_key: u32, top_p: f32) -> u32 {
  var prefix = 0u;
  var mask = 0u;
  var above = 0.0;
  var goal = 0.0;
  for (var round = 0u; round < 4u; round = round + 1u) {
    let shift = 24u - 8u * round;
    atomicStore(&mass_hi[lid], 0u);
    atomicStore(&mass_mid[lid], 0u);
    atomicStore(&mass_lo[lid], 0u);
    workgroupBarrier();
    for (var i = lid; i < vocab; i = i + WG) {
      let z = z_at(i);
      let key = sort_key(z);
      if (key < floor_key || (key & mask) != prefix) { continue; }
      let bin = (key >> shift) & 255u;
      let s = exp(z - zmax) * 8192.0;
      let w2 = u32(s);
      let r1 = (s - f32(w2)) * 8192.0;
      let w1 = u32(r1);
      let w0 = u32((r1 - f32(w1)) * 8192.0 + 0.5);
      if (w2 != 0u) { atomicAdd(&mass_hi[bin], w2); }
      if (w1 != 0u) { atomicAdd(&mass_mid[bin], w1); }
      if (w0 != 0u) { atomicAdd(&mass_lo[bin], w0); }
    }
    workgroupBarrier();
    red_f[lid] = f32(atomicLoad(&mass_hi[lid])) * (1.0 / 8192.0)
      + f32(atomicLoad(&mass_mid[lid])) * (1.0 / 67108864.0)
      + f32(atomicLoad(&mass_lo[lid])) * (1.0 / 549755813888.0);
    suffix_scan_f();
    if (round == 0u) { goal = top_p * red_f[0]; }
    let next = select(0.0, red_f[min(lid + 1u, WG - 1u)], lid + 1u < WG);
    // The highest bin whose suffix mass reaches the goal; bin 0 if rounding left none.
    if ((above + red_f[lid] >= goal || lid == 0u) && !(above + next >= goal)) {
      bc_bin = lid;
      bc_f = next;
    }
    let bin = workgroupUniformLoad(&bc_bin);
    above = above + workgroupUniformLoad(&bc_f);
    prefix = prefix | (bin << shift);
    mask = mask | (255u << shift);
  }
  return prefix;
}

/** Inverse-CDF draw in token-id order over tokens with key >= floor_key and p >= min_p * p_max. */
fn draw(floor_key: u32, min_p: f32, uval: f32) -> u32 {
  let chunk = (vocab + WG - 1u) / WG;
  let lo = min(lid * chunk, vocab);
  let hi = min(lo + chunk, vocab);
  if (lid == 0u) {
    atomicStore(&bc_pick, NONE);
    atomicStore(&last_kept, 0u);
  }
  var part = 0.0;
  var mine_last = NONE;
  for (var i = lo; i < hi; i = i + 1u) {
    let z = z_at(i);
    let e = exp(z - zmax);
    if (sort_key(z) >= floor_key && e >= min_p) {
      part = part + e;
      if (e > 0.0) { mine_last = i; }
    }
  }
  red_f[lid] = part;
  prefix_scan_f();
  if (mine_last != NONE) { atomicMax(&last_kept, mine_last + 1u); }
  let total = red_f[WG - 1u];
  let goal = uval * total;
  let incl = red_f[lid];
  let excl = select(0.0, red_f[max(lid, 1u) - 1u], lid > 0u);
  if (excl <= goal && goal < incl) {
    // This thread's chunk holds the crossing; rescan it sequentially.
    let local_target = goal - excl;
    var c = 0.0;
    var pick = mine_last;
    for (var i = lo; i < hi; i = i + 1u) {
      let z = z_at(i);
      let e = exp(z - zmax);
      if (sort_key(z) >= floor_key && e >= min_p) {
        c = c + e;
        if (c > local_target) { pick = i; break; }
      }
    }
    atomicStore(&bc_pick, pick);
  }
  workgroupBarrier();
  let pick = atomicLoad(&bc_pick);
  let fallback = atomicLoad(&last_kept);
  workgroupBarrier();
  if (pick != NONE) { return pick; }
  // Rounding put the goal at or past the total: the last kept token.
  return max(fallback, 1u) - 1u;
}

/** The num_top most likely raw tokens (lowest id first on ties) into cand_id / cand_val, sorted. */
fn top_raw(num_top: u32) {
  let sel = count_select(MODE_RAW, num_top, 0u);
  let thr = sel.x;
  var id_floor = 0u;
  if (sel.y < sel.z) { id_floor = count_select(MODE_TIE_ID, sel.y, thr).x; }
  if (lid == 0u) { atomicStore(&num_cand, 0u); }
  workgroupBarrier();
  for (var i = lid; i < vocab; i = i + WG) {
    let v = raw_at(i);
    let key = sort_key(v);
    if (key > thr || (key == thr && ~i >= id_floor)) {
      let slot = atomicAdd(&num_cand, 1u);
      if (slot < MAX_TOP) {
        cand_id[slot] = i;
        cand_val[slot] = v;
      }
    }
  }
  workgroupBarrier();
  if (lid == 0u) {
    let n = min(atomicLoad(&num_cand), MAX_TOP);
    for (var a = 1u; a < n; a = a + 1u) {
      let id = cand_id[a];
      let v = cand_val[a];
      var b = a;
      while (b > 0u && (cand_val[b - 1u] < v || (cand_val[b - 1u] == v && cand_id[b - 1u] > id))) {
        cand_id[b] = cand_id[b - 1u];
        cand_val[b] = cand_val[b - 1u];
        b = b - 1u;
      }
      cand_id[b] = id;
      cand_val[b] = v;
    }
  }
  workgroupBarrier();
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid3: vec3u) {
  lid = lid3.x;
  vocab = u.vocab;
  let row = u.row_base + wid.x;
  let p = params[row];
  raw_base = u.elem_offset + wid.x * vocab;
  work_base = wid.x * vocab;
  has_pen = p.pen_count > 0u;
  has_proc = false;
  proc_base = (u.num_rows + wid.x) * vocab;
  inv_temp = p.inv_temp;
  if (p.mask_row != NONE || p.bias_count > 0u) {
    apply_processing(p);
    has_proc = true;
  }

  // 1. log_softmax normaliser of the raw row.
  var m = NEG_BIG;
  for (var i = lid; i < vocab; i = i + WG) { m = max(m, raw_at(i)); }
  let raw_max = reduce_max(m);
  var s = 0.0;
  for (var i = lid; i < vocab; i = i + WG) { s = s + exp(raw_at(i) - raw_max); }
  let lse = raw_max + log(reduce_sum(s));

  // 2. Penalties on a copy.
  if (p.pen_count > 0u) { apply_penalties(p); }

  // 3. The chosen token.
  var token = 0u;
  if (p.greedy != 0u) {
    token = argmax_penalised();
  } else {
    var pen_max = raw_max;
    if (p.pen_count > 0u) {
      var pm = NEG_BIG;
      for (var i = lid; i < vocab; i = i + WG) { pm = max(pm, pen_at(i)); }
      pen_max = reduce_max(pm);
    }
    // Scaling by a positive factor is monotone and correctly rounded, so this is max(z) exactly.
    zmax = pen_max * inv_temp;
    var floor_key = 0u;
    if (p.top_k > 0u) { floor_key = count_select(MODE_Z, p.top_k, 0u).x; }
    if (p.top_p < 1.0) { floor_key = mass_select(floor_key, p.top_p); }
    token = draw(floor_key, p.min_p, uniform_draw(p.seed_lo, p.seed_hi, p.step));
  }

  // 4. Top raw logprobs.
  if (p.num_top > 0u) { top_raw(p.num_top); }

  if (lid == 0u) {
    let out = row * RESULT_STRIDE;
    results[out] = token;
    results[out + 1u] = bitcast<u32>(raw_at(token) - lse);
    for (var j = 0u; j < p.num_top; j = j + 1u) {
      results[out + 2u + 2u * j] = cand_id[j];
      results[out + 3u + 2u * j] = bitcast<u32>(cand_val[j] - lse);
    }
  }
}
