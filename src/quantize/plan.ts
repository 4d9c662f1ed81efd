// What a 4-bit AWQ checkpoint of a model holds: which linears are quantized (in features a multiple
// of the group size, out features a multiple of 8; the projections vLLM fuses, q/k/v and gate/up, all
// or none, since vLLM's loader refuses a fused layer that is half quantized), the names of the rest
// for quantization_config.modules_to_not_convert, and the quantization_config itself.
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

export const INPUT_NORM = 'input_layernorm';
export const POST_NORM = 'post_attention_layernorm';

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
  if (config.architecture === 'internlm2') {
    throw new Error(
      'quantize: InternLM2 checkpoints pack q/k/v into one attention.wqkv tensor, which this command does not quantize; supported: Llama, Mistral, Qwen2, Qwen3, InternLM3',
    );
  }
  if (!(Number.isInteger(groupSize) && groupSize >= 8 && (groupSize & (groupSize - 1)) === 0)) {
    throw new Error(`--group-size must be a power of two >= 8 (AWQ checkpoints use 32, 64 or 128), got ${groupSize}`);
  }
  const shapes = linearShapes(config);
  const fits = (key: LinearKey) => shapes[key][1] % groupSize === 0 && shapes[key][0] % 8 === 0;
  const quantized = new Set<LinearKey>();
  for (const group of LINEAR_GROUPS) if (group.every(fits)) for (const key of group) quantized.add(key);
  const modulesToNotConvert: string[] = [];
  for (let l = 0; l < config.numLayers; l++) {
    for (const key of Object.keys(LINEARS) as LinearKey[]) if (!quantized.has(key)) modulesToNotConvert.push(`${layerPrefix(l)}${LINEARS[key]}`);
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
