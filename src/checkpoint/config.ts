// Hugging Face config.json (+ generation_config.json) -> one typed ModelConfig the loader, runner and
// reference model share. Field names and defaults follow transformers' LlamaConfig, MistralConfig,
// Qwen2Config, Qwen3Config and InternLM2's / InternLM3's remote-code configs.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseQuantizationConfig, type QuantizationConfig } from './quantization.js';

export type Architecture = 'llama' | 'mistral' | 'qwen2' | 'qwen3' | 'internlm2' | 'internlm3';

export type RopeScaling =
  | { type: 'linear'; factor: number }
  | { type: 'dynamic'; factor: number; originalMaxPositionEmbeddings: number }
  | {
      type: 'llama3';
      factor: number;
      lowFreqFactor: number;
      highFreqFactor: number;
      originalMaxPositionEmbeddings: number;
    }
  | {
      type: 'yarn';
      factor: number;
      originalMaxPositionEmbeddings: number;
      betaFast: number;
      betaSlow: number;
      /** 0 = absent (transformers tests `mscale and mscale_all_dim` for truthiness). */
      mscale: number;
      mscaleAllDim: number;
      attentionFactor: number | null;
    };

export interface RopeConfig {
  theta: number;
  rotaryDim: number;
  scaling: RopeScaling | null;
}

export interface ModelConfig {
  architecture: Architecture;
  hfArchitecture: string;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  vocabSize: number;
  rmsNormEps: number;
  rope: RopeConfig;
  /**
   * The context length to serve by default. For dynamic NTK this is original * factor (vLLM's derived
   * max length); the RoPE base itself follows transformers, per sequence (rope.ts).
   */
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  /** A token at pos attends to keys in [pos - window + 1, pos]; null = full causal attention. */
  slidingWindow: number | null;
  qkvBias: boolean;
  oBias: boolean;
  /** Qwen3: per-head RMSNorm (weights [headDim], eps rmsNormEps) on q and k after the projections, before RoPE. */
  qkNorm: boolean;
  bosTokenId: number | null;
  /** Union of config.json and generation_config.json eos_token_id, config.json's first. */
  eosTokenIds: number[];
  torchDtype: 'float32' | 'float16' | 'bfloat16';
  /** config.json quantization_config (AWQ, GPTQ, compressed-tensors int4); null = float weights. */
  quantization: QuantizationConfig | null;
}

const ARCHITECTURES: Readonly<Record<string, Architecture>> = {
  LlamaForCausalLM: 'llama',
  MistralForCausalLM: 'mistral',
  Qwen2ForCausalLM: 'qwen2',
  Qwen3ForCausalLM: 'qwen3',
  InternLM2ForCausalLM: 'internlm2',
  InternLM3ForCausalLM: 'internlm3',
};

/** transformers' per-architecture defaults for fields a config.json may omit. */
/** headDim: the default when config.json has no head_dim (null = hidden_size / num_attention_heads). */
const DEFAULTS: Readonly<Record<Architecture, { maxPositionEmbeddings: number; tie: boolean; headDim: number | null }>> = {
  llama: { maxPositionEmbeddings: 2048, tie: false, headDim: null },
  mistral: { maxPositionEmbeddings: 4096 * 32, tie: false, headDim: null },
  qwen2: { maxPositionEmbeddings: 32768, tie: false, headDim: null },
  qwen3: { maxPositionEmbeddings: 32768, tie: false, headDim: 128 },
  internlm2: { maxPositionEmbeddings: 2048, tie: false, headDim: null },
  internlm3: { maxPositionEmbeddings: 2048, tie: false, headDim: null },
};

export const SUPPORTED_HF_ARCHITECTURES: readonly string[] = Object.keys(ARCHITECTURES);

/** Reads config.json (+ generation_config.json if present) from a Hugging Face model folder. */
export async function loadModelConfig(modelDir: string): Promise<ModelConfig> {
  const configPath = join(modelDir, 'config.json');
  let configText: string;
  try {
    configText = await readFile(configPath, 'utf8');
  } catch (err) {
    throw new Error(`cannot read ${configPath}: ${(err as Error).message} (is ${modelDir} a Hugging Face model folder?)`);
  }
  const configJson = parseJson(configText, configPath);
  let generationJson: unknown;
  const generationPath = join(modelDir, 'generation_config.json');
  try {
    generationJson = parseJson(await readFile(generationPath, 'utf8'), generationPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  return parseModelConfig(configJson, generationJson);
}

export function parseModelConfig(configJson: unknown, generationConfigJson?: unknown): ModelConfig {
  const c = asObject(configJson, 'config.json');
  const g = generationConfigJson === undefined || generationConfigJson === null ? {} : asObject(generationConfigJson, 'generation_config.json');
  const { architecture, hfArchitecture } = detectArchitecture(c);
  const defaults = DEFAULTS[architecture];

  const hiddenSize = requiredInt(c, 'hidden_size');
  const numHeads = requiredInt(c, 'num_attention_heads');
  const numKvHeads = optionalInt(c, 'num_key_value_heads') ?? numHeads;
  const headDim = optionalInt(c, 'head_dim') ?? defaults.headDim ?? hiddenSize / numHeads;
  if (!Number.isInteger(headDim)) {
    throw new Error(`config.json: hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}; set head_dim`);
  }
  if (numHeads % numKvHeads !== 0) {
    throw new Error(`config.json: num_attention_heads ${numHeads} must be a multiple of num_key_value_heads ${numKvHeads}`);
  }
  const numLayers = requiredInt(c, 'num_hidden_layers');
  const rawMaxPositions = optionalInt(c, 'max_position_embeddings') ?? defaults.maxPositionEmbeddings;
  const partialRotaryFactor = optionalNumber(c, 'partial_rotary_factor') ?? 1;
  const rotaryDim = Math.floor(headDim * partialRotaryFactor);
  if (rotaryDim % 2 !== 0 || rotaryDim <= 0) throw new Error(`config.json: rotary dimension ${rotaryDim} must be even and positive`);
  const scaling = parseRopeScaling(c.rope_scaling ?? c.rope_parameters, rawMaxPositions);
  const maxPositionEmbeddings = scaling?.type === 'dynamic' ? Math.floor(scaling.originalMaxPositionEmbeddings * scaling.factor) : rawMaxPositions;

  const { qkvBias, oBias } = parseBiases(architecture, c);
  return {
    architecture,
    hfArchitecture,
    hiddenSize,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    intermediateSize: requiredInt(c, 'intermediate_size'),
    vocabSize: requiredInt(c, 'vocab_size'),
    rmsNormEps: optionalNumber(c, 'rms_norm_eps') ?? 1e-6,
    rope: { theta: optionalNumber(c, 'rope_theta') ?? ropeThetaFromParameters(c) ?? 10000, rotaryDim, scaling },
    maxPositionEmbeddings,
    tieWordEmbeddings: optionalBool(c, 'tie_word_embeddings') ?? defaults.tie,
    slidingWindow: parseSlidingWindow(architecture, c, numLayers),
    qkvBias,
    oBias,
    qkNorm: architecture === 'qwen3',
    bosTokenId: optionalInt(c, 'bos_token_id') ?? optionalInt(g, 'bos_token_id') ?? null,
    eosTokenIds: [...new Set([...tokenIdList(c.eos_token_id, 'config.json'), ...tokenIdList(g.eos_token_id, 'generation_config.json')])],
    torchDtype: parseDtype(c.torch_dtype ?? c.dtype),
    quantization: parseQuantizationConfig(c.quantization_config),
  };
}

function detectArchitecture(c: Record<string, unknown>): { architecture: Architecture; hfArchitecture: string } {
  const listed = Array.isArray(c.architectures) ? c.architectures.filter((a): a is string => typeof a === 'string') : [];
  for (const name of listed) {
    const architecture = ARCHITECTURES[name];
    if (architecture) return { architecture, hfArchitecture: name };
  }
  const found = listed.length ? listed.join(', ') : `none (model_type ${JSON.stringify(c.model_type ?? null)})`;
  throw new Error(`unsupported model architecture: config.json lists ${found}; supported: ${SUPPORTED_HF_ARCHITECTURES.join(', ')}`);
}

/**
 * Llama's and Qwen3's attention_bias covers q, k, v and o; Qwen2 always has q/k/v biases; InternLM2's `bias`
 * covers wqkv and wo; InternLM3's qkv_bias covers q/k/v and its `bias` o_proj and the MLP (not supported).
 */
function parseBiases(architecture: Architecture, c: Record<string, unknown>): { qkvBias: boolean; oBias: boolean } {
  switch (architecture) {
    case 'qwen2':
      return { qkvBias: true, oBias: false };
    case 'internlm3':
      if (optionalBool(c, 'bias') === true) {
        throw new Error('config.json: InternLM3 with bias=true (biases on o_proj and the MLP projections) is not supported');
      }
      return { qkvBias: optionalBool(c, 'qkv_bias') ?? false, oBias: false };
    case 'internlm2': {
      const bias = optionalBool(c, 'bias') ?? true;
      return { qkvBias: bias, oBias: bias };
    }
    case 'llama':
    case 'qwen3': {
      const bias = optionalBool(c, 'attention_bias') ?? false;
      return { qkvBias: bias, oBias: bias };
    }
    case 'mistral':
      return { qkvBias: false, oBias: false };
  }
}

/** Mistral: sliding_window (null = none). Qwen2/Qwen3: only with use_sliding_window, on layers >= max_window_layers. */
function parseSlidingWindow(architecture: Architecture, c: Record<string, unknown>, numLayers: number): number | null {
  if (architecture === 'mistral') return optionalInt(c, 'sliding_window') ?? null;
  if ((architecture !== 'qwen2' && architecture !== 'qwen3') || optionalBool(c, 'use_sliding_window') !== true) return null;
  const window = optionalInt(c, 'sliding_window');
  if (window === undefined) return null;
  const firstSlidingLayer = optionalInt(c, 'max_window_layers') ?? 0;
  if (firstSlidingLayer >= numLayers) return null;
  if (firstSlidingLayer > 0) {
    throw new Error(
      `config.json: ${architecture === 'qwen2' ? 'Qwen2' : 'Qwen3'} sliding window on layers >= max_window_layers=${firstSlidingLayer} only is not supported; ` +
        'set use_sliding_window=false or max_window_layers=0',
    );
  }
  return window;
}

export function parseRopeScaling(raw: unknown, maxPositionEmbeddings: number): RopeScaling | null {
  if (raw === undefined || raw === null) return null;
  const s = asObject(raw, 'config.json rope_scaling');
  const type = s.rope_type ?? s.type;
  if (type === undefined || type === 'default') return null;
  const factor = () => {
    const f = optionalNumber(s, 'factor');
    if (f === undefined || f < 1) throw new Error(`config.json rope_scaling: ${String(type)} needs a factor >= 1, got ${String(s.factor)}`);
    return f;
  };
  const original = () => optionalInt(s, 'original_max_position_embeddings') ?? maxPositionEmbeddings;
  switch (type) {
    case 'linear':
      return { type: 'linear', factor: factor() };
    case 'dynamic':
      return { type: 'dynamic', factor: factor(), originalMaxPositionEmbeddings: original() };
    case 'llama3':
      return {
        type: 'llama3',
        factor: factor(),
        lowFreqFactor: optionalNumber(s, 'low_freq_factor') ?? 1,
        highFreqFactor: optionalNumber(s, 'high_freq_factor') ?? 4,
        originalMaxPositionEmbeddings: original(),
      };
    case 'yarn':
      return {
        type: 'yarn',
        factor: factor(),
        originalMaxPositionEmbeddings: original(),
        // transformers: `rope_scaling.get("beta_fast") or 32`, so 0/null mean the default.
        betaFast: optionalNumber(s, 'beta_fast') || 32,
        betaSlow: optionalNumber(s, 'beta_slow') || 1,
        mscale: optionalNumber(s, 'mscale') ?? 0,
        mscaleAllDim: optionalNumber(s, 'mscale_all_dim') ?? 0,
        attentionFactor: optionalNumber(s, 'attention_factor') ?? null,
      };
    default:
      throw new Error(`config.json rope_scaling type ${JSON.stringify(type)} is not supported; supported: linear, dynamic, llama3, yarn`);
  }
}

/** transformers >= 4.56 may move rope_theta into rope_parameters. */
function ropeThetaFromParameters(c: Record<string, unknown>): number | undefined {
  const p = c.rope_parameters;
  if (p === null || typeof p !== 'object') return undefined;
  const theta = (p as Record<string, unknown>).rope_theta;
  return typeof theta === 'number' ? theta : undefined;
}

function parseDtype(raw: unknown): ModelConfig['torchDtype'] {
  if (raw === undefined || raw === null) return 'float32';
  if (raw === 'float32' || raw === 'float16' || raw === 'bfloat16') return raw;
  if (raw === 'half') return 'float16';
  if (raw === 'float') return 'float32';
  throw new Error(`config.json torch_dtype ${JSON.stringify(raw)} is not supported; use float32, float16 or bfloat16`);
}

function tokenIdList(raw: unknown, where: string): number[] {
  if (raw === undefined || raw === null) return [];
  const list = Array.isArray(raw) ? raw : [raw];
  for (const id of list) {
    if (!Number.isInteger(id) || (id as number) < 0) throw new Error(`${where}: eos_token_id must be a token id or a list of them, got ${JSON.stringify(raw)}`);
  }
  return list as number[];
}

function parseJson(text: string, path: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`${path} is not valid JSON: ${(err as Error).message}`);
  }
}

function asObject(value: unknown, what: string): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error(`${what} must be a JSON object`);
  return value as Record<string, unknown>;
}

function requiredInt(c: Record<string, unknown>, key: string): number {
  const v = optionalInt(c, key);
  if (v === undefined || v === 0) throw new Error(`config.json is missing ${key} (a positive integer)`);
  return v;
}

function optionalInt(c: Record<string, unknown>, key: string): number | undefined {
  const v = c[key];
  if (v === undefined || v === null) return undefined;
  if (!Number.isInteger(v) || (v as number) < 0) throw new Error(`config.json: ${key} must be a non-negative integer, got ${JSON.stringify(v)}`);
  return v as number;
}

function optionalNumber(c: Record<string, unknown>, key: string): number | undefined {
  const v = c[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`config.json: ${key} must be a number, got ${JSON.stringify(v)}`);
  return v;
}

function optionalBool(c: Record<string, unknown>, key: string): boolean | undefined {
  const v = c[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw new Error(`config.json: ${key} must be true or false, got ${JSON.stringify(v)}`);
  return v;
}
