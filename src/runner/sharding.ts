// Megatron-style tensor-parallel layout: which rows of each canonical tensor a shard holds.
// q/k/v and gate/up are split by output rows (heads / intermediate rows), o and down by input columns,
// embedding and lm_head by vocabulary; 4-bit o/down only on group boundaries (per-channel ones anywhere
// that leaves each shard a power-of-two width). Pure functions: no GPU, easy to test.
import type { ModelConfig } from '../checkpoint/config.js';
import { q4TensorGroupSizes } from '../checkpoint/weights.js';

export interface ShardLayout {
  tp: number;
  rank: number;
  numHeads: number; // query heads on this shard
  numKvHeads: number; // kv heads on this shard (1 when kv heads are replicated)
  firstHead: number; // first query head
  kvHeadIndices: number[]; // global kv heads held, in order
  intermediate: number; // intermediate rows on this shard
  firstIntermediate: number;
  vocabStart: number; // vocabulary rows [vocabStart, vocabEnd)
  vocabEnd: number;
}

/** Validates that the model can be split tp ways and returns shard `rank`'s layout; throws a clear error otherwise. */
export function shardLayout(config: ModelConfig, tp: number, rank: number): ShardLayout {
  const problems: string[] = [];
  if (config.numHeads % tp !== 0) problems.push(`num_attention_heads ${config.numHeads} is not divisible by tp ${tp}`);
  if (config.numKvHeads % tp !== 0 && tp % config.numKvHeads !== 0) {
    problems.push(`num_key_value_heads ${config.numKvHeads} must divide or be divisible by tp ${tp}`);
  }
  if (config.intermediateSize % tp !== 0) problems.push(`intermediate_size ${config.intermediateSize} is not divisible by tp ${tp}`);
  if (tp > 1 && problems.length === 0) problems.push(...q4SplitProblems(config, tp));
  if (problems.length) throw new Error(`cannot split this model over ${tp} devices: ${problems.join('; ')}`);
  const numHeads = config.numHeads / tp;
  const firstHead = rank * numHeads;
  let kvHeadIndices: number[];
  if (config.numKvHeads >= tp) {
    const perShard = config.numKvHeads / tp;
    kvHeadIndices = Array.from({ length: perShard }, (_, i) => rank * perShard + i);
  } else {
    // Fewer kv heads than shards: each shard keeps a copy of the one kv head its query heads use.
    const queriesPerKv = config.numHeads / config.numKvHeads;
    kvHeadIndices = [Math.floor(firstHead / queriesPerKv)];
  }
  const intermediate = config.intermediateSize / tp;
  const vocabPerShard = Math.ceil(config.vocabSize / tp);
  const vocabStart = Math.min(config.vocabSize, rank * vocabPerShard);
  const vocabEnd = Math.min(config.vocabSize, vocabStart + vocabPerShard);
  return {
    tp,
    rank,
    numHeads,
    numKvHeads: kvHeadIndices.length,
    firstHead,
    kvHeadIndices,
    intermediate,
    firstIntermediate: rank * intermediate,
    vocabStart,
    vocabEnd,
  };
}

/**
 * Row-parallel 4-bit projections (o, down) are split by input columns, which must fall on group
 * boundaries: one problem per (projection, group size) whose per-shard width is not whole groups.
 */
function q4SplitProblems(config: ModelConfig, tp: number): string[] {
  const problems = new Set<string>();
  for (const [name, g] of q4TensorGroupSizes(config)) {
    const part = name.slice(name.lastIndexOf('.') + 1);
    const cols = part === 'o' ? config.numHeads * config.headDim : part === 'down' ? config.intermediateSize : 0;
    if (cols === 0 || (cols / tp) % g === 0) continue;
    // One group per row (per-channel): each shard's part becomes one group of its own (common/q4.ts);
    // in features are then a power of two (q4GroupSize), so any tp that divides them leaves one too.
    if (g === cols) continue;
    problems.add(
      `the 4-bit ${part === 'o' ? 'o_proj' : 'down_proj'} has ${cols} in features in groups of ${g} (quantization_config group_size), so a shard's ${cols / tp} ` +
        `columns are not whole groups; use a tp degree that divides in_features / group_size = ${cols / g}`,
    );
  }
  return [...problems];
}

type Rows = Float32Array | Uint16Array;

/** Rows [start, start+count) of a row-major [rows, cols] matrix (a view when possible). */
export function sliceRows<T extends Rows>(data: T, cols: number, start: number, count: number): T {
  return data.subarray(start * cols, (start + count) * cols) as T;
}

/** Columns [start, start+count) of a row-major [rows, cols] matrix, as a new [rows, count] matrix. */
export function sliceCols<T extends Rows>(data: T, rows: number, cols: number, start: number, count: number): T {
  const out = new (data.constructor as { new (n: number): T })(rows * count);
  for (let r = 0; r < rows; r++) out.set(data.subarray(r * cols + start, r * cols + start + count), r * count);
  return out;
}

/** Concatenates row-major matrices with the same column count. */
export function concatRows<T extends Rows>(parts: readonly T[]): T {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new (parts[0]!.constructor as { new (n: number): T })(total);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** The rows of a q/k/v-shaped tensor (or bias) for the given heads. */
export function headRows<T extends Rows>(data: T, cols: number, headDim: number, heads: readonly number[]): T {
  return concatRows(heads.map((h) => sliceRows(data, cols, h * headDim, headDim)));
}
