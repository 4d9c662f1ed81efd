// Sampling parameters as the engine and kernels see them (already validated and defaulted by the
// protocol layer). Neutral values switch a stage off.

export interface SamplingParams {
  /** 0 means greedy (argmax). */
  temperature: number;
  /** Nucleus sampling; 1 = off. */
  topP: number;
  /** Keep the k most likely tokens; 0 = off. */
  topK: number;
  /** Drop tokens whose probability is below minP * p(max); 0 = off. */
  minP: number;
  /** HF-style: divides positive (multiplies negative) logits of every token seen in prompt or output; 1 = off. */
  repetitionPenalty: number;
  /** OpenAI-style: subtracted once from the logit of every token present in the output so far; 0 = off. */
  presencePenalty: number;
  /** OpenAI-style: subtracted count-times from the logit of each output token; 0 = off. */
  frequencyPenalty: number;
  /** Per-request RNG seed; the engine picks one when the caller gave none, so every request is reproducible. */
  seed: number;
  /** How many top alternatives to return per token: null = no logprobs at all, 0 = only the chosen token's. */
  logprobs: number | null;
}

export const DEFAULT_SAMPLING: Readonly<SamplingParams> = Object.freeze({
  temperature: 1,
  topP: 1,
  topK: 0,
  minP: 0,
  repetitionPenalty: 1,
  presencePenalty: 0,
  frequencyPenalty: 0,
  seed: 0,
  logprobs: null,
});

export const MAX_TOP_LOGPROBS = 20;

/** One row of a sampling batch: the parameters plus the history that penalties look at. */
export interface SamplingRow {
  params: SamplingParams;
  promptTokenIds: ArrayLike<number>;
  outputTokenIds: ArrayLike<number>;
  /** How many tokens this request has drawn so far; with the seed it picks the random stream. */
  step: number;
}

/**
 * Per-row logits processing before penalties, temperature, filters and logprobs (vLLM v1's order:
 * allowed-token mask, then logit bias / min_tokens): a row's logits become
 * (allowed ? logit : -inf) + bias.
 */
export interface LogitsProcessing {
  /** Allowed-token bitmask, ceil(vocab / 32) words, bit (id & 31) of word (id >> 5); null: all allowed. */
  allowedMask: Uint32Array | null;
  /** Distinct token ids and the bias added to each (may be -Infinity: never sampled). */
  biasTokenIds: Uint32Array;
  biasValues: Float32Array;
}

export interface TokenChoice {
  tokenId: number;
  /** log-softmax of the raw logits (before penalties and temperature), as vLLM reports by default. */
  logprob: number;
}

export interface SampleResult extends TokenChoice {
  /** Top alternatives, most likely first; empty unless params.logprobs > 0. */
  topLogprobs: TokenChoice[];
}
