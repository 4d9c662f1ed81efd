import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtemp, rm, mkdir, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModelConfig, parseModelConfig, type ModelConfig } from '../../src/checkpoint/config.js';
import { SafetensorsReader, f32ToF16Bits } from '../../src/checkpoint/safetensors.js';
import { writeSafetensors } from '../support/safetensors-writer.js';
import { canonicalTensorNames, loadCanonicalTensors, type CanonicalTensor } from '../../src/checkpoint/weights.js';
import { ConsoleLoadProgress, formatLoadSummary, type LoadProgress } from '../../src/common/progress.js';
import { writeSyntheticModel } from '../support/synthetic-model.js';

const STORIES = '../shared/models/stories260K';
let root = '';
test.before(async () => {
  root = await mkdtemp(join(tmpdir(), 'weights-test-'));
});
test.after(async () => {
  await rm(root, { recursive: true, force: true });
});

async function loadAll(dir: string, matrixDtype: 'f32' | 'f16' = 'f32', config?: ModelConfig, progress?: LoadProgress) {
  const cfg = config ?? (await loadModelConfig(dir));
  const reader = await SafetensorsReader.open(dir);
  const out: CanonicalTensor[] = [];
  try {
    await loadCanonicalTensors(
      reader,
      cfg,
      matrixDtype,
      (t) => {
        out.push(t);
      },
      progress,
    );
  } finally {
    await reader.close();
  }
  return out;
}

async function rejection(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
  } catch (err) {
    return (err as Error).message;
  }
  return assert.unreachable('should throw') as never;
}

test('canonical names: order, tied lm_head omitted, biases per architecture', async () => {
  const stories = await loadModelConfig(STORIES);
  const names = canonicalTensorNames(stories);
  assert.equal(names.slice(0, 10), [
    'embed',
    'layers.0.input_norm',
    'layers.0.q',
    'layers.0.k',
    'layers.0.v',
    'layers.0.o',
    'layers.0.post_norm',
    'layers.0.gate',
    'layers.0.up',
    'layers.0.down',
  ]);
  assert.is(names.length, 1 + 5 * 9 + 1);
  assert.is(names[names.length - 1], 'norm');
  const base = { hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 64 };
  const qwen = canonicalTensorNames(parseModelConfig({ ...base, architectures: ['Qwen2ForCausalLM'] }));
  assert.equal(qwen.slice(1, 10), [
    'layers.0.input_norm',
    'layers.0.q',
    'layers.0.k',
    'layers.0.v',
    'layers.0.q_bias',
    'layers.0.k_bias',
    'layers.0.v_bias',
    'layers.0.o',
    'layers.0.post_norm',
  ]);
  assert.is(qwen[qwen.length - 1], 'lm_head');
  const internlm = canonicalTensorNames(parseModelConfig({ ...base, architectures: ['InternLM2ForCausalLM'], bias: true }));
  assert.ok(internlm.includes('layers.1.o_bias') && internlm.includes('layers.1.v_bias'));
  const qwen3 = canonicalTensorNames(parseModelConfig({ ...base, architectures: ['Qwen3ForCausalLM'], head_dim: 16, tie_word_embeddings: true }));
  assert.equal(qwen3.slice(1, 9), [
    'layers.0.input_norm',
    'layers.0.q',
    'layers.0.k',
    'layers.0.v',
    'layers.0.q_norm',
    'layers.0.k_norm',
    'layers.0.o',
    'layers.0.post_norm',
  ]);
  assert.is(qwen3[qwen3.length - 1], 'norm');
  const internlm3 = canonicalTensorNames(parseModelConfig({ ...base, architectures: ['InternLM3ForCausalLM'], qkv_bias: true }));
  assert.ok(internlm3.includes('layers.1.q_bias') && !internlm3.includes('layers.1.o_bias') && internlm3.includes('lm_head'));
});

test('qwen3 and internlm3 synthetic checkpoints load under their HF names, q_norm/k_norm of shape [head_dim]', async () => {
  const small = { hiddenSize: 32, numLayers: 1, numHeads: 4, numKvHeads: 2, intermediateSize: 40, vocabSize: 64 };
  const qwen3 = await loadAll(await writeSyntheticModel(join(root, 'qwen3'), { architecture: 'qwen3', ...small, headDim: 12 }));
  const q3 = new Map(qwen3.map((t) => [t.name, t]));
  assert.equal(q3.get('layers.0.q_norm')!.shape, [12]);
  assert.equal(q3.get('layers.0.k_norm')!.shape, [12]);
  assert.equal(q3.get('layers.0.q')!.shape, [48, 32]);
  assert.equal(q3.get('layers.0.o')!.shape, [32, 48]);
  const internlm3 = await loadAll(await writeSyntheticModel(join(root, 'internlm3'), { architecture: 'internlm3', ...small, qkvBias: true }));
  assert.equal(
    internlm3.map((t) => t.name),
    canonicalTensorNames(await loadModelConfig(join(root, 'internlm3'))),
  );
  assert.ok(internlm3.some((t) => t.name === 'layers.0.k_bias'));
});

test('stories260K: shapes, values equal the HF tensors, tied lm_head not sent', async () => {
  const got = await loadAll(STORIES);
  const config = await loadModelConfig(STORIES);
  assert.equal(
    got.map((t) => t.name),
    canonicalTensorNames(config),
  );
  const byName = new Map(got.map((t) => [t.name, t]));
  assert.equal(byName.get('embed')!.shape, [512, 64]);
  assert.equal(byName.get('layers.4.k')!.shape, [32, 64]);
  assert.equal(byName.get('layers.4.down')!.shape, [64, 172]);
  const reader = await SafetensorsReader.open(STORIES);
  assert.equal(byName.get('layers.3.up')!.data, await reader.read('model.layers.3.mlp.up_proj.weight', 'f32'));
  assert.equal(byName.get('layers.2.post_norm')!.data, await reader.read('model.layers.2.post_attention_layernorm.weight', 'f32'));
  await reader.close();
});

test('matrixDtype f16: matrices as f16 bits, norms and biases as f32', async () => {
  const dir = await writeSyntheticModel(join(root, 'qwen'), {
    architecture: 'qwen2',
    hiddenSize: 24,
    numLayers: 2,
    numHeads: 6,
    numKvHeads: 2,
    intermediateSize: 40,
    vocabSize: 50,
    dtype: 'BF16',
    seed: 3,
  });
  const f32 = new Map((await loadAll(dir, 'f32')).map((t) => [t.name, t]));
  const f16 = await loadAll(dir, 'f16');
  for (const t of f16) {
    const matrix = t.shape.length === 2;
    assert.is(t.dtype, matrix ? 'f16' : 'f32', t.name);
    assert.instance(t.data, matrix ? Uint16Array : Float32Array);
    const ref = f32.get(t.name)!.data as Float32Array;
    assert.equal(Array.from(t.data), Array.from(matrix ? f32ToF16Bits(ref) : ref), t.name);
  }
  assert.equal(f32.get('layers.1.k_bias')!.shape, [8]);
});

test('synthetic model: sharded (index + 3 files) loads exactly like one file; seeds matter', async () => {
  const options = {
    architecture: 'llama',
    hiddenSize: 32,
    numLayers: 3,
    numHeads: 4,
    numKvHeads: 1,
    intermediateSize: 48,
    vocabSize: 70,
    dtype: 'F16',
    seed: 9,
  } as const;
  const one = await loadAll(await writeSyntheticModel(join(root, 'one'), options));
  const shardedDir = await writeSyntheticModel(join(root, 'sharded'), { ...options, numShards: 3 });
  const index = JSON.parse(await readFile(join(shardedDir, 'model.safetensors.index.json'), 'utf8'));
  assert.is(new Set(Object.values(index.weight_map)).size, 3);
  const sharded = await loadAll(shardedDir);
  assert.equal(
    sharded.map((t) => t.name),
    one.map((t) => t.name),
  );
  sharded.forEach((t, i) => assert.equal(t.data, one[i]!.data, t.name));
  const other = await loadAll(await writeSyntheticModel(join(root, 'other-seed'), { ...options, seed: 10 }));
  assert.not.equal(other[2]!.data, one[2]!.data);
  // Matrices ~ N(0, 1/fan_in), norms in [0.9, 1.1].
  const q = one.find((t) => t.name === 'layers.0.q')!.data as Float32Array;
  const variance = q.reduce((a, x) => a + x * x, 0) / q.length;
  assert.ok(Math.abs(variance * 32 - 1) < 0.15, `variance*fan_in ${variance * 32}`);
  const norm = one.find((t) => t.name === 'norm')!.data as Float32Array;
  assert.ok(norm.every((x) => x >= 0.9 && x <= 1.1));
});

test('a missing tensor names the HF tensor; a wrong shape names tensor, expected and actual shape', async () => {
  const dir = await writeSyntheticModel(join(root, 'llama'), {
    architecture: 'llama',
    hiddenSize: 16,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    intermediateSize: 24,
    vocabSize: 40,
  });
  const configJson = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
  const missing = await rejection(() => loadAll(dir, 'f32', parseModelConfig({ ...configJson, num_hidden_layers: 3 })));
  assert.match(missing, /tensor "model.layers.2.input_layernorm.weight" \(layers.2.input_norm\) is missing/);
  const badShape = await rejection(() => loadAll(dir, 'f32', parseModelConfig({ ...configJson, intermediate_size: 20 })));
  assert.match(badShape, /tensor "model.layers.0.mlp.gate_proj.weight" \(layers.0.gate\) has shape \[24, 16\], but config.json implies \[20, 16\]/);
  const tied = await writeSyntheticModel(join(root, 'tied'), {
    architecture: 'llama',
    hiddenSize: 16,
    numLayers: 1,
    numHeads: 4,
    numKvHeads: 2,
    intermediateSize: 24,
    vocabSize: 40,
    tieWordEmbeddings: true,
  });
  const untied = parseModelConfig({ ...JSON.parse(await readFile(join(tied, 'config.json'), 'utf8')), tie_word_embeddings: false });
  assert.match(await rejection(() => loadAll(tied, 'f32', untied)), /tensor "lm_head.weight" \(lm_head\) is missing/);
});

test('InternLM2: packed wqkv (+bias) splits into the un-packed q, k, v', async () => {
  // 6 query heads over 2 kv heads (group 3), headDim 4, hidden 24: wqkv rows per kv head h are
  // [q_{3h}, q_{3h+1}, q_{3h+2}, k_h, v_h], 4 rows each.
  const hidden = 24,
    headDim = 4,
    numHeads = 6,
    numKvHeads = 2,
    group = 3,
    ffn = 20,
    vocab = 30;
  let s = 7;
  const rand = (n: number) => Float32Array.from({ length: n }, () => (s = (s * 48271) % 2147483647) / 2147483647 - 0.5);
  const q = rand(numHeads * headDim * hidden),
    k = rand(numKvHeads * headDim * hidden),
    v = rand(numKvHeads * headDim * hidden);
  const qb = rand(numHeads * headDim),
    kb = rand(numKvHeads * headDim),
    vb = rand(numKvHeads * headDim);
  const pack = (qs: Float32Array, ks: Float32Array, vs: Float32Array, row: number) => {
    const rows: Float32Array[] = [];
    const head = (m: Float32Array, i: number) => m.subarray(i * headDim * row, (i + 1) * headDim * row);
    for (let h = 0; h < numKvHeads; h++) {
      for (let j = 0; j < group; j++) rows.push(head(qs, h * group + j));
      rows.push(head(ks, h), head(vs, h));
    }
    const out = new Float32Array(rows.reduce((a, r) => a + r.length, 0));
    let off = 0;
    for (const r of rows) {
      out.set(r, off);
      off += r.length;
    }
    return out;
  };
  const dir = join(root, 'internlm2');
  await mkdir(dir);
  await writeFile(
    join(dir, 'config.json'),
    JSON.stringify({
      architectures: ['InternLM2ForCausalLM'],
      hidden_size: hidden,
      intermediate_size: ffn,
      num_hidden_layers: 1,
      num_attention_heads: numHeads,
      num_key_value_heads: numKvHeads,
      vocab_size: vocab,
      bias: true,
    }),
  );
  const packedRows = (numHeads + 2 * numKvHeads) * headDim;
  await writeSafetensors(join(dir, 'model.safetensors'), [
    { name: 'model.tok_embeddings.weight', dtype: 'F32', shape: [vocab, hidden], data: rand(vocab * hidden) },
    { name: 'model.layers.0.attention.wqkv.weight', dtype: 'F32', shape: [packedRows, hidden], data: pack(q, k, v, hidden) },
    { name: 'model.layers.0.attention.wqkv.bias', dtype: 'F32', shape: [packedRows], data: pack(qb, kb, vb, 1) },
    { name: 'model.layers.0.attention.wo.weight', dtype: 'F32', shape: [hidden, numHeads * headDim], data: rand(hidden * numHeads * headDim) },
    { name: 'model.layers.0.attention.wo.bias', dtype: 'F32', shape: [hidden], data: rand(hidden) },
    { name: 'model.layers.0.attention_norm.weight', dtype: 'F32', shape: [hidden], data: rand(hidden) },
    { name: 'model.layers.0.ffn_norm.weight', dtype: 'F32', shape: [hidden], data: rand(hidden) },
    { name: 'model.layers.0.feed_forward.w1.weight', dtype: 'F32', shape: [ffn, hidden], data: rand(ffn * hidden) },
    { name: 'model.layers.0.feed_forward.w3.weight', dtype: 'F32', shape: [ffn, hidden], data: rand(ffn * hidden) },
    { name: 'model.layers.0.feed_forward.w2.weight', dtype: 'F32', shape: [hidden, ffn], data: rand(ffn * hidden) },
    { name: 'model.norm.weight', dtype: 'F32', shape: [hidden], data: rand(hidden) },
    { name: 'output.weight', dtype: 'F32', shape: [vocab, hidden], data: rand(vocab * hidden) },
  ]);
  const got = new Map((await loadAll(dir)).map((t) => [t.name, t]));
  assert.equal(got.get('layers.0.q')!.shape, [numHeads * headDim, hidden]);
  assert.equal(got.get('layers.0.k')!.shape, [numKvHeads * headDim, hidden]);
  assert.equal(got.get('layers.0.q')!.data, q);
  assert.equal(got.get('layers.0.k')!.data, k);
  assert.equal(got.get('layers.0.v')!.data, v);
  assert.equal(got.get('layers.0.q_bias')!.data, qb);
  assert.equal(got.get('layers.0.k_bias')!.data, kb);
  assert.equal(got.get('layers.0.v_bias')!.data, vb);
  assert.equal(got.get('layers.0.o_bias')!.shape, [hidden]);
  assert.ok(got.has('lm_head') && got.has('layers.0.gate') && got.has('layers.0.down'));
  const f16 = new Map((await loadAll(dir, 'f16')).map((t) => [t.name, t]));
  assert.equal(Array.from(f16.get('layers.0.v')!.data), Array.from(f32ToF16Bits(v)));
});

test('progress: bytes reported add up, non-TTY prints one summary line, TTY draws a bar', async () => {
  const dir = await writeSyntheticModel(join(root, 'prog'), {
    architecture: 'mistral',
    hiddenSize: 16,
    numLayers: 3,
    numHeads: 2,
    numKvHeads: 1,
    intermediateSize: 24,
    vocabSize: 40,
    slidingWindow: 8,
  });
  const events: string[] = [];
  let total = 0,
    advanced = 0;
  await loadAll(dir, 'f16', undefined, {
    start: (bytes, layers) => {
      total = bytes;
      events.push(`start ${layers}`);
    },
    advance: (bytes) => {
      advanced += bytes;
    },
    finish: () => events.push('finish'),
  });
  assert.equal(events, ['start 3', 'finish']);
  // f16 matrices: embed + lm_head 2*40*16, per layer q 16*16 + k,v 2*8*16 + o 16*16 + 3*24*16; f32 norms 2*16 per layer + 16.
  const expected = 2 * (2 * 40 * 16 + 3 * (256 + 256 + 256 + 3 * 384)) + 4 * (3 * 32 + 16);
  assert.is(total, expected);
  assert.is(advanced, expected);

  let plain = '';
  const p = new ConsoleLoadProgress({
    write: (t: string) => {
      plain += t;
    },
    isTTY: false,
  });
  await loadAll(dir, 'f32', undefined, p);
  // f32 this time: 4 * (2 * 40 * 16 + 3 * 1920 + 3 * 32 + 16) = 28608 bytes, as common/bytes.ts formats them.
  assert.match(plain, /^\[model\] loaded 3 layers, 28\.6 kB in \d+\.\d s\n$/);
  let tty = '';
  const clock = { t: 0 };
  const bar = new ConsoleLoadProgress(
    {
      write: (t: string) => {
        tty += t;
      },
      isTTY: true,
    },
    '[model]',
    () => (clock.t += 1000),
  );
  await loadAll(dir, 'f32', undefined, bar);
  assert.match(tty, /\r\[model\] \[#+-*\] +\d+% /);
  assert.match(tty, /100% 28\.6 kB\/28\.6 kB [\d.]+ [kMG]?B\/s lm_head/);
  assert.ok(tty.endsWith(`\r\x1b[K[model] ${bar.summary}\n`));
  assert.is(formatLoadSummary(12, 152_600_000, 1.23), 'loaded 12 layers, 152.6 MB in 1.2 s');
});

test.run();
