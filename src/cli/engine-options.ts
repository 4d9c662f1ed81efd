// The engine flags shared by serve, generate and chat, and their translation into EngineOptions.
// This module (with the other cli/ files) is the only code that reads argv and env.
import type { Argv } from 'yargs';
import { DEFAULT_ENGINE_OPTIONS, type EngineOptions } from '../engine/engine.js';
import { parseBytes } from '../common/bytes.js';
import type { LogLevel } from '../common/log.js';
import type { KvCacheDtype } from '../common/types.js';
import { MODEL_FORMATS, type ModelFormat } from '../checkpoint/quantization.js';

const KV_CACHE_DTYPES = ['f32', 'f16', 'int8', 'int4'] as const satisfies readonly KvCacheDtype[];
/** LMDeploy's --quant-policy values: 0 off, 4 int4 KV cache, 8 int8 KV cache. */
const QUANT_POLICIES = [0, 4, 8] as const;
const QUANT_POLICY_DTYPE = { 4: 'int4', 8: 'int8' } as const;

/**
 * The KV cache dtype from --kv-cache-dtype and LMDeploy's --quant-policy: policy 4 / 8 selects int4 /
 * int8, 0 (or none) keeps --kv-cache-dtype (default f32); both naming different dtypes is an error.
 */
export function resolveKvCacheDtype(kvCacheDtype: KvCacheDtype | undefined, quantPolicy: number | undefined): KvCacheDtype {
  if (quantPolicy === undefined || quantPolicy === 0) return kvCacheDtype ?? DEFAULT_ENGINE_OPTIONS.kvCacheDtype;
  if (quantPolicy !== 4 && quantPolicy !== 8) {
    throw new Error(`--quant-policy must be one of ${QUANT_POLICIES.join(', ')} (0 off, 4 int4 KV cache, 8 int8 KV cache); got ${quantPolicy}`);
  }
  const dtype = QUANT_POLICY_DTYPE[quantPolicy];
  if (kvCacheDtype !== undefined && kvCacheDtype !== dtype) {
    throw new Error(`--quant-policy ${quantPolicy} stores an ${dtype} KV cache but --kv-cache-dtype is ${kvCacheDtype}; give one of them`);
  }
  return dtype;
}

const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;

function defaultLogLevel(): LogLevel {
  const fromEnv = process.env.LOG_LEVEL;
  return (LOG_LEVELS as readonly string[]).includes(fromEnv ?? '') ? (fromEnv as LogLevel) : 'info';
}

export function withEngineOptions<T>(y: Argv<T>) {
  return y
    .positional('model', { type: 'string', demandOption: true, describe: 'model folder (config.json, *.safetensors, tokenizer.json) or a Hugging Face id' })
    .option('revision', { type: 'string', describe: 'Hugging Face revision (branch, tag or commit) when <model> is an id', default: 'main' })
    .option('devices', { type: 'string', describe: 'comma-separated adapter indices, one tensor-parallel shard each (see `devices`)' })
    .option('tp', { type: 'number', describe: 'tensor parallelism: use the first N adapters (same as --devices 0,1,..,N-1)' })
    .option('shard-processes', {
      type: 'boolean',
      default: false,
      describe: 'run each tensor-parallel shard in its own worker process (automatic on machines with identical GPUs)',
    })
    .option('dtype', {
      choices: ['f16', 'f32'] as const,
      default: DEFAULT_ENGINE_OPTIONS.dtype,
      describe: 'weight dtype on the GPU (bf16 checkpoints are converted)',
    })
    .option('session-len', {
      type: 'number',
      describe: "max prompt + output tokens per sequence (default: the model's max_position_embeddings, at most 32768)",
    })
    .option('max-batch-size', { type: 'number', default: DEFAULT_ENGINE_OPTIONS.maxBatchSize, describe: 'max sequences decoded together' })
    .option('max-prefill-tokens', {
      type: 'number',
      default: DEFAULT_ENGINE_OPTIONS.maxNumBatchedTokens,
      describe: 'token budget per step; longer prompts are prefilled in chunks',
    })
    .option('block-size', { type: 'number', default: DEFAULT_ENGINE_OPTIONS.blockSize, describe: 'tokens per KV-cache block' })
    .option('cache-max-entry-count', {
      type: 'number',
      default: DEFAULT_ENGINE_OPTIONS.cacheMaxEntryCount,
      describe: 'fraction of GPU memory left after weights given to the KV cache',
    })
    .option('kv-cache-blocks', { type: 'number', describe: 'KV-cache size in blocks (overrides --cache-max-entry-count)' })
    .option('kv-cache-dtype', {
      choices: KV_CACHE_DTYPES,
      describe: `KV-cache element type (default ${DEFAULT_ENGINE_OPTIONS.kvCacheDtype}); f16 halves KV memory (about twice the blocks) at f16 precision; int8/int4 are --quant-policy 8/4`,
    })
    .option('model-format', {
      choices: MODEL_FORMATS,
      describe:
        "LMDeploy's weight format: hf (default) loads what config.json's quantization_config says (float, AWQ, GPTQ or compressed-tensors int4); awq / gptq also insist the checkpoint is one",
    })
    .option('quant-policy', {
      type: 'number',
      choices: QUANT_POLICIES,
      default: 0,
      describe:
        "LMDeploy's KV-cache quantization: 8 = int8, 4 = int4 (per token and kv head, asymmetric, f16 scale and min; about 1.9x / 3.6x the blocks of f16 at head_dim 128), 0 = off (--kv-cache-dtype decides)",
    })
    .option('gpu-memory', {
      type: 'string',
      describe: 'GPU memory budget per device, e.g. 24GiB (WebGPU cannot query free memory; default 2GiB on a software adapter, 16GiB otherwise)',
    })
    .option('max-waiting', { type: 'number', default: DEFAULT_ENGINE_OPTIONS.maxWaiting, describe: 'waiting-queue limit; more requests get 429' })
    .option('enable-prefix-caching', { type: 'boolean', default: true, describe: 'share KV blocks of identical prompt prefixes' })
    .option('chat-template', { type: 'string', describe: "file with a Jinja chat template overriding tokenizer_config.json's" })
    .option('log-level', { choices: LOG_LEVELS, default: defaultLogLevel(), describe: 'stderr log level (default: $LOG_LEVEL, else info)' });
}

export interface EngineArgs {
  model: string;
  revision: string;
  devices?: string;
  tp?: number;
  shardProcesses?: boolean;
  dtype: 'f16' | 'f32';
  sessionLen?: number;
  maxBatchSize: number;
  maxPrefillTokens: number;
  blockSize: number;
  cacheMaxEntryCount: number;
  kvCacheBlocks?: number;
  /** Absent means 'f32', or what quantPolicy selects. */
  kvCacheDtype?: KvCacheDtype;
  /** LMDeploy's --quant-policy: 0 (or absent) off, 4 int4, 8 int8 KV cache. */
  quantPolicy?: number;
  /** LMDeploy's --model-format: absent or 'hf' = as config.json says; 'awq' / 'gptq' must match its quantization_config. */
  modelFormat?: ModelFormat;
  gpuMemory?: string;
  maxWaiting: number;
  enablePrefixCaching: boolean;
  chatTemplate?: string;
  /** serve --generation-config: 'auto' makes generation_config.json's sampling fields request defaults. */
  generationConfig?: 'auto' | 'vllm';
}

export function parseDevices(devices: string | undefined, tp: number | undefined): number[] {
  if (devices !== undefined && tp !== undefined) {
    const list = parseList(devices);
    if (list.length !== tp) throw new Error(`--devices lists ${list.length} devices but --tp is ${tp}; give one of them`);
    return list;
  }
  if (devices !== undefined) return parseList(devices);
  if (tp !== undefined) {
    if (!Number.isInteger(tp) || tp < 1) throw new Error(`--tp must be a positive integer, got ${tp}`);
    return Array.from({ length: tp }, (_, i) => i);
  }
  return [0];
}

function parseList(devices: string): number[] {
  const list = devices
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map(Number);
  if (list.length === 0 || list.some((n) => !Number.isInteger(n) || n < 0)) {
    throw new Error(`--devices must be comma-separated adapter indices like 0 or 0,1; got "${devices}"`);
  }
  return list;
}

export async function toEngineOptions(args: EngineArgs, modelDir: string, extra: { modelName?: string; progress?: boolean } = {}): Promise<EngineOptions> {
  const devices = parseDevices(args.devices, args.tp);
  const { readFile } = await import('node:fs/promises');
  return {
    modelDir,
    modelName: extra.modelName,
    devices,
    // Repeating an index is how one adapter emulates several shards; ask for it explicitly on the command line.
    allowRepeatedDevices: new Set(devices).size !== devices.length,
    shardProcesses: args.shardProcesses ?? false,
    dtype: args.dtype,
    blockSize: args.blockSize,
    maxBatchSize: args.maxBatchSize,
    sessionLen: args.sessionLen,
    maxNumBatchedTokens: args.maxPrefillTokens,
    cacheMaxEntryCount: args.cacheMaxEntryCount,
    kvCacheBlocks: args.kvCacheBlocks,
    kvCacheDtype: resolveKvCacheDtype(args.kvCacheDtype, args.quantPolicy),
    modelFormat: args.modelFormat,
    gpuMemoryBytes: args.gpuMemory ? parseBytes(args.gpuMemory) : undefined,
    maxWaiting: args.maxWaiting,
    enablePrefixCaching: args.enablePrefixCaching,
    chatTemplate: args.chatTemplate ? await readFile(args.chatTemplate, 'utf8') : undefined,
    generationConfig: args.generationConfig,
    progress: extra.progress ?? true,
  };
}
