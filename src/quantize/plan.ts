// What a 4-bit AWQ checkpoint of a model holds: which linears are quantized (in features a multiple
// of the group size, out features a multiple of 8; the projections vLLM fuses, q/k/v and gate/up, all
// or none, since vLLM's loader refuses a fused layer that is half quantized), the names of the rest
// for quantization_config.modules_to_not_convert, and the quantization_config itself. Module names
// follow the architecture: Llama's (and its relatives') or InternLM2's, whose packed attention.wqkv
// is quantized as one linear, as `lmdeploy lite auto_awq` writes it.
import type { ModelConfig } from '../checkpoint/config.js';

/** The HF module names of one decoder layer's linears (Llama, Mistral, Qwen2, Qwen3, InternLM3). */
export const LINEARS = {
  q: 'self_attn.q_proj',
  k: 'self_attn.k_proj',
  v: 'self_attn.v_proj',
  o: 'self_attn.o_proj',
  gate: 'mlp.gate_proj',
  up: 'mlp.up_proj',
  down: 'mlp.down_proj',
} as const;

export type LinearKey = keyof typeof LINEARS;

/** Where one decoder layer's weights live in an architecture's checkpoint. */
export interface LayerNames {
  /** Module name of each linear; InternLM2's q, k and v all name the packed attention.wqkv. */
  linears: Record<LinearKey, string>;
  inputNorm: string;
  postNorm: string;
  /** InternLM2: the module holding q, k and v packed per kv head (checkpoint/weights.ts splitPackedQkv); null elsewhere. */
  packedQkv: string | null;
}

const LLAMA_NAMES: LayerNames = { linears: LINEARS, inputNorm: 'input_layernorm', postNorm: 'post_attention_layernorm', packedQkv: null };

const INTERNLM2_NAMES: LayerNames = {
  linears: {
    q: 'attention.wqkv',
    k: 'attention.wqkv',
    v: 'attention.wqkv',
    o: 'attention.wo',
    gate: 'feed_forward.w1',
    up: 'feed_forward.w3',
    down: 'feed_forward.w2',
  },
  inputNorm: 'attention_norm',
  postNorm: 'ffn_norm',
  packedQkv: 'attention.wqkv',
};

export function layerNames(config: ModelConfig): LayerNames {
  return config.architecture === 'internlm2' ? INTERNLM2_NAMES : LLAMA_NAMES;
}

/** One linear module of the checkpoint: its name, the linears it holds, and its [out, in]. */
export interface LinearModule {
  name: string;
  keys: LinearKey[];
  shape: [number, number];
}

/** The checkpoint's linear modules of one layer, in LINEARS order (InternLM2's wqkv once, holding q, k and v). */
export function linearModules(config: ModelConfig): LinearModule[] {
  const names = layerNames(config);
  const shapes = linearShapes(config);
  const modules: LinearModule[] = [];
  for (const key of Object.keys(LINEARS) as LinearKey[]) {
    const existing = modules.find((m) => m.name === names.linears[key]);
    if (existing) {
      existing.keys.push(key);
      existing.shape[0] += shapes[key][0];
    } else modules.push({ name: names.linears[key], keys: [key], shape: [...shapes[key]] });
  }
  return modules;
}

/** The linears that read one input, quantized together. */
export const LINEAR_GROUPS: readonly (readonly LinearKey[])[] = [['q', 'k', 'v'], ['o'], ['gate', 'up'], ['down']];

export function layerPrefix(layer: number): string {
  return `model.layers.${layer}.`;
}

/** [out, in] of each linear. */
export function linearShapes(config: ModelConfig): Record<LinearKey, [number, number]> {
  const { hiddenSize: h, numHeads, numKvHeads, headDim, intermediateSize: ffn } = config;
  return {
    q: [numHeads * headDim, h],
    k: [numKvHeads * headDim, h],
    v: [numKvHeads * headDim, h],
    o: [h, numHeads * headDim],
    gate: [ffn, h],
    up: [ffn, h],
    down: [h, ffn],
  };
}

export interface QuantPlan {
  groupSize: number;
  /** The linears of every layer that are quantized (the same in every layer: they share shapes). */
  quantized: ReadonlySet<LinearKey>;
  /** Full module names of the linears left in f16, e.g. model.layers.0.mlp.down_proj. */
  modulesToNotConvert: string[];
}

export function planQuantization(config: ModelConfig, groupSize: number): QuantPlan {
  if (!(Number.isInteger(groupSize) && groupSize >= 8 && (groupSize & (groupSize - 1)) === 0)) {
    throw new Error(`--group-size must be a power of two >= 8 (AWQ checkpoints use 32, 64 or 128), got ${groupSize}`);
  }
  const shapes = linearShapes(config);
  const fits = (key: LinearKey) => shapes[key][1] % groupSize === 0 && shapes[key][0] % 8 === 0;
  const quantized = new Set<LinearKey>();
  for (const group of LINEAR_GROUPS) if (group.every(fits)) for (const key of group) quantized.add(key);
  const modulesToNotConvert: string[] = [];
  for (let l = 0; l < config.numLayers; l++) {
    for (const m of linearModules(config)) if (!quantized.has(m.keys[0]!)) modulesToNotConvert.push(`${layerPrefix(l)}${m.name}`);
  }
  return { groupSize, quantized, modulesToNotConvert };
}

/**
 * config.json's quantization_config, with the keys transformers' AwqConfig writes and vLLM's
 * AWQConfig.from_config and LMDeploy read (quant_method, bits, group_size, zero_point, version,
 * modules_to_not_convert; null when every linear is quantized, as AutoAWQ writes it).
 */
export function awqQuantizationConfig(plan: QuantPlan): Record<string, unknown> {
  return {
    quant_method: 'awq',
    bits: 4,
    group_size: plan.groupSize,
    zero_point: true,
    version: 'gemm',
    modules_to_not_convert: plan.modulesToNotConvert.length ? plan.modulesToNotConvert : null,
  };
}

/** AutoAWQ's own quant_config.json (its from_quantized reads it when config.json has none). */
export function autoAwqQuantConfig(plan: QuantPlan): Record<string, unknown> {
  return {
    zero_point: true,
    q_group_size: plan.groupSize,
    w_bit: 4,
    version: 'GEMM',
    modules_to_not_convert: plan.modulesToNotConvert.length ? plan.modulesToNotConvert : null,
  };
}
