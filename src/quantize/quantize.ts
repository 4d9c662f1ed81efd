// The quantize command's work: a Hugging Face f16/bf16/f32 checkpoint in, an AutoAWQ-format 4-bit
// folder out (GEMM packing, zero points, f16 scales; what this server, vLLM and LMDeploy load).
//   rtn: every quantizable linear rounded to nearest, group-wise (rtn.ts).
//   awq: the calibration text is prefilled through this project's engine (runner/calibration.ts) and,
//        layer by layer, each linear group's input scales are searched (awq-search.ts), folded into
//        the preceding norm or linear as AutoAWQ's apply_scale does, each group's clipping range is
//        searched on the scaled weights (awq-clip.ts, AutoAWQ's auto_clip), then the weights are RTN'd.
// Layers are processed one at a time as the writer asks for their tensors, so host memory holds one
// layer's weights (and the GPU one layer's captured inputs) at a time.
import { chmod, copyFile, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { loadModelConfig, type ModelConfig } from '../checkpoint/config.js';
import { packQkv, splitPackedQkv } from '../checkpoint/weights.js';
import { SafetensorsReader } from '../checkpoint/safetensors.js';
import { writeSafetensorsFolder, type TensorData, type TensorSpec } from '../checkpoint/safetensors-writer.js';
import { f32ToF16Bits } from '../common/half.js';
import { ProgressBar } from '../common/progress.js';
import { openDevices, type GpuDevice } from '../gpu/index.js';
import { MatmulKernels } from '../kernels/matmul.js';
import { CalibrationRunner, type LayerInputs } from '../runner/calibration.js';
import { Tokenizer } from '../tokenizer/tokenizer.js';
import { packAwq } from './awq-pack.js';
import { clipWeights, groupGrams } from './awq-clip.js';
import { GroupOutputs, meanAbsPerColumn, searchScales, siluAndMul } from './awq-search.js';
import { AttentionBlock } from './attention-block.js';
import { BUILTIN_CALIBRATION_TEXT } from './calibration-text.js';
import {
  autoAwqQuantConfig,
  awqQuantizationConfig,
  LINEAR_GROUPS,
  layerNames,
  layerPrefix,
  linearModules,
  linearShapes,
  planQuantization,
  type LinearKey,
  type QuantPlan,
} from './plan.js';
import { quantizeRtn } from './rtn.js';

export type QuantizeMethod = 'awq' | 'rtn';

export interface QuantizeOptions {
  modelDir: string;
  outDir: string;
  method: QuantizeMethod;
  groupSize: number;
  /** awq: calibration text (default: BUILTIN_CALIBRATION_TEXT). */
  calibText?: string;
  /** awq: sequences of calibSeqlen tokens prefilled together (AutoAWQ: n_samples, max_seq_len). */
  calibSamples: number;
  calibSeqlen: number;
  /** Shard the output above this many bytes per file (default 5 GiB, as save_pretrained). */
  maxShardBytes?: number;
  /** awq: the device to calibrate on (default: adapter 0). */
  gpu?: GpuDevice;
  /** awq: AutoAWQ's duo_scaling, scales from x_mean and w_mean (default QUANTIZE_DEFAULTS.duoScaling: true, as AutoAWQ); false: x_mean alone. */
  duoScaling?: boolean;
  /** awq: weight dtype of the calibration forward (default f16, as AutoAWQ). */
  calibrationDtype?: 'f16' | 'f32';
  /** A progress bar per layer on stderr. */
  progress?: boolean;
  log?: (line: string) => void;
}

/** One AWQ scale search: the group's output MSE on the calibration tokens with the chosen scales and with plain RTN. */
export interface GroupSearch {
  layer: number;
  group: string;
  /** The chosen grid ratio; null when plain RTN (s = 1) scored best. */
  ratio: number | null;
  loss: number;
  rtnLoss: number;
}

/** One AWQ clip search: the linear's summed per-group partial-output error without and with clipping. */
export interface ClipSearch {
  layer: number;
  linear: LinearKey;
  rtnError: number;
  clippedError: number;
  clippedGroups: number;
  groups: number;
}

export interface QuantizeResult {
  outDir: string;
  files: string[];
  quantizedPerLayer: LinearKey[];
  modulesToNotConvert: string[];
  calibrationTokens: number;
  searches: GroupSearch[];
  clips: ClipSearch[];
  seconds: number;
}

export const QUANTIZE_DEFAULTS = { method: 'awq' as QuantizeMethod, groupSize: 128, calibSamples: 4, calibSeqlen: 128, duoScaling: true };

const WEIGHT_FILE = /\.(safetensors|bin|pt|pth|gguf|msgpack|h5)$/;
const NOT_COPIED = new Set(['config.json', 'quant_config.json', 'model.safetensors.index.json', 'pytorch_model.bin.index.json']);

export async function quantizeModel(o: QuantizeOptions): Promise<QuantizeResult> {
  const t0 = performance.now();
  const log = o.log ?? (() => {});
  const config = await loadModelConfig(o.modelDir);
  const plan = planQuantization(config, o.groupSize);
  if (!(Number.isInteger(o.calibSamples) && o.calibSamples >= 1)) throw new Error(`--calib-samples must be a positive integer, got ${o.calibSamples}`);
  if (!(Number.isInteger(o.calibSeqlen) && o.calibSeqlen >= 1)) throw new Error(`--calib-seqlen must be a positive integer, got ${o.calibSeqlen}`);
  await prepareOutDir(o.modelDir, o.outDir);
  if (plan.quantized.size === 0) log(`[quantize] no linear has in features divisible by ${o.groupSize} and out features divisible by 8: nothing is quantized`);

  const reader = await SafetensorsReader.open(o.modelDir);
  let calibration: Calibration | null = null;
  try {
    if (o.method === 'awq' && plan.quantized.size > 0) calibration = await Calibration.start(o, config, log);
    const layers = new LayerQuantizer(config, plan, reader, o.method, calibration, o.duoScaling ?? QUANTIZE_DEFAULTS.duoScaling);
    const specs = outputSpecs(reader, config, plan);
    const bar = o.progress ? new ProgressBar({ label: '[quantize]' }) : null;
    bar?.start(layers.sourceBytes);
    const files = await writeSafetensorsFolder(
      o.outDir,
      specs,
      async (spec) => {
        const layer = layerOf(spec.name);
        if (layer === null) return f32ToF16Bits(await reader.read(spec.name, 'f32'));
        const done = await layers.get(layer);
        if (done.fresh) bar?.advance(done.bytes, `layer ${layer + 1}/${config.numLayers}`);
        const data = done.tensors.get(spec.name);
        if (!data) throw new Error(`quantize: layer ${layer} produced no tensor ${spec.name}`);
        return data;
      },
      { maxShardBytes: o.maxShardBytes },
    );
    const seconds = (performance.now() - t0) / 1000;
    bar?.finish(`${o.method} group ${o.groupSize}: ${config.numLayers} layers, ${plan.quantized.size} of 7 linears each in 4 bits, in ${seconds.toFixed(1)} s`);
    await writeConfigs(o.modelDir, o.outDir, plan);
    await copyModelFiles(o.modelDir, o.outDir);
    return {
      outDir: o.outDir,
      files,
      quantizedPerLayer: [...plan.quantized],
      modulesToNotConvert: plan.modulesToNotConvert,
      calibrationTokens: calibration?.numTokens ?? 0,
      searches: layers.searches,
      clips: layers.clips,
      seconds,
    };
  } finally {
    calibration?.destroy();
    await reader.close();
  }
}

/** The full `.weight` names of layer `layer`'s linear modules that the plan quantizes, with their [out, in]. */
function quantizedWeights(config: ModelConfig, plan: QuantPlan, layer: number): Map<string, [number, number]> {
  const out = new Map<string, [number, number]>();
  for (const m of linearModules(config)) if (plan.quantized.has(m.keys[0]!)) out.set(`${layerPrefix(layer)}${m.name}.weight`, m.shape);
  return out;
}

/** model.layers.{i}.* -> i; anything else -> null. */
function layerOf(name: string): number | null {
  const m = /^model\.layers\.(\d+)\./.exec(name);
  return m ? Number(m[1]) : null;
}

/** Every source tensor, quantized linears as qweight/qzeros/scales, the rest f16; layer by layer, then the others. */
function outputSpecs(reader: SafetensorsReader, config: ModelConfig, plan: QuantPlan): TensorSpec[] {
  for (let l = 0; l < config.numLayers; l++) {
    for (const m of linearModules(config)) {
      const name = `${layerPrefix(l)}${m.name}.weight`;
      if (!reader.tensors.has(name)) throw new Error(`quantize: tensor "${name}" is missing from ${reader.modelDir}`);
      const shape = reader.tensors.get(name)!.shape;
      if (shape.length !== 2 || shape[0] !== m.shape[0] || shape[1] !== m.shape[1])
        throw new Error(`quantize: tensor "${name}" has shape [${shape.join(', ')}], config.json implies [${m.shape.join(', ')}]`);
    }
  }
  const quantizedShapes = new Map(Array.from({ length: config.numLayers }, (_, l) => [...quantizedWeights(config, plan, l)]).flat());
  const names = [...reader.tensors.keys()].sort((a, b) => {
    const la = layerOf(a) ?? Infinity,
      lb = layerOf(b) ?? Infinity;
    return la !== lb ? la - lb : a < b ? -1 : a > b ? 1 : 0;
  });
  const G = plan.groupSize;
  const specs: TensorSpec[] = [];
  for (const name of names) {
    const shape = quantizedShapes.get(name);
    if (!shape) {
      specs.push({ name, dtype: 'F16', shape: reader.tensors.get(name)!.shape });
      continue;
    }
    const [out, inF] = shape;
    const base = name.slice(0, -'.weight'.length);
    specs.push({ name: `${base}.qweight`, dtype: 'I32', shape: [inF, out / 8] });
    specs.push({ name: `${base}.qzeros`, dtype: 'I32', shape: [inF / G, out / 8] });
    specs.push({ name: `${base}.scales`, dtype: 'F16', shape: [inF / G, out] });
  }
  return specs;
}

/** The calibration forward: the model on the GPU, the tokenized text, and the layer-by-layer inputs. */
class Calibration {
  private constructor(
    private readonly runner: CalibrationRunner,
    readonly outputs: GroupOutputs,
    private readonly inputs: AsyncGenerator<LayerInputs>,
    readonly numTokens: number,
    /** Tokens per calibration sequence (every sequence is whole). */
    readonly seqLen: number,
  ) {}

  static async start(o: QuantizeOptions, config: ModelConfig, log: (line: string) => void): Promise<Calibration> {
    const tokenizer = await Tokenizer.fromModelDir(o.modelDir);
    const sequences = calibrationSequences(tokenizer, o.calibText ?? BUILTIN_CALIBRATION_TEXT, o.calibSamples, o.calibSeqlen);
    if (sequences.length < o.calibSamples) {
      log(`[quantize] the calibration text gives ${sequences.length} sequence(s) of ${o.calibSeqlen} tokens, fewer than --calib-samples ${o.calibSamples}`);
    }
    const gpu = o.gpu ?? (await openDevices([0]))[0]!;
    const runner = await CalibrationRunner.load(o.modelDir, config, gpu, {
      numSeqs: sequences.length,
      seqLen: o.calibSeqlen,
      dtype: o.calibrationDtype ?? 'f16',
    });
    const outputs = new GroupOutputs(gpu, await MatmulKernels.create(gpu));
    const numTokens = sequences.reduce((n, s) => n + s.length, 0);
    const duo = o.duoScaling ?? QUANTIZE_DEFAULTS.duoScaling;
    log(`[quantize] calibrating on ${sequences.length} x ${o.calibSeqlen} tokens; scale search ${duo ? 'with' : 'without'} duo scaling`);
    return new Calibration(runner, outputs, runner.layerInputs(sequences), numTokens, o.calibSeqlen);
  }

  async next(layer: number): Promise<LayerInputs> {
    const { value, done } = await this.inputs.next();
    if (done || value.layer !== layer) throw new Error(`quantize: calibration yielded layer ${done ? 'none' : value.layer}, expected ${layer}`);
    return value;
  }

  async readInput(buffer: GPUBuffer, numTokens: number, cols: number): Promise<Float32Array> {
    return this.runner.gpu.readF32(buffer, numTokens * cols);
  }

  destroy(): void {
    void this.inputs.return(undefined);
    this.outputs.destroy();
    this.runner.destroy();
  }
}

/**
 * AutoAWQ's get_calib_dataset, on text: each paragraph tokenized (with the tokenizer's special tokens),
 * all concatenated and cut into blocks of seqLen tokens; the first `samples` blocks.
 */
export function calibrationSequences(tokenizer: Pick<Tokenizer, 'encode'>, text: string, samples: number, seqLen: number): number[][] {
  const ids: number[] = [];
  for (const paragraph of text.split(/\n\s*\n/)) {
    const p = paragraph.trim();
    if (p) ids.push(...tokenizer.encode(p, { addSpecialTokens: true }));
  }
  const blocks: number[][] = [];
  for (let i = 0; i + seqLen <= ids.length && blocks.length < samples; i += seqLen) blocks.push(ids.slice(i, i + seqLen));
  if (blocks.length === 0) {
    throw new Error(
      `the calibration text gives ${ids.length} tokens, fewer than one sequence of --calib-seqlen ${seqLen}: give a longer --calib-data or a lower --calib-seqlen`,
    );
  }
  return blocks;
}

interface LayerOutput {
  layer: number;
  tensors: Map<string, TensorData>;
  bytes: number;
  /** True the first time get() returns this layer. */
  fresh: boolean;
}

/** Quantizes one layer at a time, in order, as the writer asks for its tensors. */
class LayerQuantizer {
  private current: LayerOutput | null = null;
  readonly searches: GroupSearch[] = [];
  readonly clips: ClipSearch[] = [];
  readonly sourceBytes: number;

  constructor(
    private readonly config: ModelConfig,
    private readonly plan: QuantPlan,
    private readonly reader: SafetensorsReader,
    private readonly method: QuantizeMethod,
    private readonly calibration: Calibration | null,
    private readonly duoScaling: boolean,
  ) {
    let bytes = 0;
    for (const info of reader.tensors.values()) if (layerOf(info.name) !== null) bytes += info.byteLength;
    this.sourceBytes = bytes;
  }

  async get(layer: number): Promise<LayerOutput> {
    if (this.current?.layer === layer) {
      this.current.fresh = false;
      return this.current;
    }
    if (this.current && layer < this.current.layer) throw new Error(`quantize: layer ${layer} requested after layer ${this.current.layer}`);
    for (let l = (this.current?.layer ?? -1) + 1; l < layer; l++) await this.process(l); // layers without tensors of their own
    this.current = await this.process(layer);
    return this.current;
  }

  private async process(layer: number): Promise<LayerOutput> {
    const prefix = layerPrefix(layer);
    const weights = new Map<string, Float32Array>();
    let bytes = 0;
    for (const info of this.reader.tensors.values()) {
      if (!info.name.startsWith(prefix)) continue;
      weights.set(info.name, await this.reader.read(info.name, 'f32'));
      bytes += info.byteLength;
    }
    // InternLM2's packed wqkv is searched and scaled as q, k and v (entries "<wqkv>#q" etc. meanwhile),
    // then packed again and quantized as the one linear its checkpoint holds.
    const names = layerNames(this.config);
    const packed = names.packedQkv && `${prefix}${names.packedQkv}`;
    const moduleName = (key: LinearKey) => (packed && (key === 'q' || key === 'k' || key === 'v') ? `${packed}#${key}` : `${prefix}${names.linears[key]}`);
    if (packed) this.splitQkv(weights, packed, moduleName);
    if (this.method === 'awq' && this.calibration) await this.applyAwqScales(layer, weights, moduleName);
    if (packed) this.packQkv(weights, packed, moduleName);

    const tensors = new Map<string, TensorData>();
    const quantizedShapes = quantizedWeights(this.config, this.plan, layer);
    for (const [name, data] of weights) {
      const shape = quantizedShapes.get(name);
      if (!shape) {
        tensors.set(name, f32ToF16Bits(data));
        continue;
      }
      const [rows, cols] = shape;
      const packedWeights = packAwq(quantizeRtn(data, rows, cols, this.plan.groupSize));
      const base = name.slice(0, -'.weight'.length);
      tensors.set(`${base}.qweight`, packedWeights.qweight);
      tensors.set(`${base}.qzeros`, packedWeights.qzeros);
      tensors.set(`${base}.scales`, packedWeights.scales);
    }
    return { layer, tensors, bytes, fresh: true };
  }

  /** The tensors of a packed wqkv module: its weight (hidden values per row) and its optional bias. */
  private get packedQkvParts(): readonly (readonly [suffix: string, rowLength: number])[] {
    return [
      ['.weight', this.config.hiddenSize],
      ['.bias', 1],
    ];
  }

  /** Replaces the packed wqkv weight (and bias) by q, k and v entries under moduleName('q' | 'k' | 'v'). */
  private splitQkv(weights: Map<string, Float32Array>, packed: string, moduleName: (key: LinearKey) => string): void {
    for (const [suffix, rowLength] of this.packedQkvParts) {
      const data = weights.get(packed + suffix);
      if (!data) continue;
      const [q, k, v] = splitPackedQkv(data, this.config, rowLength);
      weights.delete(packed + suffix);
      weights.set(moduleName('q') + suffix, q);
      weights.set(moduleName('k') + suffix, k);
      weights.set(moduleName('v') + suffix, v);
    }
  }

  /** The inverse of splitQkv, after the scales are folded in. */
  private packQkv(weights: Map<string, Float32Array>, packed: string, moduleName: (key: LinearKey) => string): void {
    for (const [suffix, rowLength] of this.packedQkvParts) {
      const [q, k, v] = (['q', 'k', 'v'] as const).map((key) => weights.get(moduleName(key) + suffix));
      if (!q || !k || !v) continue;
      for (const key of ['q', 'k', 'v'] as const) weights.delete(moduleName(key) + suffix);
      weights.set(packed + suffix, packQkv(q, k, v, this.config, rowLength));
    }
  }

  /**
   * AutoAWQ's auto_scale + apply_scale for one layer: every group's scales are searched on the
   * original weights first, then folded in: W[:, k] *= s[k] on the group's linears, and the
   * preceding op's output divided by s (the norm weight, or the rows and bias of v_proj / up_proj).
   */
  private async applyAwqScales(layer: number, weights: Map<string, Float32Array>, moduleName: (key: LinearKey) => string): Promise<void> {
    const cal = this.calibration!;
    const inputs = await cal.next(layer);
    const shapes = linearShapes(this.config);
    const prefix = layerPrefix(layer);
    const names = layerNames(this.config);
    const linear = (key: LinearKey) => `${moduleName(key)}.weight`;
    const applied: { group: readonly LinearKey[]; scales: Float32Array; prev: FoldTarget[] }[] = [];
    /** Each group's input on the host, keyed by the group's first linear. */
    const hostInputs = new Map<LinearKey, Float32Array>();
    for (const group of LINEAR_GROUPS) {
      if (!this.plan.quantized.has(group[0]!)) continue;
      const cols = shapes[group[0]!][1];
      let x: GPUBuffer;
      let prev: FoldTarget[];
      const biasOf = (key: LinearKey) => `${moduleName(key)}.bias`;
      const rowsAndBias = (key: LinearKey) => [
        { name: linear(key), rowLength: shapes[key][1], optional: false },
        { name: biasOf(key), rowLength: 1, optional: true },
      ];
      switch (group[0]) {
        case 'q':
          x = inputs.qkv;
          prev = [{ name: `${prefix}${names.inputNorm}.weight`, rowLength: 1, optional: false }];
          break;
        case 'o':
          // AutoAWQ scales o_proj by v_proj only when their shapes match (no grouped-query attention).
          if (shapes.v[0] !== shapes.o[0] || shapes.v[1] !== shapes.o[1]) continue;
          x = inputs.o;
          prev = rowsAndBias('v');
          break;
        case 'gate':
          x = inputs.gateUp;
          prev = [{ name: `${prefix}${names.postNorm}.weight`, rowLength: 1, optional: false }];
          break;
        default:
          x = inputs.down;
          prev = rowsAndBias('up');
      }
      const xHost = await cal.readInput(x, inputs.numTokens, cols);
      hostInputs.set(group[0]!, xHost);
      const xMean = meanAbsPerColumn(xHost, inputs.numTokens, cols);
      const rows = group.reduce((n, k) => n + shapes[k][0], 0);
      const stacked = new Float32Array(rows * cols);
      let offset = 0;
      for (const k of group) {
        const w = weights.get(linear(k))!;
        stacked.set(w, offset);
        offset += w.length;
      }
      const blockOutput =
        group[0] === 'q'
          ? await this.attentionOutput(layer, weights, moduleName, inputs)
          : group[0] === 'gate'
            ? this.mlpOutput(weights, linear('down'), inputs.numTokens)
            : undefined;
      const found = await searchScales(cal.outputs, stacked, rows, cols, this.plan.groupSize, x, inputs.numTokens, xMean, {
        duoScaling: this.duoScaling,
        blockOutput,
      });
      this.searches.push({ layer, group: group.join('/'), ratio: found.bestRatio, loss: found.loss, rtnLoss: found.rtnLoss });
      applied.push({ group, scales: found.scales, prev });
    }
    for (const { group, scales, prev } of applied) {
      for (const k of group) multiplyColumns(weights.get(linear(k))!, scales);
      for (const p of prev) {
        const data = weights.get(p.name);
        if (data) divideRows(data, scales, p.rowLength);
        else if (!p.optional) throw new Error(`quantize: tensor "${p.name}" is missing`);
      }
      // The clip search sees the inputs as the scaled weights will: x / s.
      const x = hostInputs.get(group[0]!)!;
      for (let i = 0; i < x.length; i += scales.length) for (let k = 0; k < scales.length; k++) x[i + k]! /= scales[k]!;
    }
    await this.clip(layer, weights, linear, inputs, hostInputs);
  }

  /**
   * AutoAWQ's module2inspect for q/k/v, the attention block: the host attention over the candidate's
   * q/k/v outputs, then the unquantized o_proj on the GPU. Its first call is the search's reference
   * (the unquantized weights, searchScales' contract), which is checked against the attention output
   * the engine computed for the same tokens, so the search never scores against the wrong function.
   */
  private async attentionOutput(
    layer: number,
    weights: Map<string, Float32Array>,
    moduleName: (key: LinearKey) => string,
    inputs: LayerInputs,
  ): Promise<(qkv: Float32Array) => Promise<Float32Array>> {
    const cal = this.calibration!;
    const c = this.config;
    const prefix = layerPrefix(layer);
    const attention = new AttentionBlock(
      c,
      {
        qBias: weights.get(`${moduleName('q')}.bias`),
        kBias: weights.get(`${moduleName('k')}.bias`),
        vBias: weights.get(`${moduleName('v')}.bias`),
        qNorm: weights.get(`${prefix}self_attn.q_norm.weight`),
        kNorm: weights.get(`${prefix}self_attn.k_norm.weight`),
      },
      cal.seqLen,
    );
    const T = inputs.numTokens;
    const [hidden, width] = linearShapes(c).o;
    const engine = await cal.readInput(inputs.o, T, width);
    const o = weights.get(`${moduleName('o')}.weight`)!;
    let checked = false;
    return (qkv) => {
      const attended = attention.attend(qkv, T);
      if (!checked) {
        checkAttention(layer, attended, engine);
        checked = true;
      }
      return cal.outputs.computeFromHost(o, hidden, width, attended, T);
    };
  }

  /** AutoAWQ's module2inspect for gate/up, the MLP: silu(gate) * up, then the unquantized down_proj on the GPU. */
  private mlpOutput(weights: Map<string, Float32Array>, downName: string, numTokens: number): (gateUp: Float32Array) => Promise<Float32Array> {
    const [hidden, intermediate] = linearShapes(this.config).down;
    const down = weights.get(downName)!;
    return (gateUp) => this.calibration!.outputs.computeFromHost(down, hidden, intermediate, siluAndMul(gateUp, numTokens, intermediate), numTokens);
  }

  /**
   * AutoAWQ's auto_clip + apply_clip: every quantized linear but q_proj and k_proj (whose errors the
   * attention softmax amplifies, so AutoAWQ leaves them unclipped) gets its per-group clipping range.
   */
  private async clip(
    layer: number,
    weights: Map<string, Float32Array>,
    linear: (key: LinearKey) => string,
    inputs: LayerInputs,
    hostInputs: Map<LinearKey, Float32Array>,
  ): Promise<void> {
    const shapes = linearShapes(this.config);
    const G = this.plan.groupSize;
    const grams = new Map<LinearKey, Float64Array>();
    const groupOf = (key: LinearKey): LinearKey => LINEAR_GROUPS.find((g) => g.includes(key))![0]!;
    const buffers: Record<string, GPUBuffer> = { q: inputs.qkv, o: inputs.o, gate: inputs.gateUp, down: inputs.down };
    for (const key of ['v', 'o', 'gate', 'up', 'down'] as const) {
      if (!this.plan.quantized.has(key)) continue;
      const [rows, cols] = shapes[key];
      const source = groupOf(key);
      let gram = grams.get(source);
      if (!gram) {
        // o_proj's input is not read by the scale search under grouped-query attention.
        const x = hostInputs.get(source) ?? (await this.calibration!.readInput(buffers[source]!, inputs.numTokens, cols));
        gram = groupGrams(x, inputs.numTokens, cols, G);
        grams.set(source, gram);
      }
      const r = clipWeights(weights.get(linear(key))!, rows, cols, G, gram);
      this.clips.push({ layer, linear: key, rtnError: r.rtnError, clippedError: r.clippedError, clippedGroups: r.clippedGroups, groups: (rows * cols) / G });
    }
  }
}

/** Throws unless the host attention block reproduced the engine's attention output (within 1% of its largest value). */
function checkAttention(layer: number, ours: Float32Array, engine: Float32Array): void {
  let maxDiff = 0;
  let maxAbs = 0;
  for (let i = 0; i < engine.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(ours[i]! - engine[i]!));
    maxAbs = Math.max(maxAbs, Math.abs(engine[i]!));
  }
  if (!(maxDiff <= 1e-2 * maxAbs)) {
    throw new Error(
      `quantize: layer ${layer}: the host attention block differs from the engine's attention output (max |diff| ${maxDiff} of max |x| ${maxAbs})`,
    );
  }
}

/** Where a group's scales are folded in: a tensor whose rows (rowLength values each) are divided by s. */
interface FoldTarget {
  name: string;
  rowLength: number;
  /** A bias the checkpoint may not have. */
  optional: boolean;
}

/** w [rows, s.length]: w[r, k] *= s[k]. */
function multiplyColumns(w: Float32Array, s: Float32Array): void {
  const cols = s.length;
  for (let i = 0; i < w.length; i += cols) for (let k = 0; k < cols; k++) w[i + k]! *= s[k]!;
}

/** data [s.length, rowLength]: row r /= s[r] (a norm weight or bias has rowLength 1). */
function divideRows(data: Float32Array, s: Float32Array, rowLength: number): void {
  if (data.length !== s.length * rowLength) throw new Error(`quantize: cannot fold ${s.length} scales into a tensor of ${data.length} values`);
  for (let r = 0; r < s.length; r++) {
    const inv = 1 / s[r]!;
    for (let k = 0; k < rowLength; k++) data[r * rowLength + k]! *= inv;
  }
}

async function prepareOutDir(modelDir: string, outDir: string): Promise<void> {
  if (resolve(modelDir) === resolve(outDir)) throw new Error('--out must differ from the source model folder');
  await mkdir(outDir, { recursive: true });
  const existing = await readdir(outDir);
  if (existing.length > 0)
    throw new Error(`--out ${outDir} is not empty (${existing.slice(0, 3).join(', ')}${existing.length > 3 ? ', ...' : ''}): choose a new folder`);
}

/** config.json with quantization_config and torch_dtype float16, and AutoAWQ's quant_config.json. */
async function writeConfigs(modelDir: string, outDir: string, plan: QuantPlan): Promise<void> {
  const config = JSON.parse(await readFile(join(modelDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  config.torch_dtype = 'float16';
  config.quantization_config = awqQuantizationConfig(plan);
  await writeFile(join(outDir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  await writeFile(join(outDir, 'quant_config.json'), `${JSON.stringify(autoAwqQuantConfig(plan), null, 2)}\n`);
}

/** Tokenizer files, generation_config.json, chat templates, remote code: every top-level file but weights and configs. */
async function copyModelFiles(modelDir: string, outDir: string): Promise<void> {
  for (const name of await readdir(modelDir)) {
    if (name.startsWith('.') || NOT_COPIED.has(name) || WEIGHT_FILE.test(name)) continue;
    const from = join(modelDir, name);
    if (!(await stat(from)).isFile()) continue;
    // Hub snapshots and shared model folders are often read-only; the copy belongs to the user.
    await copyFile(from, join(outDir, name));
    await chmod(join(outDir, name), 0o644);
  }
}
