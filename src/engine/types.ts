// The engine as every layer above it sees it: submit a request, iterate its deltas, abort it.
import type { FinishReason, KvCacheDtype, TextCodec } from '../common/types.js';
import type { SamplingParams } from '../sampling/params.js';
import type { GrammarSpec, StructuralTagFormat } from '../structured/types.js';

export interface GenerateRequest {
  /** Unique per request; the engine assigns one when omitted. */
  requestId?: string;
  /** Already tokenized prompt, including BOS and any chat template. */
  promptTokenIds: number[];
  /** The request field the prompt came from, which errors about the prompt name; default 'prompt'. */
  promptParam?: 'prompt' | 'messages';
  sampling: SamplingParams;
  /** null: generate until a stop condition or the session length; the engine caps it to the session length. */
  maxTokens: number | null;
  /** Stop strings: matched across token boundaries; the stop text itself is not returned. */
  stop: string[];
  /** Extra token ids that end generation (the model's eos ids always do unless ignoreEos). */
  stopTokenIds: number[];
  ignoreEos: boolean;
  skipSpecialTokens: boolean;
  /** Keep the matched stop string at the end of the text (vLLM's include_stop_str_in_output); default false. */
  includeStopStrInOutput?: boolean;
  /** With skipSpecialTokens false: a space between added tokens and the text around them (vLLM); default true. */
  spacesBetweenSpecialTokens?: boolean;
  /**
   * Also compute every prompt token's logprob, with this many top alternatives (0..20; vLLM's
   * prompt_logprobs, and echo with logprobs); null/absent: none. Such a request skips the prefix
   * cache, and may set maxTokens 0 to score the prompt without generating (finish reason 'length').
   */
  promptLogprobs?: number | null;
  /**
   * Grammar-constrained decoding (response_format, vLLM's guided_* fields, tool_choice required or
   * named): every sampled token keeps the output a prefix of the grammar's language, and EOS is
   * allowed only where the grammar can end. Absent: unconstrained.
   */
  guided?: GuidedDecoding | null;
  /** Token id -> bias added to its logit before sampling and logprobs (OpenAI's logit_bias, -100..100). */
  logitBias?: ReadonlyMap<number, number> | null;
  /** EOS and stop token ids are masked until this many tokens were generated (vLLM's min_tokens). */
  minTokens?: number;
}

export type { StructuralTagFormat };

/**
 * What a guided request's output must match: the grammar service's own spec (json_object, json_schema,
 * regex, choice, EBNF grammar, or xgrammar's structural tag for strict tools in tool_choice auto).
 */
export type GuidedDecoding = GrammarSpec;

export interface TopLogprob {
  tokenId: number;
  /** The token's text; a token whose bytes are not complete UTF-8 is spelled "bytes:\\xe2\\x80" (as OpenAI does). */
  token: string;
  logprob: number;
  /** The token's own bytes (a byte-fallback or byte-level piece of a character included); absent: UTF-8 of token. */
  bytes?: number[];
}

export interface TokenLogprob extends TopLogprob {
  top: TopLogprob[];
}

/** A prompt token's logprob given the tokens before it, and its 1-based rank in the vocabulary. */
export interface PromptTokenLogprob extends TokenLogprob {
  rank: number;
}

export interface Usage {
  promptTokens: number;
  completionTokens: number;
  /** Prompt tokens whose KV came from the prefix cache. */
  cachedTokens: number;
}

/** One step's worth of output for one request. The last delta has finishReason set. */
export interface GenerateDelta {
  requestId: string;
  /** New text since the previous delta (never a broken UTF-8 character, never part of a stop string). */
  text: string;
  /** New token ids since the previous delta. */
  tokenIds: number[];
  /** One entry per new token when the request asked for logprobs. */
  logprobs?: TokenLogprob[];
  /**
   * Requests with promptLogprobs, on their first delta only: one entry per prompt token, null for
   * the first (nothing precedes it).
   */
  promptLogprobs?: (PromptTokenLogprob | null)[];
  finishReason: FinishReason | null;
  /** With finishReason 'stop' (vLLM's stop_reason): the stop string matched, or a stop_token_ids id; absent/null for eos. */
  stopReason?: string | number | null;
  usage: Usage;
  /** Where the request's time went; on the last delta only (engines that do not measure leave it out). */
  timing?: RequestTiming;
}

/** The engine's account of one request, in seconds (vLLM's queued -> scheduled -> first token -> finished). */
export interface RequestTiming {
  /** From arrival (generate()) to the first step that scheduled it; null when it never ran. */
  queueSeconds: number | null;
  /** From that first scheduling to its first output token; null when no token came. */
  prefillSeconds: number | null;
  /** From the first output token to the finish; null when no token came. */
  decodeSeconds: number | null;
}

export interface EngineStats {
  numRunning: number;
  numWaiting: number;
  /** Fraction of KV blocks in use, 0..1. */
  kvCacheUsage: number;
  numKvBlocks: number;
  numFreeKvBlocks: number;
  prefixCacheQueries: number;
  prefixCacheHits: number;
  promptTokensTotal: number;
  generationTokensTotal: number;
  numPreemptionsTotal: number;
  requestsFinishedTotal: number;
}

/** What was loaded, as the startup log line says it. */
export interface LoadedFormat {
  /** e.g. `f16`, `awq-int4 g128`, `gptq-int4 g32` (checkpoint/quantization.ts describeWeightFormat). */
  weights: string;
  kvCacheDtype: KvCacheDtype;
}

export interface EngineHealth {
  ready: boolean;
  /** Why not ready: "loading", or the device-loss message. */
  reason?: string;
}

export interface EngineClient {
  readonly modelName: string;
  /** Maximum prompt + output tokens of one sequence. */
  readonly sessionLen: number;
  readonly codec: TextCodec;
  /** Request defaults from the model's generation_config.json (serve --generation-config auto); absent: none. */
  readonly generationDefaults?: Readonly<Partial<SamplingParams>>;
  /** The weight and KV cache formats; absent until a model is loaded. */
  readonly format?: LoadedFormat;
  generate(request: GenerateRequest, signal?: AbortSignal): AsyncIterable<GenerateDelta>;
  abort(requestId: string): void;
  stats(): EngineStats;
  health(): EngineHealth;
  /** Stops accepting requests, lets running ones finish, then releases the GPU. */
  shutdown(): Promise<void>;
}
