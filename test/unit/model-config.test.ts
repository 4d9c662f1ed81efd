import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadModelConfig, parseModelConfig } from '../../src/checkpoint/config.js';

const STORIES = '../shared/models/stories260K';

const llamaBase = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  hidden_size: 64,
  intermediate_size: 172,
  num_hidden_layers: 5,
  num_attention_heads: 8,
  num_key_value_heads: 4,
  vocab_size: 512,
};

test('stories260K config.json + generation_config.json', async () => {
  const c = await loadModelConfig(STORIES);
  assert.equal(c, {
    architecture: 'llama',
    hfArchitecture: 'LlamaForCausalLM',
    hiddenSize: 64,
    numLayers: 5,
    numHeads: 8,
    numKvHeads: 4,
    headDim: 8,
    intermediateSize: 172,
    vocabSize: 512,
    rmsNormEps: 1e-5,
    rope: { theta: 10000, rotaryDim: 8, scaling: null },
    maxPositionEmbeddings: 512,
    tieWordEmbeddings: true,
    slidingWindow: null,
    qkvBias: false,
    oBias: false,
    bosTokenId: 1,
    eosTokenIds: [2],
    torchDtype: 'float32',
  });
});

test('head_dim: derived when absent, taken when present (and != hidden/heads)', () => {
  const noHeadDim = parseModelConfig({ ...llamaBase, head_dim: undefined });
  assert.is(noHeadDim.headDim, 8);
  const explicit = parseModelConfig({ ...llamaBase, head_dim: 16 });
  assert.is(explicit.headDim, 16);
  assert.is(explicit.rope.rotaryDim, 16);
  assert.is(parseModelConfig({ ...llamaBase, head_dim: null }).headDim, 8);
  assert.throws(() => parseModelConfig({ ...llamaBase, num_attention_heads: 6, num_key_value_heads: 3 }), /set head_dim/);
  assert.throws(() => parseModelConfig({ ...llamaBase, num_key_value_heads: 3 }), /multiple of num_key_value_heads 3/);
});

test('defaults: kv heads = heads, eps, theta, untied, float32', () => {
  const c = parseModelConfig({ ...llamaBase, num_key_value_heads: undefined });
  assert.is(c.numKvHeads, 8);
  assert.is(c.rmsNormEps, 1e-6);
  assert.is(c.rope.theta, 10000);
  assert.is(c.tieWordEmbeddings, false);
  assert.is(c.torchDtype, 'float32');
  assert.is(c.maxPositionEmbeddings, 2048);
  assert.is(c.bosTokenId, null);
  assert.equal(c.eosTokenIds, []);
});

test('llama attention_bias covers q/k/v and o', () => {
  const c = parseModelConfig({ ...llamaBase, attention_bias: true });
  assert.is(c.qkvBias, true);
  assert.is(c.oBias, true);
});

test('mistral: sliding_window number or null', () => {
  const base = { ...llamaBase, architectures: ['MistralForCausalLM'], model_type: 'mistral' };
  const c = parseModelConfig({ ...base, sliding_window: 4096, torch_dtype: 'bfloat16' });
  assert.is(c.architecture, 'mistral');
  assert.is(c.slidingWindow, 4096);
  assert.is(c.torchDtype, 'bfloat16');
  assert.is(c.maxPositionEmbeddings, 131072);
  assert.is(parseModelConfig({ ...base, sliding_window: null }).slidingWindow, null);
  assert.is(c.qkvBias, false);
});

test('qwen2: q/k/v biases, no o bias, sliding window only with use_sliding_window', () => {
  const base = { ...llamaBase, architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', tie_word_embeddings: true, sliding_window: 32 };
  const c = parseModelConfig({ ...base, use_sliding_window: false, max_window_layers: 5 });
  assert.is(c.architecture, 'qwen2');
  assert.is(c.qkvBias, true);
  assert.is(c.oBias, false);
  assert.is(c.slidingWindow, null);
  assert.is(c.tieWordEmbeddings, true);
  assert.is(parseModelConfig({ ...base, use_sliding_window: true, max_window_layers: 0 }).slidingWindow, 32);
  assert.is(parseModelConfig({ ...base, use_sliding_window: true, max_window_layers: 5 }).slidingWindow, null);
  assert.throws(() => parseModelConfig({ ...base, use_sliding_window: true, max_window_layers: 2 }), /max_window_layers=2/);
});

test('internlm2: bias applies to wqkv and wo, default true', () => {
  const base = { ...llamaBase, architectures: ['InternLM2ForCausalLM'], model_type: 'internlm2' };
  const withBias = parseModelConfig(base);
  assert.is(withBias.architecture, 'internlm2');
  assert.equal([withBias.qkvBias, withBias.oBias], [true, true]);
  const noBias = parseModelConfig({ ...base, bias: false, rope_scaling: { type: 'dynamic', factor: 2.0 }, max_position_embeddings: 1024 });
  assert.equal([noBias.qkvBias, noBias.oBias], [false, false]);
  assert.equal(noBias.rope.scaling, { type: 'dynamic', factor: 2, originalMaxPositionEmbeddings: 1024 });
  assert.is(noBias.maxPositionEmbeddings, 2048, 'dynamic NTK serves original * factor, like vLLM');
});

test('rope_scaling variants (type and rope_type keys)', () => {
  const parse = (rope_scaling: unknown) => parseModelConfig({ ...llamaBase, max_position_embeddings: 4096, rope_scaling }).rope.scaling;
  assert.is(parse(null), null);
  assert.is(parse({ rope_type: 'default' }), null);
  assert.equal(parse({ type: 'linear', factor: 4 }), { type: 'linear', factor: 4 });
  assert.equal(parse({ rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 }), {
    type: 'llama3',
    factor: 8,
    lowFreqFactor: 1,
    highFreqFactor: 4,
    originalMaxPositionEmbeddings: 8192,
  });
  assert.equal(parse({ type: 'yarn', factor: 4, original_max_position_embeddings: 1024 }), {
    type: 'yarn',
    factor: 4,
    originalMaxPositionEmbeddings: 1024,
    betaFast: 32,
    betaSlow: 1,
    mscale: 0,
    mscaleAllDim: 0,
    attentionFactor: null,
  });
  assert.equal(parse({ rope_type: 'yarn', factor: 2, beta_fast: 16, beta_slow: 2, mscale: 1, mscale_all_dim: 1, attention_factor: 0.5 }), {
    type: 'yarn',
    factor: 2,
    originalMaxPositionEmbeddings: 4096,
    betaFast: 16,
    betaSlow: 2,
    mscale: 1,
    mscaleAllDim: 1,
    attentionFactor: 0.5,
  });
  assert.throws(() => parse({ type: 'longrope', short_factor: [1] }), /"longrope" is not supported; supported: linear, dynamic, llama3, yarn/);
  assert.throws(() => parse({ type: 'linear' }), /needs a factor/);
});

test('eos_token_id: number or list, union of config and generation config', () => {
  const a = parseModelConfig({ ...llamaBase, eos_token_id: 2 }, { eos_token_id: [2, 32000] });
  assert.equal(a.eosTokenIds, [2, 32000]);
  const b = parseModelConfig({ ...llamaBase, bos_token_id: 128000, eos_token_id: [128001, 128008] }, { eos_token_id: 128009 });
  assert.equal(b.eosTokenIds, [128001, 128008, 128009]);
  assert.is(b.bosTokenId, 128000);
  const c = parseModelConfig({ ...llamaBase }, { bos_token_id: 1, eos_token_id: null });
  assert.is(c.bosTokenId, 1);
  assert.equal(c.eosTokenIds, []);
  assert.throws(() => parseModelConfig({ ...llamaBase, eos_token_id: 'x' }), /eos_token_id/);
});

test('unsupported architecture lists the supported HF names', () => {
  try {
    parseModelConfig({ ...llamaBase, architectures: ['GPT2LMHeadModel'] });
    assert.unreachable('should throw');
  } catch (err) {
    const msg = (err as Error).message;
    assert.match(msg, /GPT2LMHeadModel/);
    for (const name of ['LlamaForCausalLM', 'MistralForCausalLM', 'Qwen2ForCausalLM', 'InternLM2ForCausalLM']) assert.ok(msg.includes(name), name);
  }
  assert.throws(() => parseModelConfig({ ...llamaBase, architectures: undefined }), /supported: LlamaForCausalLM/);
});

test('missing or malformed fields name the field', () => {
  assert.throws(() => parseModelConfig({ ...llamaBase, hidden_size: undefined }), /missing hidden_size/);
  assert.throws(() => parseModelConfig({ ...llamaBase, vocab_size: '512' }), /vocab_size must be/);
  assert.throws(() => parseModelConfig({ ...llamaBase, torch_dtype: 'int8' }), /torch_dtype "int8"/);
  assert.throws(() => parseModelConfig([1, 2]), /config.json must be a JSON object/);
});

test('loadModelConfig: missing folder says what it expected', async () => {
  try {
    await loadModelConfig('/nonexistent/model');
    assert.unreachable('should throw');
  } catch (err) {
    assert.match((err as Error).message, /config.json.*Hugging Face model folder/);
  }
});

test.run();
