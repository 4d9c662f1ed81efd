// The engine: owns the step loop (schedule -> execute -> update), the only code that drives the GPU.
// Everything above it talks to the EngineClient interface.
import { randomUUID } from 'node:crypto';
import { openDevices, type GpuDevice } from '../gpu/index.js';
import { shardPlacementFor } from '../runner/worker/placement.js';
import { KvCacheManager } from '../kv/kv-manager.js';
import { loadModelConfig, type ModelConfig } from '../checkpoint/config.js';
import { checkModelFormat, describeWeightFormat, type ModelFormat } from '../checkpoint/quantization.js';
import type { KvCacheDtype } from '../common/types.js';
import { ModelRunner } from '../runner/runner.js';
import { shardLayout } from '../runner/sharding.js';
import { DEFAULT_SAMPLING, type SamplingParams, type SamplingRow } from '../sampling/params.js';
import { describeRequestDefaults, requestDefaults } from './prompt.js';
import { Request } from '../scheduler/request.js';
import { Scheduler, type RequestUpdate } from '../scheduler/scheduler.js';
import { Tokenizer } from '../tokenizer/tokenizer.js';
import { AsyncQueue } from './async-queue.js';
import { EngineUnavailableError, InvalidRequestError } from '../common/errors.js';
import type { SchedulerOutput } from '../scheduler/types.js';
import { OutputProcessor } from './output-processor.js';
import { checkRequest } from './validate.js';
import type { EngineClient, EngineHealth, EngineStats, GenerateDelta, GenerateRequest, LoadedFormat, PromptTokenLogprob, RequestTiming } from './types.js';
import { createLogger } from '../common/log.js';
import { GrammarService } from '../structured/grammar-service.js';
import { checkJsonSchema } from '../structured/json-schema.js';
import { grammarVocab } from '../structured/vocab.js';
import type { LogitsProcessing } from '../sampling/params.js';

const log = createLogger('engine');

export interface EngineOptions {
  modelDir: string;
  modelName?: string;
  /** Adapter indices, one device (shard) each. */
  devices: number[];
  /** Allow one adapter index several times (tests emulate shards this way). */
  allowRepeatedDevices?: boolean;
  /**
   * Run every shard in its own worker process. Implied on machines with identical GPUs, where
   * indices are positions in the physical GPU list and each worker is pinned to its GPU.
   */
  shardProcesses?: boolean;
  dtype: 'f16' | 'f32';
  blockSize: number;
  maxBatchSize: number;
  /** Prompt + output limit per sequence; default: the model's max_position_embeddings (capped at 32768). */
  sessionLen?: number;
  maxNumBatchedTokens: number;
  cacheMaxEntryCount: number;
  kvCacheBlocks?: number;
  /**
   * KV cache element type; 'f16' halves KV memory (twice the blocks) at f16 precision; 'int8' / 'int4'
   * (LMDeploy's quant_policy 8 / 4) store per-(token, kv head) asymmetric codes and an f16 (scale, min)
   * pair, about 1.9x / 3.6x the blocks of f16 at head_dim 128. Default 'f32'.
   */
  kvCacheDtype?: KvCacheDtype;
  gpuMemoryBytes?: number;
  maxWaiting: number;
  enablePrefixCaching: boolean;
  chatTemplate?: string;
  /** 'auto': generation_config.json's sampling fields become request defaults (vLLM's --generation-config); default 'vllm': none. */
  generationConfig?: 'auto' | 'vllm';
  progress?: boolean;
  /** LMDeploy's --model-format: absent or 'hf' = what config.json says; 'awq' / 'gptq' must match its quantization_config. */
  modelFormat?: ModelFormat;
}

export const DEFAULT_ENGINE_OPTIONS = {
  dtype: 'f16',
  blockSize: 64,
  maxBatchSize: 32,
  maxNumBatchedTokens: 512,
  cacheMaxEntryCount: 0.8,
  kvCacheDtype: 'f32',
  maxWaiting: 1024,
  enablePrefixCaching: true,
} as const satisfies Partial<EngineOptions>;

interface RequestState {
  request: Request;
  /** performance.now() at generate(), at the first step that scheduled it, at its first output token. */
  arrivalMs: number;
  firstScheduledMs: number | null;
  firstTokenMs: number | null;
  queue: AsyncQueue<GenerateDelta>;
  output: OutputProcessor;
  /** Requests with promptLogprobs: the entries so far (index 0 stays null) until the first delta carries them; then null. */
  promptLogprobs: (PromptTokenLogprob | null)[] | null;
  /** Guided requests: the grammar matcher (null until opened) and how many outputs it has accepted. */
  guided: { matcher: number | null; numAccepted: number } | null;
  /** Logit bias and min_tokens as (token, bias) lists; null: none. */
  bias: { tokenIds: Uint32Array; values: Float32Array } | null;
  minTokens: number;
}

export class Engine implements EngineClient {
  private readonly states = new Map<string, RequestState>();
  /** Where tokenizer.json is (the grammar engine's vocabulary); set by create(). */
  modelDir: string | null = null;
  format?: LoadedFormat;
  private grammarService: GrammarService | null = null;
  private loopRunning = false;
  private accepting = true;
  private fatal: Error | null = null;
  private idleWaiters: (() => void)[] = [];
  private readonly counters = { promptTokensTotal: 0, generationTokensTotal: 0, requestsFinishedTotal: 0 };
  private stepCount = 0;
  /** Request defaults from generation_config.json (EngineOptions.generationConfig 'auto'); {} otherwise. */
  generationDefaults: Readonly<Partial<SamplingParams>> = {};

  private constructor(
    readonly modelName: string,
    readonly sessionLen: number,
    readonly config: ModelConfig,
    readonly tokenizer: Tokenizer,
    readonly runner: ModelRunner,
    readonly kv: KvCacheManager,
    readonly scheduler: Scheduler,
    readonly devices: GpuDevice[],
  ) {
    for (const gpu of devices) {
      gpu.onLost((err) => this.failAll(err));
    }
    runner.onShardFailure((err) => this.failAll(err));
  }

  get codec(): Tokenizer {
    return this.tokenizer;
  }

  static async create(options: EngineOptions): Promise<Engine> {
    const config = await loadModelConfig(options.modelDir);
    checkModelFormat(config.quantization, options.modelFormat);
    const tokenizer = await Tokenizer.fromModelDir(options.modelDir, { chatTemplate: options.chatTemplate });
    const sessionLen = options.sessionLen ?? Math.min(config.maxPositionEmbeddings, 32768);
    // Check the tensor-parallel layout before touching any GPU, so a bad --tp fails fast.
    shardLayout(config, options.devices.length, 0);
    const placements = await shardPlacementFor(options.devices, options.shardProcesses ?? false);
    const devices = placements ? [] : await openDevices(options.devices, { allowRepeatedAdapters: options.allowRepeatedDevices });
    let runner: ModelRunner | null = null;
    try {
      const runnerOptions = {
        dtype: options.dtype,
        blockSize: options.blockSize,
        maxNumSeqs: options.maxBatchSize,
        maxModelLen: sessionLen,
        maxNumBatchedTokens: options.maxNumBatchedTokens,
        cacheMaxEntryCount: options.cacheMaxEntryCount,
        kvCacheBlocks: options.kvCacheBlocks,
        kvCacheDtype: options.kvCacheDtype ?? DEFAULT_ENGINE_OPTIONS.kvCacheDtype,
        gpuMemoryBytes: options.gpuMemoryBytes,
        progress: options.progress,
      };
      runner = placements
        ? await ModelRunner.loadInWorkers(options.modelDir, config, placements, runnerOptions)
        : await ModelRunner.load(options.modelDir, config, devices, runnerOptions);
      const kv = new KvCacheManager({ numBlocks: runner.numBlocks, blockSize: options.blockSize, enablePrefixCaching: options.enablePrefixCaching });
      const scheduler = new Scheduler(
        { maxNumSeqs: options.maxBatchSize, maxNumBatchedTokens: runner.maxTokensPerStep, maxModelLen: sessionLen, maxWaiting: options.maxWaiting },
        kv,
      );
      const name = options.modelName ?? options.modelDir.replace(/\/+$/, '').split('/').pop() ?? 'model';
      const format: LoadedFormat = { weights: describeWeightFormat(config.quantization, options.dtype), kvCacheDtype: runnerOptions.kvCacheDtype };
      log.info(
        `model=${name} arch=${config.hfArchitecture} layers=${config.numLayers} tp=${runner.shards.length}${placements ? ' (worker processes)' : ''} dtype=${options.dtype} ` +
          `weights=${format.weights} ` +
          `kv_blocks=${runner.numBlocks}x${options.blockSize} kv_dtype=${format.kvCacheDtype} session_len=${sessionLen} max_tokens_per_step=${runner.maxTokensPerStep}`,
      );
      const engine = new Engine(name, sessionLen, config, tokenizer, runner, kv, scheduler, devices);
      engine.modelDir = options.modelDir;
      engine.format = format;
      if (options.generationConfig === 'auto') {
        engine.generationDefaults = await requestDefaults(options.modelDir);
        log.info(describeRequestDefaults(engine.generationDefaults));
      }
      return engine;
    } catch (err) {
      // The runner owns worker processes when shards run out of process: end them too.
      runner?.destroy();
      for (const gpu of devices) gpu.destroy();
      throw err;
    }
  }

  /** Token ids that always end generation unless ignore_eos: the model's and the tokenizer's eos ids. */
  get eosTokenIds(): number[] {
    return [...new Set([...this.config.eosTokenIds, ...this.tokenizer.eosTokenIds])];
  }

  /**
   * Runs throwaway greedy requests so that the pipelines real requests use are compiled before the
   * first one arrives: a prompt of more than 16 tokens (the prefill GEMM) with one decode step (the
   * GEMV; it also scores its prompt, compiling the prompt-logprobs kernel), then batches of 2, 4, 8 and 16 one-token prompts (each skinny-GEMM tile height), as far as
   * --max-batch-size and the KV pool allow. Lavapipe compiles a pipeline on its first dispatch:
   * seconds each with an empty Mesa shader cache, which the first user request would otherwise wait
   * for. Leaves no request, KV block or counted token behind. Returns the milliseconds it took.
   */
  async warmup(): Promise<number> {
    const t0 = performance.now();
    const vocab = this.config.vocabSize;
    const prompt = (length: number, first: number) => Array.from({ length }, (_, i) => (first + i) % vocab);
    const runAll = (prompts: number[][], promptLogprobs: number | null = null) =>
      Promise.all(
        prompts.map(async (promptTokenIds, i) => {
          const req: GenerateRequest = {
            requestId: `warmup-${randomUUID()}-${i}`,
            promptTokenIds,
            sampling: { ...DEFAULT_SAMPLING, temperature: 0 },
            maxTokens: 2,
            stop: [],
            stopTokenIds: [],
            ignoreEos: true,
            skipSpecialTokens: true,
            promptLogprobs,
          };
          for await (const _ of this.generate(req)) {
            /* drained */
          }
        }),
      );
    await runAll([prompt(Math.min(32, this.sessionLen - 2), 1)], 1);
    const widest = Math.min(16, this.runner.maxNumSeqs, this.runner.numBlocks);
    for (let batch = 2; batch <= widest; batch *= 2) await runAll(Array.from({ length: batch }, (_, i) => prompt(1, i + 1)));
    this.counters.promptTokensTotal = 0;
    this.counters.generationTokensTotal = 0;
    this.counters.requestsFinishedTotal = 0;
    this.kv.resetStats();
    return performance.now() - t0;
  }

  generate(req: GenerateRequest, signal?: AbortSignal): AsyncIterable<GenerateDelta> {
    if (this.fatal) throw new EngineUnavailableError(this.fatal.message);
    if (!this.accepting) throw new EngineUnavailableError('the server is shutting down');
    // Every semantic check happens here, once; the scheduler only asserts what it guarantees.
    const maxTokens = checkRequest(req, { sessionLen: this.sessionLen, vocabSize: this.config.vocabSize });
    const requestId = req.requestId ?? randomUUID();
    if (this.states.has(requestId)) throw new InvalidRequestError(`request id ${requestId} is already running`);
    const eos = this.eosTokenIds;
    // A guided request ends when its grammar does (EOS is masked until the grammar may end), even with
    // ignoreEos: past that point no token is valid (vLLM finishes it when the matcher terminates).
    const stopTokenIds = [...new Set([...(req.ignoreEos && !req.guided ? [] : eos), ...req.stopTokenIds])];
    const promptLogprobs = req.promptLogprobs ?? null;
    const request = new Request({ requestId, promptTokenIds: [...req.promptTokenIds], sampling: req.sampling, maxTokens, stopTokenIds, promptLogprobs });
    const guided = req.guided ?? null;
    if (guided?.type === 'json_schema') checkJsonSchema(guided.schema);
    const bias = this.biasOf(req);
    // A guided request joins the scheduler once its grammar is compiled and its matcher open.
    if (!guided) this.scheduler.addRequest(request);
    const state: RequestState = {
      request,
      arrivalMs: performance.now(),
      firstScheduledMs: null,
      firstTokenMs: null,
      queue: new AsyncQueue<GenerateDelta>(),
      promptLogprobs: promptLogprobs === null ? null : new Array<PromptTokenLogprob | null>(req.promptTokenIds.length).fill(null),
      output: new OutputProcessor(this.tokenizer, req.promptTokenIds, {
        stop: req.stop,
        skipSpecialTokens: req.skipSpecialTokens,
        wantLogprobs: req.sampling.logprobs !== null,
        stopTokenIds: request.stopTokenIds,
        stopReasonTokenIds: new Set(req.stopTokenIds.filter((id) => !eos.includes(id))),
        includeStopStrInOutput: req.includeStopStrInOutput,
        spacesBetweenSpecialTokens: req.spacesBetweenSpecialTokens,
      }),
      guided: guided ? { matcher: null, numAccepted: 0 } : null,
      bias,
      minTokens: req.minTokens ?? 0,
    };
    this.states.set(requestId, state);
    this.counters.promptTokensTotal += req.promptTokenIds.length;
    if (guided) void this.openGuided(state, guided);
    else void this.runLoop();
    return this.stream(state, signal);
  }

  /** The grammar engine, started on the first guided request. */
  private grammar(): GrammarService {
    if (!this.grammarService) {
      if (!this.modelDir) throw new InvalidRequestError('this engine has no tokenizer.json for the grammar engine: guided decoding is unavailable');
      this.grammarService = new GrammarService(grammarVocab(this.modelDir, this.config.vocabSize, this.eosTokenIds));
    }
    return this.grammarService;
  }

  /** Compiles the request's grammar (cached by its text) and opens its matcher, then schedules it. */
  private async openGuided(state: RequestState, guided: NonNullable<GenerateRequest['guided']>): Promise<void> {
    const id = state.request.requestId;
    try {
      const matcher = await this.grammar().open(guided);
      if (this.states.get(id) !== state) {
        this.grammarService?.close(matcher);
        return;
      }
      state.guided = { matcher, numAccepted: 0 };
      this.scheduler.addRequest(state.request);
      void this.runLoop();
    } catch (err) {
      if (this.states.get(id) !== state) return;
      const error = err instanceof InvalidRequestError ? err : new InvalidRequestError(`guided decoding: ${(err as Error).message}`);
      state.queue.fail(error);
      this.states.delete(id);
      this.notifyIfIdle();
    }
  }

  /** logit_bias as (token, bias) lists; min_tokens adds -inf for the stop ids while it holds. */
  private biasOf(req: GenerateRequest): RequestState['bias'] {
    const entries = new Map<number, number>();
    for (const [id, b] of req.logitBias ?? []) {
      if (!Number.isInteger(id) || id < 0 || id >= this.config.vocabSize) {
        throw new InvalidRequestError(`logit_bias token id ${id} is outside the vocabulary [0, ${this.config.vocabSize})`, 'logit_bias');
      }
      if (!(b >= -100 && b <= 100)) throw new InvalidRequestError(`logit_bias values must be in [-100, 100], got ${b} for token ${id}`, 'logit_bias');
      if (b !== 0) entries.set(id, b);
    }
    const minTokens = req.minTokens ?? 0;
    if (!(Number.isInteger(minTokens) && minTokens >= 0))
      throw new InvalidRequestError(`min_tokens must be a non-negative integer, got ${minTokens}`, 'min_tokens');
    if (entries.size === 0) return null;
    return { tokenIds: Uint32Array.from(entries.keys()), values: Float32Array.from(entries.values()) };
  }

  /**
   * The request's mask-free logits processing this step: its bias, and min_tokens' -inf on the stop ids
   * (unless `holdStops` is false: a grammar that can only end overrides min_tokens, see processingFor).
   */
  private staticProcessing(state: RequestState, holdStops = true): LogitsProcessing | null {
    const holdOff = holdStops && state.request.outputTokenIds.length < state.minTokens ? [...state.request.stopTokenIds] : [];
    if (!state.bias && holdOff.length === 0) return null;
    const entries = new Map<number, number>();
    if (state.bias) state.bias.tokenIds.forEach((id, i) => entries.set(id, state.bias!.values[i]!));
    for (const id of holdOff) entries.set(id, Number.NEGATIVE_INFINITY);
    return { allowedMask: null, biasTokenIds: Uint32Array.from(entries.keys()), biasValues: Float32Array.from(entries.values()) };
  }

  /**
   * This step's logits processing of every sampled row: bias and min_tokens at once, grammar masks
   * from the grammar worker (started now, awaited by the runner only before sampling, so the masks
   * are computed while the forward pass runs). Never rejects: a request whose mask failed is in
   * `failed` (it samples unmasked and is failed after the step).
   */
  private processingFor(rows: ReadonlyMap<string, SamplingRow>): { processing: Promise<Map<string, LogitsProcessing>> | null; failed: Map<string, string> } {
    const failed = new Map<string, string>();
    const fixed = new Map<string, LogitsProcessing>();
    const items: { requestId: string; matcher: number; numOutputs: number; accept: number[] }[] = [];
    for (const id of rows.keys()) {
      const state = this.states.get(id);
      if (!state) continue;
      const p = this.staticProcessing(state);
      if (p) fixed.set(id, p);
      const g = state.guided;
      if (g && g.matcher !== null) {
        const outputs = state.request.outputTokenIds;
        items.push({ requestId: id, matcher: g.matcher, numOutputs: outputs.length, accept: outputs.slice(g.numAccepted) });
      }
    }
    if (items.length === 0) return { processing: fixed.size > 0 ? Promise.resolve(fixed) : null, failed };
    const service = this.grammar();
    const processing = service
      .step(items.map((it) => ({ matcher: it.matcher, accept: it.accept })))
      .catch((err: Error) => items.map(() => ({ mask: null, error: err.message })))
      .then((results) => {
        items.forEach((it, i) => {
          const r = results[i]!;
          const state = this.states.get(it.requestId);
          if (!r.mask) {
            failed.set(it.requestId, r.error ?? 'the grammar engine failed');
            return;
          }
          if (state?.guided) state.guided.numAccepted = it.numOutputs;
          let p = fixed.get(it.requestId);
          // The grammar wins over min_tokens (vLLM #54218): where it allows nothing but its end, holding
          // the stop ids off would leave no token at all, so they stay allowed and the request ends with it.
          if (state && it.numOutputs < state.minTokens && !allowsOtherThan(r.mask, state.request.stopTokenIds, this.config.vocabSize)) {
            p = this.staticProcessing(state, false) ?? undefined;
          }
          fixed.set(it.requestId, {
            allowedMask: r.mask,
            biasTokenIds: p?.biasTokenIds ?? new Uint32Array(0),
            biasValues: p?.biasValues ?? new Float32Array(0),
          });
        });
        return fixed;
      });
    return { processing, failed };
  }

  /** Frees a finished request's grammar matcher. */
  private releaseGuided(state: RequestState): void {
    const m = state.guided?.matcher;
    if (m !== null && m !== undefined) this.grammarService?.close(m);
    if (state.guided) state.guided.matcher = null;
  }

  /**
   * The request's deltas. The abort signal is wired at once (not when reading starts), so a caller
   * that never reads still frees the request by aborting; one that stops reading early frees it too.
   */
  private stream(state: RequestState, signal?: AbortSignal): AsyncGenerator<GenerateDelta> {
    const id = state.request.requestId;
    const onAbort = () => this.abort(id);
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    const self = this;
    return (async function* () {
      try {
        for await (const delta of state.queue) yield delta;
      } finally {
        signal?.removeEventListener('abort', onAbort);
        if (self.states.has(id)) self.abort(id);
      }
    })();
  }

  abort(requestId: string): void {
    const state = this.states.get(requestId);
    if (!state) return;
    this.scheduler.finishRequest(requestId, 'abort');
    this.finish(state, { text: '', tokenIds: [], finishReason: 'abort' });
  }

  /** Tests: the grammar engine (started on demand), e.g. to make its worker abort. */
  get grammarEngine(): GrammarService {
    return this.grammar();
  }

  private finish(state: RequestState, delta: Pick<GenerateDelta, 'text' | 'tokenIds' | 'finishReason' | 'logprobs' | 'stopReason' | 'promptLogprobs'>): void {
    state.queue.push({ requestId: state.request.requestId, ...delta, usage: this.usage(state.request), timing: timingOf(state) });
    state.queue.close();
    this.releaseGuided(state);
    this.states.delete(state.request.requestId);
    this.counters.requestsFinishedTotal++;
    this.notifyIfIdle();
  }

  private usage(r: Request) {
    return { promptTokens: r.promptTokenIds.length, completionTokens: r.outputTokenIds.length, cachedTokens: r.numCachedTokens };
  }

  private async runLoop(): Promise<void> {
    if (this.loopRunning) return;
    this.loopRunning = true;
    try {
      while (this.scheduler.hasWork && !this.fatal) {
        const progressed = await this.step();
        // Let HTTP handlers enqueue and consumers read between steps.
        await new Promise<void>((resolve) => setImmediate(resolve));
        if (!progressed) await new Promise<void>((resolve) => setTimeout(resolve, 5));
      }
    } catch (err) {
      this.failAll(err as Error);
    } finally {
      this.loopRunning = false;
      this.notifyIfIdle();
    }
  }

  /**
   * One engine step. Returns false when nothing could be scheduled. Each request's own part of the
   * step (its sampling row before the forward pass, its output processing after it) runs in its own
   * try/catch, so a failure there ends that request alone. What throws out of here (the scheduler's
   * invariants, runner.execute: the GPU submission itself) fails every request in runLoop.
   */
  private async step(): Promise<boolean> {
    const output = this.scheduler.schedule();
    const scheduledMs = performance.now();
    for (const seq of output.sequences) {
      const state = this.states.get(seq.requestId);
      if (state) state.firstScheduledMs ??= scheduledMs;
    }
    if (output.sequences.length === 0) {
      // The scheduler may still have finished requests (e.g. one that can never fit the KV pool).
      const updates = this.scheduler.update(output, { samples: new Map() });
      this.emitAll(updates);
      return updates.length > 0;
    }
    this.stepCount++;
    const { plan, rows } = this.prepare(output);
    const { processing, failed } = this.processingFor(rows);
    const runnerOutput = await this.runner.execute(plan, rows, processing);
    // A request whose grammar mask failed sampled unconstrained: it ends with the error instead.
    for (const [id, why] of failed) {
      runnerOutput.samples.delete(id);
      this.failRequest(id, new Error(`grammar-constrained decoding failed: ${why}`), 'computing its grammar mask');
    }
    this.emitAll(this.scheduler.update(plan, runnerOutput));
    if (output.preemptedRequestIds.length) {
      log.debug('preempted', { step: this.stepCount, scheduled: output.numScheduledTokens, preempted: output.preemptedRequestIds.length });
    }
    return true;
  }

  /**
   * The sampling row of every sequence that samples this step. A request whose row cannot be built
   * is failed and dropped from the step, so the runner never sees a sequence without its row.
   */
  private prepare(output: SchedulerOutput): { plan: SchedulerOutput; rows: Map<string, SamplingRow> } {
    const rows = new Map<string, SamplingRow>();
    const failed = new Set<string>();
    for (const seq of output.sequences) {
      if (!seq.sample) continue;
      try {
        rows.set(seq.requestId, this.samplingRow(seq.requestId));
      } catch (err) {
        failed.add(seq.requestId);
        this.failRequest(seq.requestId, err, 'preparing its sampling row');
      }
    }
    if (failed.size === 0) return { plan: output, rows };
    const sequences = output.sequences.filter((seq) => !failed.has(seq.requestId));
    const numScheduledTokens = sequences.reduce((n, seq) => n + seq.tokenIds.length, 0);
    return { plan: { ...output, sequences, numScheduledTokens }, rows };
  }

  private samplingRow(requestId: string): SamplingRow {
    const r = this.scheduler.getRequest(requestId);
    if (!r) throw new Error(`request ${requestId} was scheduled but the scheduler no longer knows it`);
    return { params: r.sampling, promptTokenIds: r.promptTokenIds, outputTokenIds: r.outputTokenIds, step: r.outputTokenIds.length };
  }

  private emitAll(updates: readonly RequestUpdate[]): void {
    for (const u of updates) {
      try {
        this.emit(u);
      } catch (err) {
        this.failRequest(u.requestId, err, 'processing its output');
      }
    }
  }

  private emit(update: RequestUpdate): void {
    const state = this.states.get(update.requestId);
    if (!state) return;
    if (update.promptLogprobs && state.promptLogprobs) {
      const { firstIndex, entries } = update.promptLogprobs;
      entries.forEach((e, i) => (state.promptLogprobs![firstIndex + i] = state.output.promptLogprobEntry(e)));
    }
    // A prefill chunk that only brought prompt logprobs: they wait for the request's first delta.
    if (update.newTokenIds.length === 0 && update.finishReason === null) return;
    const promptLogprobs = state.promptLogprobs ? { promptLogprobs: state.promptLogprobs } : {};
    state.promptLogprobs = null;
    if (update.newTokenIds.length > 0) state.firstTokenMs ??= performance.now();
    this.counters.generationTokensTotal += update.newTokenIds.length;
    const processed = state.output.process(update.newTokenIds, update.sample, update.finishReason);
    let finishReason = update.finishReason;
    if (processed.stoppedByString && finishReason !== 'stop') {
      // Also when this token hit max_tokens: the text ends at the stop string, so the reason is 'stop' (as in vLLM).
      this.scheduler.finishRequest(update.requestId, 'stop');
      finishReason = 'stop';
    }
    const delta = {
      text: processed.text,
      tokenIds: update.newTokenIds,
      logprobs: processed.logprobs,
      finishReason,
      stopReason: processed.stopReason,
      ...promptLogprobs,
    };
    if (finishReason !== null) this.finish(state, delta);
    else state.queue.push({ requestId: update.requestId, ...delta, usage: this.usage(state.request) });
  }

  /**
   * Ends one request with an error (a bug or bad data in its own host-side work, not the GPU's):
   * its stream throws, which the server turns into a 500 or an in-band SSE error, and its KV blocks
   * are freed. The engine stays healthy and keeps serving the others.
   */
  private failRequest(requestId: string, err: unknown, during: string): void {
    const error = err instanceof Error ? err : new Error(String(err));
    log.error(`request ${requestId} failed while ${during}; the others go on`, { requestId, err: error.stack ?? error.message });
    this.scheduler.finishRequest(requestId, 'abort');
    const state = this.states.get(requestId);
    if (!state) return; // already finished: its stream has its last delta
    state.queue.fail(error);
    this.releaseGuided(state);
    this.states.delete(requestId);
    this.notifyIfIdle();
  }

  private failAll(err: Error): void {
    this.fatal ??= err;
    log.error(`fatal: ${err.message}`);
    for (const [id, state] of this.states) {
      this.scheduler.finishRequest(id, 'abort');
      state.queue.fail(new EngineUnavailableError(err.message));
      this.releaseGuided(state);
      this.states.delete(id);
    }
    this.notifyIfIdle();
  }

  private notifyIfIdle(): void {
    if (this.states.size > 0 || this.loopRunning) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  /** Resolves when no request is in flight. */
  whenIdle(): Promise<void> {
    if (this.states.size === 0 && !this.loopRunning) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  stats(): EngineStats {
    return {
      numRunning: this.scheduler.numRunning,
      numWaiting: this.scheduler.numWaiting,
      kvCacheUsage: this.kv.usage,
      numKvBlocks: this.kv.numBlocks,
      numFreeKvBlocks: this.kv.numFreeBlocks,
      prefixCacheQueries: this.kv.prefixCacheQueries,
      prefixCacheHits: this.kv.prefixCacheHits,
      promptTokensTotal: this.counters.promptTokensTotal,
      generationTokensTotal: this.counters.generationTokensTotal,
      numPreemptionsTotal: this.scheduler.numPreemptionsTotal,
      requestsFinishedTotal: this.counters.requestsFinishedTotal,
    };
  }

  health(): EngineHealth {
    if (this.fatal) return { ready: false, reason: this.fatal.message };
    if (!this.accepting) return { ready: false, reason: 'shutting down' };
    return { ready: true };
  }

  async shutdown(): Promise<void> {
    this.accepting = false;
    await this.whenIdle();
    this.runner.destroy();
    this.grammarService?.destroy();
    for (const gpu of this.devices) gpu.destroy();
  }
}

/** Whether an allowed-token bitmask allows any token below vocabSize that is not one of `ids`. */
function allowsOtherThan(mask: Uint32Array, ids: ReadonlySet<number>, vocabSize: number): boolean {
  const words = Math.min(mask.length, Math.ceil(vocabSize / 32));
  for (let w = 0; w < words; w++) {
    let bits = mask[w]!;
    while (bits !== 0) {
      const bit = 31 - Math.clz32(bits);
      const id = w * 32 + bit;
      if (id < vocabSize && !ids.has(id)) return true;
      bits &= ~(1 << bit);
    }
  }
  return false;
}

/** Queue, prefill and decode seconds of a request that finishes now (vLLM's phases). */
function timingOf(state: RequestState): RequestTiming {
  const now = performance.now();
  const seconds = (from: number | null, to: number | null) => (from === null || to === null ? null : (to - from) / 1000);
  return {
    queueSeconds: seconds(state.arrivalMs, state.firstScheduledMs),
    prefillSeconds: seconds(state.firstScheduledMs, state.firstTokenMs),
    decodeSeconds: seconds(state.firstTokenMs, now),
  };
}
