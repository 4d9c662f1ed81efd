import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtemp, rm, readFile, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ReferenceModel } from '../support/reference-model.js';
import { loadModelConfig } from '../../src/checkpoint/config.js';
import { SafetensorsReader } from '../../src/checkpoint/safetensors.js';
import { writeSafetensors } from '../support/safetensors-writer.js';
import { loadCanonicalTensors } from '../../src/checkpoint/weights.js';
import { writeSyntheticModel } from '../support/synthetic-model.js';

const STORIES = '../shared/models/stories260K';
const STORY_START = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park.';

let root = '';
test.before(async () => {
  root = await mkdtemp(join(tmpdir(), 'reference-test-'));
});
test.after(async () => {
  await rm(root, { recursive: true, force: true });
});

function argmax(logits: Float32Array, row: number, vocab: number): number {
  let best = 0;
  for (let j = 1; j < vocab; j++) if (logits[row * vocab + j]! > logits[row * vocab + best]!) best = j;
  return best;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.is(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Logits of each token when fed one at a time (decode) after a reset. */
function decodeLogits(model: ReferenceModel, ids: number[]): Float32Array {
  model.reset();
  const vocab = model.config.vocabSize;
  const out = new Float32Array(ids.length * vocab);
  ids.forEach((id, t) => out.set(model.forward([id]), t * vocab));
  return out;
}

test('stories260K: greedy from BOS tells the published story', async () => {
  const model = await ReferenceModel.load(STORIES);
  const tokenizer = JSON.parse(await readFile(join(STORIES, 'tokenizer.json'), 'utf8'));
  const pieceById = new Map(Object.entries(tokenizer.model.vocab as Record<string, number>).map(([piece, id]) => [id, piece]));
  const ids: number[] = [];
  let logits = model.forward([1]);
  for (let i = 0; i < 60; i++) {
    const next = argmax(logits, 0, 512);
    ids.push(next);
    logits = model.forward([next]);
  }
  const text = ids
    .map((id) => pieceById.get(id))
    .join('')
    .replace(/▁/g, ' ')
    .trimStart();
  assert.ok(text.startsWith(STORY_START), text);
  assert.is(model.numTokens, 61);
});

test('stories260K: batch prefill logits == token-by-token decode logits == chunked prefill', async () => {
  const model = await ReferenceModel.load(STORIES);
  const ids = [1, 403, 407, 261, 378, 259, 280, 267, 392, 263, 413, 403, 20, 511, 7, 300, 301, 302, 450, 12, 33];
  const decoded = decodeLogits(model, ids);
  model.reset();
  const batch = model.forward(ids);
  assert.ok(maxAbsDiff(batch, decoded) < 1e-5, `prefill vs decode ${maxAbsDiff(batch, decoded)}`);
  model.reset();
  const chunks = [model.forward(ids.slice(0, 7)), model.forward(ids.slice(7, 8)), model.forward(ids.slice(8))];
  const chunked = new Float32Array(batch.length);
  let off = 0;
  for (const c of chunks) {
    chunked.set(c, off);
    off += c.length;
  }
  assert.ok(maxAbsDiff(chunked, decoded) < 1e-5, `chunked vs decode ${maxAbsDiff(chunked, decoded)}`);
  // Positions matter: the same token at another position gives other logits (rope and the cache are used).
  assert.ok(maxAbsDiff(batch.subarray(512 * 2, 512 * 3), decodeLogits(model, [ids[2]!]).subarray(0, 512)) > 1e-3);
  assert.throws(() => model.forward([512]), /outside the vocabulary/);
});

const small = { hiddenSize: 32, numLayers: 1, numHeads: 4, numKvHeads: 2, intermediateSize: 40, vocabSize: 64 } as const;

test('sliding window: a token at pos sees keys [pos - window + 1, pos] and nothing earlier', async () => {
  // One layer, so nothing outside the window can leak in through earlier layers.
  const windowed = await ReferenceModel.load(
    await writeSyntheticModel(join(root, 'mistral-w4'), { architecture: 'mistral', ...small, slidingWindow: 4, seed: 5 }),
  );
  const full = await ReferenceModel.load(
    await writeSyntheticModel(join(root, 'mistral-full'), { architecture: 'mistral', ...small, slidingWindow: null, seed: 5 }),
  );
  assert.is(windowed.config.slidingWindow, 4);
  const ids = [1, 9, 17, 3, 40, 22, 5, 61, 13, 30];
  const last = (m: ReferenceModel, tokens: number[]) => {
    m.reset();
    const l = m.forward(tokens);
    return l.subarray(l.length - 64);
  };
  const base = last(windowed, ids);
  const changedOutside = [1, 50, 51, 52, 53, 54, ...ids.slice(6)]; // positions 1..5 are outside pos 9's window [6, 9]
  assert.ok(maxAbsDiff(base, last(windowed, changedOutside)) < 1e-6, 'tokens outside the window must not matter');
  const changedAtEdge = [...ids.slice(0, 6), 44, ...ids.slice(7)]; // position 6 is inside
  assert.ok(maxAbsDiff(base, last(windowed, changedAtEdge)) > 1e-4, 'the oldest token in the window must matter');
  assert.ok(maxAbsDiff(last(full, ids), last(full, changedOutside)) > 1e-4, 'without a window every token matters');
  // Decode through the window equals prefill.
  windowed.reset();
  assert.ok(maxAbsDiff(windowed.forward(ids), decodeLogits(windowed, ids)) < 1e-5);
});

/** Rewrites a model's canonical tensors as a Llama checkpoint with attention_bias (q/k/v and o biases). */
async function asLlamaWithBias(srcDir: string, dstDir: string, zeroOBias: boolean): Promise<string> {
  const config = await loadModelConfig(srcDir);
  const reader = await SafetensorsReader.open(srcDir);
  const tensors: { name: string; dtype: 'F32'; shape: number[]; data: Float32Array }[] = [];
  const hfName: Record<string, string> = {
    embed: 'model.embed_tokens.weight',
    lm_head: 'lm_head.weight',
    norm: 'model.norm.weight',
    input_norm: 'input_layernorm.weight',
    post_norm: 'post_attention_layernorm.weight',
    q: 'self_attn.q_proj.weight',
    k: 'self_attn.k_proj.weight',
    v: 'self_attn.v_proj.weight',
    o: 'self_attn.o_proj.weight',
    q_bias: 'self_attn.q_proj.bias',
    k_bias: 'self_attn.k_proj.bias',
    v_bias: 'self_attn.v_proj.bias',
    o_bias: 'self_attn.o_proj.bias',
    gate: 'mlp.gate_proj.weight',
    up: 'mlp.up_proj.weight',
    down: 'mlp.down_proj.weight',
  };
  await loadCanonicalTensors(reader, config, 'f32', (t) => {
    const m = /^layers\.(\d+)\.(.+)$/.exec(t.name);
    const name = m ? `model.layers.${m[1]}.${hfName[m[2]!]}` : hfName[t.name]!;
    tensors.push({ name, dtype: 'F32', shape: t.shape, data: t.data as Float32Array });
  });
  await reader.close();
  if (zeroOBias) {
    for (let i = 0; i < config.numLayers; i++)
      tensors.push({ name: `model.layers.${i}.self_attn.o_proj.bias`, dtype: 'F32', shape: [config.hiddenSize], data: new Float32Array(config.hiddenSize) });
  }
  await mkdir(dstDir, { recursive: true });
  const srcConfig = JSON.parse(await readFile(join(srcDir, 'config.json'), 'utf8'));
  await writeFile(
    join(dstDir, 'config.json'),
    JSON.stringify({
      ...srcConfig,
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      attention_bias: true,
      bias: undefined,
      use_sliding_window: undefined,
    }),
  );
  await writeSafetensors(join(dstDir, 'model.safetensors'), tensors);
  return dstDir;
}

test('InternLM2 (packed wqkv, wqkv and wo biases) == the same weights as a Llama with attention_bias', async () => {
  const src = await writeSyntheticModel(join(root, 'internlm2'), {
    architecture: 'internlm2',
    hiddenSize: 48,
    numLayers: 2,
    numHeads: 6,
    numKvHeads: 2,
    intermediateSize: 40,
    vocabSize: 64,
    qkvBias: true,
    seed: 11,
  });
  const internlm = await ReferenceModel.load(src);
  const llama = await ReferenceModel.load(await asLlamaWithBias(src, join(root, 'internlm2-as-llama'), false));
  assert.equal([internlm.config.qkvBias, internlm.config.oBias, llama.config.oBias], [true, true, true]);
  const ids = [1, 5, 33, 7, 60, 2, 19];
  const a = internlm.forward(ids),
    b = llama.forward(ids);
  assert.ok(maxAbsDiff(a, b) < 1e-6, `${maxAbsDiff(a, b)}`);
});

test('Qwen2 q/k/v biases: equal a Llama with the same biases and a zero o bias; biases change the output', async () => {
  const src = await writeSyntheticModel(join(root, 'qwen2'), {
    architecture: 'qwen2',
    hiddenSize: 32,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    headDim: 16,
    intermediateSize: 40,
    vocabSize: 64,
    tieWordEmbeddings: true,
    dtype: 'F16',
    seed: 2,
  });
  const qwen = await ReferenceModel.load(src);
  assert.is(qwen.config.headDim, 16);
  const llama = await ReferenceModel.load(await asLlamaWithBias(src, join(root, 'qwen2-as-llama'), true));
  const ids = [1, 44, 3, 3, 63, 12];
  const a = qwen.forward(ids);
  assert.ok(maxAbsDiff(a, llama.forward(ids)) < 1e-6);
  assert.ok(maxAbsDiff(a, decodeLogits(qwen, ids)) < 1e-5, 'prefill == decode with headDim != hidden/heads');
  // The checkpoint's biases are not zero, so dropping them must change the logits (they are really applied).
  const noBiasDir = join(root, 'qwen2-no-bias');
  await asLlamaWithBias(src, noBiasDir, true);
  const st = await SafetensorsReader.open(noBiasDir);
  const tensors = await Promise.all(
    [...st.tensors.values()].map(async (t) => ({
      name: t.name,
      dtype: 'F32' as const,
      shape: t.shape,
      data: t.name.endsWith('.bias') ? new Float32Array(t.shape[0]!) : await st.read(t.name, 'f32'),
    })),
  );
  await st.close();
  await writeSafetensors(join(noBiasDir, 'model.safetensors'), tensors);
  const noBias = await ReferenceModel.load(noBiasDir);
  assert.ok(maxAbsDiff(a, noBias.forward(ids)) > 1e-4);
});

test('dynamic NTK (transformers): the plain theta up to max_position_embeddings, past it a model whose theta is the grown base', async () => {
  const small = { architecture: 'llama' as const, hiddenSize: 32, numLayers: 2, numHeads: 4, numKvHeads: 2, intermediateSize: 40, vocabSize: 64, seed: 3 };
  const dynamic = await ReferenceModel.load(
    await writeSyntheticModel(join(root, 'dyn'), { ...small, maxPositionEmbeddings: 8, ropeScaling: { type: 'dynamic', factor: 2.0 } }),
  );
  // head_dim 8: base(len) = 10000 * (2 * len / 8 - 1) ^ (8 / 6).
  const grownTheta = 10000 * ((2 * 12) / 8 - 1) ** (8 / 6);
  const plain = await ReferenceModel.load(await writeSyntheticModel(join(root, 'dyn-plain'), { ...small, maxPositionEmbeddings: 8 }));
  const grown = await ReferenceModel.load(await writeSyntheticModel(join(root, 'dyn-grown'), { ...small, maxPositionEmbeddings: 8, ropeTheta: grownTheta }));
  const ids = [1, 9, 17, 3, 44, 60, 2, 31, 8, 12, 50, 7];
  assert.ok(maxAbsDiff(dynamic.forward(ids.slice(0, 8)), plain.forward(ids.slice(0, 8))) === 0, 'within 8 positions: the plain frequencies');
  dynamic.reset();
  const all = dynamic.forward(ids);
  assert.ok(maxAbsDiff(all, grown.forward(ids)) === 0, '12 tokens in one forward: every token with base(12)');
  assert.ok(maxAbsDiff(all, plain.forward(ids)) > 1e-3, 'and that differs from the plain frequencies');
  // 8 tokens, then 4 more: the first 8 keys keep the plain rotation they were cached with.
  dynamic.reset();
  dynamic.forward(ids.slice(0, 8));
  const chunked = dynamic.forward(ids.slice(8));
  assert.ok(maxAbsDiff(chunked, all.subarray(8 * 64)) > 1e-4, 'cached keys are not re-rotated');
});

test.run();
