// Row gathers: token embeddings from a (possibly chunked, f32 or f16) table, and f32 activation rows.
// Entry `gather_f32` / `gather_f16_packed` (one dispatch per table chunk):
//   0 table: chunk rows [row_start, row_end), row r at (r - row_start) * row_stride, as array<f32> or as
//     array<u32> holding f16 pairs (element f at word f >> 1, half f & 1, via unpack2x16float);
//   1 ids: array<u32> [num_tokens]; 2 out: array<f32> (read_write) [num_tokens, cols]; 3 params: uniform.
//   Tokens whose id lies outside the chunk are skipped (another chunk's dispatch writes them).
// Entry `gather_rows`: 0 src: array<f32> [*, cols]; 1 rows: array<u32> [num_tokens];
//   2 out: array<f32> (read_write) [num_tokens, cols]; 3 params (num_tokens, cols; the rest unused).
// Entry `gather_f16`: as gather_f16_packed but with native f16 loads (table as array<f16>).
// Assembled by src/kernels/embedding.ts from sections (`//#section <name>` lines): `common` (params,
//   bindings, source_index), then `portable` (gather_f32, gather_f16_packed, gather_rows) or, only on
//   devices with shader-f16, `native_f16` (gather_f16; the section declares the f16 it requires).
// Workgroup: 256 threads, one output element each; the grid may be 2-D past 65535 workgroups.
// Tested against: host-side gathers in test/gpu/pointwise.test.ts (f32, f16 packed and native,
//   forced multi-chunk tables, odd cols).

//#section common
struct Params { num_tokens: u32, cols: u32, row_start: u32, row_end: u32, row_stride: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

@group(0) @binding(0) var<storage, read> table_f32: array<f32>;
@group(0) @binding(0) var<storage, read> table_packed: array<u32>;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

/** The table element this thread copies (flat index inside the chunk), or -1 when it has none. */
fn source_index(gid: vec3u, nwg: vec3u) -> i32 {
  let idx = gid.x + gid.y * nwg.x * 256u;
  if (idx >= params.num_tokens * params.cols) { return -1; }
  let t = idx / params.cols;
  let id = ids[t];
  if (id < params.row_start || id >= params.row_end) { return -1; }
  return i32((id - params.row_start) * params.row_stride + (idx - t * params.cols));
}

//#section portable
@compute @workgroup_size(256)
fn gather_f32(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let src = source_index(gid, nwg);
  if (src < 0) { return; }
  out[gid.x + gid.y * nwg.x * 256u] = table_f32[u32(src)];
}

@compute @workgroup_size(256)
fn gather_f16_packed(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let src = source_index(gid, nwg);
  if (src < 0) { return; }
  let f = u32(src);
  out[gid.x + gid.y * nwg.x * 256u] = unpack2x16float(table_packed[f >> 1u])[f & 1u];
}

@compute @workgroup_size(256)
fn gather_rows(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let idx = gid.x + gid.y * nwg.x * 256u;
  if (idx >= params.num_tokens * params.cols) { return; }
  let t = idx / params.cols;
  out[idx] = table_f32[ids[t] * params.cols + (idx - t * params.cols)];
}

//#section native_f16
// requires: f16
@group(0) @binding(0) var<storage, read> table_f16: array<f16>;

@compute @workgroup_size(256)
fn gather_f16(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let src = source_index(gid, nwg);
  if (src < 0) { return; }
  out[gid.x + gid.y * nwg.x * 256u] = f32(table_f16[u32(src)]);
}
