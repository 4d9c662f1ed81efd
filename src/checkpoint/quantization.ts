// config.json `quantization_config` -> the one description of a 4-bit checkpoint the weight readers
// (quantized.ts) follow, refusing with the field's name whatever the readers cannot load exactly.
// Field names and meanings follow transformers' AwqConfig / GPTQConfig (AutoAWQ, AutoGPTQ, GPTQModel)
// and compressed-tensors' QuantizationConfig (config_groups -> QuantizationScheme -> QuantizationArgs),
// as LMDeploy and vLLM read them.

export type QuantMethod = 'awq' | 'gptq' | 'compressed-tensors';

/** LMDeploy's --model-format: 'hf' (or absent) loads whatever config.json describes. */
export const MODEL_FORMATS = ['hf', 'awq', 'gptq'] as const;
export type ModelFormat = (typeof MODEL_FORMATS)[number];

export interface QuantizationConfig {
  method: QuantMethod;
  bits: 4;
  /** Input elements sharing a scale; null = one group per whole input row (group_size -1, strategy 'channel'). */
  groupSize: number | null;
  /** No stored zero points: every zero is 8 (compressed-tensors symmetric; GPTQ sym still stores its zeros). */
  symmetric: boolean;
  /**
   * GPTQ desc_act / compressed-tensors actorder "group": groups may gather scattered inputs (a permuted
   * g_idx per tensor), so the runner keeps a buffer to gather activations into. Only a hint: each
   * tensor's g_idx decides (static_groups keeps desc_act checkpoints in order).
   */
  activationOrder: boolean;
  /** lm_head is 4-bit too (GPTQModel `lm_head: true`; compressed-tensors targets it and does not ignore it). */
  lmHead: boolean;
  /** GPTQ checkpoint_format 'gptq' (v1): qzeros hold zero - 1 (4-bit wrapped); 'gptq_v2' and the others hold the zero. */
  zerosMinusOne: boolean;
  /** AWQ modules_to_not_convert: a linear whose full module name contains one of these stays 16-bit. */
  modulesToNotConvert: string[];
  /** GPTQ modules_in_block_to_quantize (flattened): when set, only linears whose name ends with one of these are 4-bit. */
  modulesInBlockToQuantize: string[] | null;
  /** compressed-tensors: the quantized groups' targets ('Linear', module names, 're:' patterns) and the ignore list. */
  targets: string[];
  ignore: string[];
}

/** `weights=awq-int4 g128` style label for logs and engine info. */
export function describeWeightFormat(q: QuantizationConfig | null, dtype: string): string {
  if (!q) return dtype;
  return `${q.method}-int4 ${q.groupSize === null ? 'per-channel' : `g${q.groupSize}`}${q.symmetric ? ' sym' : ''}`;
}

/** Parses config.json's quantization_config (absent or null -> null); throws naming the unsupported field. */
export function parseQuantizationConfig(raw: unknown): QuantizationConfig | null {
  if (raw === undefined || raw === null) return null;
  const q = asObject(raw, 'quantization_config');
  const method = q.quant_method;
  switch (method) {
    case 'awq':
      return parseAwq(q);
    case 'gptq':
      return parseGptq(q);
    case 'compressed-tensors':
      return parseCompressedTensors(q);
    default:
      throw new Error(
        `config.json: quantization_config.quant_method ${JSON.stringify(method)} is not supported; supported: awq (gemm), gptq, compressed-tensors (pack-quantized int4)`,
      );
  }
}

/** --model-format against what config.json says: awq / gptq must match its quant_method. */
export function checkModelFormat(q: QuantizationConfig | null, format: ModelFormat | undefined): void {
  if (format === undefined || format === 'hf') return;
  if (!q) {
    throw new Error(
      `--model-format ${format}: config.json has no quantization_config, so this is not a ${format.toUpperCase()} checkpoint; drop --model-format`,
    );
  }
  if (q.method !== format) {
    throw new Error(
      `--model-format ${format}: config.json's quantization_config.quant_method is ${JSON.stringify(q.method)}; use --model-format hf (auto) or a ${format} checkpoint`,
    );
  }
}

function parseAwq(q: Record<string, unknown>): QuantizationConfig {
  const where = 'quantization_config';
  checkBits(q.bits ?? q.w_bit, `${where}.bits`);
  const version = String(q.version ?? 'gemm').toLowerCase();
  if (version !== 'gemm') {
    throw new Error(
      `config.json: ${where}.version ${JSON.stringify(q.version)} is not supported: only AutoAWQ's "gemm" packing is read (GEMV, GEMV_fast, marlin, exllama and ipex lay the words out differently); re-export with version gemm`,
    );
  }
  if ((q.zero_point ?? true) !== true) {
    throw new Error(
      `config.json: ${where}.zero_point ${JSON.stringify(q.zero_point)} is not supported: AWQ gemm checkpoints carry zero points (zero_point: true)`,
    );
  }
  const notConvert = q.modules_to_not_convert ?? [];
  if (!Array.isArray(notConvert) || !notConvert.every((m) => typeof m === 'string')) {
    throw new Error(`config.json: ${where}.modules_to_not_convert must be a list of module names or null, got ${JSON.stringify(notConvert)}`);
  }
  return {
    method: 'awq',
    bits: 4,
    groupSize: parseGroupSize(q.group_size ?? q.q_group_size, `${where}.group_size`),
    symmetric: false,
    activationOrder: false,
    // AutoAWQ never quantizes lm_head (a checkpoint that did is refused by the loader, naming the tensor).
    lmHead: false,
    zerosMinusOne: false,
    modulesToNotConvert: notConvert as string[],
    modulesInBlockToQuantize: null,
    targets: [],
    ignore: [],
  };
}

function parseGptq(q: Record<string, unknown>): QuantizationConfig {
  const where = 'quantization_config';
  checkBits(q.bits, `${where}.bits`);
  const format = q.checkpoint_format ?? q.format ?? 'gptq';
  if (format !== 'gptq' && format !== 'gptq_v2') {
    throw new Error(
      `config.json: ${where}.checkpoint_format ${JSON.stringify(format)} is not supported; supported: gptq, gptq_v2 (marlin, bitblas and other repacked layouts are not)`,
    );
  }
  if (q.is_marlin_format === true)
    throw new Error(`config.json: ${where}.is_marlin_format true is not supported (AutoGPTQ's marlin repacking); use the plain gptq checkpoint`);
  if (q.pack_dtype !== undefined && q.pack_dtype !== null && q.pack_dtype !== 'int32') {
    throw new Error(`config.json: ${where}.pack_dtype ${JSON.stringify(q.pack_dtype)} is not supported; 4-bit words must be packed in int32`);
  }
  const lmHead = q.lm_head ?? false;
  if (typeof lmHead !== 'boolean') throw new Error(`config.json: ${where}.lm_head must be true or false, got ${JSON.stringify(lmHead)}`);
  if (q.dynamic !== undefined && q.dynamic !== null && Object.keys(asObject(q.dynamic, `${where}.dynamic`)).length > 0) {
    throw new Error(`config.json: ${where}.dynamic (per-module GPTQModel overrides) is not supported`);
  }
  let inBlock: string[] | null = null;
  if (q.modules_in_block_to_quantize !== undefined && q.modules_in_block_to_quantize !== null) {
    const flat = (Array.isArray(q.modules_in_block_to_quantize) ? q.modules_in_block_to_quantize : [null]).flat();
    if (!flat.every((m) => typeof m === 'string')) {
      throw new Error(
        `config.json: ${where}.modules_in_block_to_quantize must be a list of lists of module names, got ${JSON.stringify(q.modules_in_block_to_quantize)}`,
      );
    }
    inBlock = flat as string[];
  }
  const descAct = q.desc_act ?? false;
  if (typeof descAct !== 'boolean') throw new Error(`config.json: ${where}.desc_act must be true or false, got ${JSON.stringify(descAct)}`);
  const sym = q.sym ?? true;
  if (typeof sym !== 'boolean') throw new Error(`config.json: ${where}.sym must be true or false, got ${JSON.stringify(sym)}`);
  return {
    method: 'gptq',
    bits: 4,
    groupSize: parseGroupSize(q.group_size, `${where}.group_size`),
    // GPTQ stores qzeros even when sym (all 8): the reader uses them, so the checkpoint is the truth.
    symmetric: false,
    activationOrder: descAct,
    lmHead,
    zerosMinusOne: format === 'gptq',
    modulesToNotConvert: [],
    modulesInBlockToQuantize: inBlock,
    targets: [],
    ignore: [],
  };
}

function parseCompressedTensors(q: Record<string, unknown>): QuantizationConfig {
  const where = 'quantization_config';
  const format = q.format;
  if (format !== 'pack-quantized') {
    throw new Error(
      `config.json: ${where}.format ${JSON.stringify(format)} is not supported; only compressed-tensors "pack-quantized" (int4 weights packed 8 per int32) is read`,
    );
  }
  const status = q.quantization_status ?? 'compressed';
  if (status !== 'compressed')
    throw new Error(`config.json: ${where}.quantization_status ${JSON.stringify(status)} is not supported; the weights must be saved compressed`);
  if (q.kv_cache_scheme !== undefined && q.kv_cache_scheme !== null)
    throw new Error(`config.json: ${where}.kv_cache_scheme (a quantized KV cache) is not supported`);
  const sparsity = q.sparsity_config;
  if (sparsity !== undefined && sparsity !== null) {
    const s = asObject(sparsity, `${where}.sparsity_config`);
    if (s.format !== undefined && s.format !== 'dense')
      throw new Error(`config.json: ${where}.sparsity_config.format ${JSON.stringify(s.format)} (sparse weights) is not supported`);
  }
  const groups = asObject(q.config_groups, `${where}.config_groups`);
  const names = Object.keys(groups);
  if (names.length === 0) throw new Error(`config.json: ${where}.config_groups is empty`);
  let shared: ReturnType<typeof parseCtWeights> | null = null;
  const targets: string[] = [];
  for (const name of names) {
    const at = `${where}.config_groups.${name}`;
    const scheme = asObject(groups[name], at);
    if (scheme.format !== undefined && scheme.format !== null && scheme.format !== 'pack-quantized') {
      throw new Error(`config.json: ${at}.format ${JSON.stringify(scheme.format)} is not supported; only pack-quantized`);
    }
    for (const act of ['input_activations', 'output_activations'] as const) {
      if (scheme[act] !== undefined && scheme[act] !== null)
        throw new Error(`config.json: ${at}.${act} (activation quantization) is not supported; only weight-only int4 (W4A16)`);
    }
    const w = asObject(scheme.weights, `${at}.weights`);
    const args = parseCtWeights(w, `${at}.weights`);
    if (shared && (shared.groupSize !== args.groupSize || shared.symmetric !== args.symmetric || shared.activationOrder !== args.activationOrder)) {
      throw new Error(
        `config.json: ${where}.config_groups mix weight schemes (${JSON.stringify(shared)} vs ${JSON.stringify(args)}); one int4 scheme for every group is supported`,
      );
    }
    shared = args;
    const t = scheme.targets;
    if (!Array.isArray(t) || !t.every((x) => typeof x === 'string')) throw new Error(`config.json: ${at}.targets must be a list of strings`);
    targets.push(...(t as string[]));
  }
  const ignore = q.ignore ?? [];
  if (!Array.isArray(ignore) || !ignore.every((x) => typeof x === 'string')) throw new Error(`config.json: ${where}.ignore must be a list of module names`);
  return {
    method: 'compressed-tensors',
    bits: 4,
    groupSize: shared!.groupSize,
    symmetric: shared!.symmetric,
    activationOrder: shared!.activationOrder,
    lmHead: ctQuantizes(targets, ignore as string[], 'lm_head'),
    zerosMinusOne: false,
    modulesToNotConvert: [],
    modulesInBlockToQuantize: null,
    targets,
    ignore: ignore as string[],
  };
}

function parseCtWeights(w: Record<string, unknown>, at: string): { groupSize: number | null; symmetric: boolean; activationOrder: boolean } {
  checkBits(w.num_bits, `${at}.num_bits`);
  if ((w.type ?? 'int') !== 'int') throw new Error(`config.json: ${at}.type ${JSON.stringify(w.type)} is not supported; only int`);
  if (w.dynamic !== undefined && w.dynamic !== false)
    throw new Error(`config.json: ${at}.dynamic ${JSON.stringify(w.dynamic)} is not supported; only static weight scales`);
  if (w.block_structure !== undefined && w.block_structure !== null) throw new Error(`config.json: ${at}.block_structure is not supported`);
  // 'group' activation order permutes the groups (weight_g_idx, gathered at run time); 'weight' keeps them in order.
  const actorder = w.actorder ?? null;
  if (actorder !== null && actorder !== false && actorder !== 'weight' && actorder !== 'group') {
    throw new Error(`config.json: ${at}.actorder ${JSON.stringify(actorder)} is not supported (null, "weight" or "group")`);
  }
  const symmetric = w.symmetric ?? true;
  if (typeof symmetric !== 'boolean') throw new Error(`config.json: ${at}.symmetric must be true or false`);
  const strategy = w.strategy;
  const activationOrder = actorder === 'group';
  if (strategy === 'channel') return { groupSize: null, symmetric, activationOrder };
  if (strategy !== 'group') throw new Error(`config.json: ${at}.strategy ${JSON.stringify(strategy)} is not supported; only group (or channel)`);
  const g = w.group_size;
  if (!Number.isInteger(g) || (g as number) < 8 || ((g as number) & ((g as number) - 1)) !== 0) {
    throw new Error(`config.json: ${at}.group_size ${JSON.stringify(g)} is not supported; a power of two >= 8`);
  }
  return { groupSize: g as number, symmetric, activationOrder };
}

function checkBits(bits: unknown, field: string): void {
  if (bits !== 4) throw new Error(`config.json: ${field} ${JSON.stringify(bits)} is not supported; only 4-bit weights are`);
}

/** -1 (one group per input row) -> null; else a power of two >= 8, which the 4-bit kernels need. */
function parseGroupSize(raw: unknown, field: string): number | null {
  if (raw === -1) return null;
  if (!Number.isInteger(raw) || (raw as number) < 8 || ((raw as number) & ((raw as number) - 1)) !== 0) {
    throw new Error(`config.json: ${field} ${JSON.stringify(raw)} is not supported; use -1 or a power of two >= 8 (32, 64, 128)`);
  }
  return raw as number;
}

function asObject(value: unknown, what: string): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error(`config.json: ${what} must be a JSON object`);
  return value as Record<string, unknown>;
}

/**
 * Whether the linear with full module name `module` (e.g. 'model.layers.0.self_attn.q_proj') is stored in
 * 4 bits. AWQ: transformers skips a module whose name contains a modules_to_not_convert entry. GPTQ: with
 * modules_in_block_to_quantize, only the listed block-relative names. compressed-tensors: a target matches
 * ('Linear' = every linear, 're:' = Python re.match on the name, else the exact name) and no ignore entry does.
 */
export function isQuantizedLinear(q: QuantizationConfig, module: string): boolean {
  switch (q.method) {
    case 'awq':
      return !q.modulesToNotConvert.some((m) => module.includes(m));
    case 'gptq':
      return q.modulesInBlockToQuantize === null || q.modulesInBlockToQuantize.some((m) => module.endsWith(`.${m}`));
    case 'compressed-tensors':
      return ctQuantizes(q.targets, q.ignore, module);
  }
}

/** compressed-tensors: a linear is quantized when a target names it (or is 'Linear') and no ignore entry does. */
function ctQuantizes(targets: readonly string[], ignore: readonly string[], module: string): boolean {
  return targets.some((t) => t === 'Linear' || ctMatches(t, module)) && !ignore.some((t) => ctMatches(t, module));
}

function ctMatches(pattern: string, module: string): boolean {
  if (pattern.startsWith('re:')) return new RegExp(`^(?:${pattern.slice(3)})`).test(module);
  return pattern === module;
}
