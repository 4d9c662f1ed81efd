// The engine as every layer above it sees it: submit a request, iterate its deltas, abort it.
import type { FinishReason, TextCodec } from '../common/types.js';
import type { SamplingParams } from '../sampling/params.js';

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
}

export interface TopLogprob {
  tokenId: number;
  token: string;
  logprob: number;
}

export interface TokenLogprob extends TopLogprob {
  top: TopLogprob[];
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
  finishReason: FinishReason | null;
  usage: Usage;
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
  generate(request: GenerateRequest, signal?: AbortSignal): AsyncIterable<GenerateDelta>;
  abort(requestId: string): void;
  stats(): EngineStats;
  health(): EngineHealth;
  /** Stops accepting requests, lets running ones finish, then releases the GPU. */
  shutdown(): Promise<void>;
}
