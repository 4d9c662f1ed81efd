import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadModelConfig, parseModelConfig } from '../../src/checkpoint/config.js';
import { checkModelFormat, describeWeightFormat, isQuantizedLinear } from '../../src/checkpoint/quantization.js';

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
    qkNorm: false,
    bosTokenId: 1,
    eosTokenIds: [2],
    torchDtype: 'float32',
    quantization: null,
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

test('internlm2.5-7b-chat: dynamic NTK factor 2 over 32768 positions', () => {
  const c = parseModelConfig({
    architectures: ['InternLM2ForCausalLM'],
    model_type: 'internlm2',
    hidden_size: 4096,
    intermediate_size: 14336,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    vocab_size: 92544,
    bias: false,
    max_position_embeddings: 32768,
    rope_theta: 1000000,
    rope_scaling: { type: 'dynamic', factor: 2.0 },
    rms_norm_eps: 1e-5,
    torch_dtype: 'bfloat16',
  });
  assert.equal(c.rope, { theta: 1000000, rotaryDim: 128, scaling: { type: 'dynamic', factor: 2, originalMaxPositionEmbeddings: 32768 } });
  assert.is(c.maxPositionEmbeddings, 65536);
});

test('qwen3 (Qwen3-0.6B config): q/k norm, explicit head_dim != hidden/heads, no biases, tied, sliding window unused', () => {
  const qwen3 = {
    architectures: ['Qwen3ForCausalLM'],
    model_type: 'qwen3',
    attention_bias: false,
    attention_dropout: 0.0,
    bos_token_id: 151643,
    eos_token_id: 151645,
    head_dim: 128,
    hidden_act: 'silu',
    hidden_size: 1024,
    intermediate_size: 3072,
    max_position_embeddings: 40960,
    max_window_layers: 28,
    num_attention_heads: 16,
    num_hidden_layers: 28,
    num_key_value_heads: 8,
    rms_norm_eps: 1e-6,
    rope_scaling: null,
    rope_theta: 1000000,
    sliding_window: null,
    tie_word_embeddings: true,
    torch_dtype: 'bfloat16',
    use_sliding_window: false,
    vocab_size: 151936,
  };
  const c = parseModelConfig(qwen3);
  assert.is(c.architecture, 'qwen3');
  assert.is(c.hfArchitecture, 'Qwen3ForCausalLM');
  assert.is(c.headDim, 128);
  assert.is(c.rope.rotaryDim, 128);
  assert.is(c.qkNorm, true);
  assert.equal([c.qkvBias, c.oBias], [false, false]);
  assert.is(c.tieWordEmbeddings, true);
  assert.is(c.slidingWindow, null);
  assert.is(c.maxPositionEmbeddings, 40960);
  assert.equal(c.eosTokenIds, [151645]);
  // attention_bias covers q/k/v and o; head_dim defaults to 128 (Qwen3Config), not hidden/heads; untied by default.
  const other = parseModelConfig({ ...qwen3, attention_bias: true, head_dim: undefined, tie_word_embeddings: undefined, sliding_window: 4096 });
  assert.equal([other.qkvBias, other.oBias, other.headDim, other.tieWordEmbeddings, other.slidingWindow], [true, true, 128, false, null]);
  assert.is(parseModelConfig({ ...qwen3, use_sliding_window: true, sliding_window: 4096, max_window_layers: 0 }).slidingWindow, 4096);
  assert.is(parseModelConfig({ ...llamaBase }).qkNorm, false);
});

test('internlm3 (InternLM3-8B-Instruct config): Llama layout, qkv_bias, head_dim, dynamic NTK', () => {
  const internlm3 = {
    architectures: ['InternLM3ForCausalLM'],
    auto_map: { AutoConfig: 'configuration_internlm3.InternLM3Config', AutoModelForCausalLM: 'modeling_internlm3.InternLM3ForCausalLM' },
    bias: false,
    bos_token_id: 1,
    eos_token_id: 2,
    head_dim: 128,
    hidden_act: 'silu',
    hidden_size: 4096,
    intermediate_size: 10240,
    max_position_embeddings: 32768,
    model_type: 'internlm3',
    num_attention_heads: 32,
    num_hidden_layers: 48,
    num_key_value_heads: 2,
    qkv_bias: false,
    rms_norm_eps: 1e-5,
    rope_scaling: { factor: 6.0, rope_type: 'dynamic' },
    rope_theta: 50000000,
    tie_word_embeddings: false,
    torch_dtype: 'bfloat16',
    vocab_size: 128512,
  };
  const c = parseModelConfig(internlm3);
  assert.is(c.architecture, 'internlm3');
  assert.is(c.hfArchitecture, 'InternLM3ForCausalLM');
  assert.equal([c.numHeads, c.numKvHeads, c.headDim], [32, 2, 128]);
  assert.equal([c.qkvBias, c.oBias, c.qkNorm], [false, false, false]);
  assert.equal(c.rope, { theta: 50000000, rotaryDim: 128, scaling: { type: 'dynamic', factor: 6, originalMaxPositionEmbeddings: 32768 } });
  assert.is(c.maxPositionEmbeddings, 196608);
  assert.equal(parseModelConfig({ ...internlm3, qkv_bias: true }).qkvBias, true);
  assert.equal(parseModelConfig({ ...internlm3, head_dim: undefined }).headDim, 128);
  assert.throws(() => parseModelConfig({ ...internlm3, bias: true }), /InternLM3 with bias=true/);
});

test('llama 3.1 / 3.2 configs: llama3 rope_type, eos list, tied 1B', () => {
  const llama32 = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    attention_bias: false,
    bos_token_id: 128000,
    eos_token_id: [128001, 128008, 128009],
    head_dim: 64,
    hidden_size: 2048,
    intermediate_size: 8192,
    max_position_embeddings: 131072,
    mlp_bias: false,
    num_attention_heads: 32,
    num_hidden_layers: 16,
    num_key_value_heads: 8,
    rms_norm_eps: 1e-5,
    rope_scaling: { factor: 32.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
    rope_theta: 500000.0,
    tie_word_embeddings: true,
    torch_dtype: 'bfloat16',
    vocab_size: 128256,
  };
  const c = parseModelConfig(llama32, { bos_token_id: 128000, eos_token_id: [128001, 128008, 128009] });
  assert.is(c.architecture, 'llama');
  assert.equal([c.headDim, c.numKvHeads, c.tieWordEmbeddings, c.maxPositionEmbeddings], [64, 8, true, 131072]);
  assert.equal(c.rope, {
    theta: 500000,
    rotaryDim: 64,
    scaling: { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 },
  });
  assert.equal(c.eosTokenIds, [128001, 128008, 128009]);
  // Llama 3.1 8B: factor 8, untied, hidden/heads = 128.
  const l31 = parseModelConfig({
    ...llama32,
    head_dim: undefined,
    hidden_size: 4096,
    num_hidden_layers: 32,
    tie_word_embeddings: false,
    rope_scaling: { ...llama32.rope_scaling, factor: 8.0 },
  });
  assert.equal([l31.headDim, l31.tieWordEmbeddings, l31.qkNorm], [128, false, false]);
  assert.is(l31.rope.scaling?.type === 'llama3' && l31.rope.scaling.factor, 8);
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
    for (const name of ['LlamaForCausalLM', 'MistralForCausalLM', 'Qwen2ForCausalLM', 'Qwen3ForCausalLM', 'InternLM2ForCausalLM', 'InternLM3ForCausalLM'])
      assert.ok(msg.includes(name), name);
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

const awqConfig = { quant_method: 'awq', bits: 4, group_size: 128, zero_point: true, version: 'gemm', modules_to_not_convert: ['mlp.down_proj'] };
const gptqConfig = { quant_method: 'gptq', bits: 4, group_size: 64, desc_act: false, sym: true, checkpoint_format: 'gptq' };
const ctConfig = {
  quant_method: 'compressed-tensors',
  format: 'pack-quantized',
  quantization_status: 'compressed',
  ignore: ['lm_head', 're:.*layers\\.0\\..*v_proj'],
  config_groups: {
    group_0: {
      targets: ['Linear'],
      input_activations: null,
      output_activations: null,
      weights: { num_bits: 4, type: 'int', symmetric: false, strategy: 'group', group_size: 32, dynamic: false, actorder: null },
    },
  },
};
const quant = (q: unknown) => parseModelConfig({ ...llamaBase, quantization_config: q }).quantization;

test('quantization_config: AWQ gemm, GPTQ v1/v2 and per-channel, compressed-tensors pack-quantized', () => {
  assert.equal(quant(awqConfig), {
    method: 'awq',
    bits: 4,
    groupSize: 128,
    symmetric: false,
    activationOrder: false,
    lmHead: false,
    zerosMinusOne: false,
    modulesToNotConvert: ['mlp.down_proj'],
    modulesInBlockToQuantize: null,
    targets: [],
    ignore: [],
  });
  assert.is(quant({ ...awqConfig, version: 'GEMM', modules_to_not_convert: null })!.modulesToNotConvert.length, 0);
  const g = quant(gptqConfig)!;
  assert.equal([g.method, g.groupSize, g.zerosMinusOne], ['gptq', 64, true]);
  assert.is(quant({ ...gptqConfig, checkpoint_format: 'gptq_v2' })!.zerosMinusOne, false);
  assert.is(quant({ ...gptqConfig, checkpoint_format: undefined })!.zerosMinusOne, true);
  assert.is(quant({ ...gptqConfig, group_size: -1 })!.groupSize, null);
  assert.is(quant({ ...gptqConfig, desc_act: true })!.method, 'gptq'); // g_idx is checked per tensor
  const c = quant(ctConfig)!;
  assert.equal([c.method, c.groupSize, c.symmetric, c.targets], ['compressed-tensors', 32, false, ['Linear']]);
  assert.is(parseModelConfig(llamaBase).quantization, null);
  assert.is(describeWeightFormat(quant(awqConfig), 'f16'), 'awq-int4 g128');
  assert.is(describeWeightFormat(quant({ ...gptqConfig, group_size: -1 }), 'f16'), 'gptq-int4 per-channel');
  assert.is(describeWeightFormat(null, 'f16'), 'f16');
});

test('which linears are 4-bit: modules_to_not_convert (substring), modules_in_block_to_quantize, ignore (names and re:)', () => {
  const awq = quant(awqConfig)!;
  assert.ok(isQuantizedLinear(awq, 'model.layers.3.self_attn.q_proj'));
  assert.not.ok(isQuantizedLinear(awq, 'model.layers.3.mlp.down_proj'));
  const gptq = quant({ ...gptqConfig, modules_in_block_to_quantize: [['self_attn.q_proj', 'self_attn.k_proj'], ['mlp.up_proj']] })!;
  assert.ok(isQuantizedLinear(gptq, 'model.layers.0.self_attn.k_proj'));
  assert.not.ok(isQuantizedLinear(gptq, 'model.layers.0.self_attn.v_proj'));
  const ct = quant(ctConfig)!;
  assert.ok(isQuantizedLinear(ct, 'model.layers.1.self_attn.v_proj'));
  assert.not.ok(isQuantizedLinear(ct, 'model.layers.0.self_attn.v_proj'));
  assert.not.ok(isQuantizedLinear(ct, 'lm_head'));
  assert.is(ct.lmHead, false);
  assert.is(quant({ ...ctConfig, ignore: [] })!.lmHead, true);
});

test('quantization_config refusals name the field', () => {
  const refuses = (q: unknown, re: RegExp) => assert.throws(() => quant(q), re);
  refuses({ ...awqConfig, bits: 8 }, /quantization_config.bits 8 is not supported; only 4-bit/);
  refuses({ ...awqConfig, version: 'gemv' }, /quantization_config.version "gemv" is not supported: only AutoAWQ's "gemm"/);
  refuses({ ...awqConfig, version: 'marlin' }, /version "marlin"/);
  refuses({ ...awqConfig, zero_point: false }, /quantization_config.zero_point false is not supported/);
  refuses({ ...awqConfig, group_size: 100 }, /quantization_config.group_size 100 is not supported/);
  refuses({ ...gptqConfig, checkpoint_format: 'marlin' }, /quantization_config.checkpoint_format "marlin" is not supported/);
  assert.is(quant({ ...gptqConfig, lm_head: true })!.lmHead, true);
  assert.is(quant(gptqConfig)!.lmHead, false);
  refuses({ ...gptqConfig, lm_head: 'yes' }, /quantization_config.lm_head must be true or false/);
  refuses({ ...gptqConfig, pack_dtype: 'int16' }, /quantization_config.pack_dtype "int16" is not supported/);
  refuses({ ...gptqConfig, is_marlin_format: true }, /is_marlin_format true/);
  refuses({ ...gptqConfig, dynamic: { '-:.*down': {} } }, /quantization_config.dynamic/);
  refuses({ quant_method: 'fp8' }, /quant_method "fp8" is not supported/);
  refuses({ ...ctConfig, format: 'int-quantized' }, /quantization_config.format "int-quantized" is not supported; only compressed-tensors "pack-quantized"/);
  refuses({ ...ctConfig, quantization_status: 'frozen' }, /quantization_status "frozen"/);
  const weights = (w: object) => ({
    ...ctConfig,
    config_groups: { group_0: { ...ctConfig.config_groups.group_0, weights: { ...ctConfig.config_groups.group_0.weights, ...w } } },
  });
  refuses(weights({ num_bits: 8 }), /config_groups.group_0.weights.num_bits 8 is not supported/);
  refuses(weights({ type: 'float' }), /weights.type "float" is not supported/);
  refuses(weights({ strategy: 'tensor' }), /weights.strategy "tensor" is not supported/);
  refuses(weights({ actorder: 'dynamic' }), /weights.actorder "dynamic" is not supported/);
  assert.is(quant(weights({ actorder: 'group' }))!.activationOrder, true);
  assert.is(quant(weights({ actorder: 'weight' }))!.activationOrder, false);
  refuses(weights({ dynamic: true }), /weights.dynamic true/);
  refuses(
    { ...ctConfig, config_groups: { group_0: { ...ctConfig.config_groups.group_0, input_activations: { num_bits: 8 } } } },
    /input_activations \(activation quantization\)/,
  );
  refuses({ ...ctConfig, kv_cache_scheme: { num_bits: 8 } }, /kv_cache_scheme/);
});

test('--model-format: hf / absent load anything; awq / gptq must match quant_method', () => {
  checkModelFormat(null, undefined);
  checkModelFormat(quant(awqConfig), 'hf');
  checkModelFormat(quant(awqConfig), 'awq');
  checkModelFormat(quant(gptqConfig), 'gptq');
  assert.throws(() => checkModelFormat(null, 'awq'), /--model-format awq: config.json has no quantization_config/);
  assert.throws(() => checkModelFormat(quant(gptqConfig), 'awq'), /--model-format awq: config.json's quantization_config.quant_method is "gptq"/);
  assert.throws(() => checkModelFormat(quant(ctConfig), 'gptq'), /quant_method is "compressed-tensors"/);
});

test.run();
