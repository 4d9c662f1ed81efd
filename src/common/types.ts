// Plain types that several layers share. This module is a leaf: it imports nothing, so any layer may
// import it without reaching upward.

/** Why a request stopped: a stop condition, its token limit, or an abort (client gone, or a failure). */
export type FinishReason = 'stop' | 'length' | 'abort';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool';
  content: string;
  /** The speaker's name (a tool message: the function's, as some templates read it). */
  name?: string;
  /** An assistant turn's calls, arguments parsed into objects as transformers' templates expect. */
  tool_calls?: ChatToolCall[];
  /** A tool message: the id of the call it answers. */
  tool_call_id?: string;
}

/** One call of an assistant turn, as chat templates see it. */
export interface ChatToolCall {
  id?: string;
  type: 'function';
  function: { name: string; arguments: unknown };
}

export interface ChatTemplateOptions {
  /** Append the assistant header so the model answers (default true). */
  addGenerationPrompt?: boolean;
  /** Extra template variables (a request's chat_template_kwargs, e.g. enable_thinking); they never replace messages or the special tokens. */
  kwargs?: Readonly<Record<string, unknown>>;
}

/** Text <-> tokens as the server needs it; the real tokenizer implements this. */
export interface TextCodec {
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  decode(tokenIds: readonly number[], options?: { skipSpecialTokens?: boolean; spacesBetweenSpecialTokens?: boolean }): string;
  /** The chat template rendered with add_generation_prompt, ready to encode (special tokens as text). */
  applyChatTemplate(messages: readonly ChatMessage[], options?: ChatTemplateOptions): string;
  readonly bosTokenId: number | null;
}

/**
 * Element type of the paged KV cache: f16 halves its memory (packed u32 pairs, no shader-f16 needed);
 * 'int8' and 'int4' are LMDeploy's quant_policy 8 and 4: per (token, kv head) asymmetric quantization
 * with an f16 (scale, min) pair per row, dequantized to f32 inside attention.
 */
export type KvCacheDtype = 'f32' | 'f16' | 'int8' | 'int4';

/** The quantized KV cache dtypes and their bits per element. */
export const KV_QUANT_BITS = { int8: 8, int4: 4 } as const;

/** True for the dtypes that store codes plus a per-row (scale, min) pair. */
export function isQuantizedKvCache(dtype: KvCacheDtype): dtype is keyof typeof KV_QUANT_BITS {
  return dtype === 'int8' || dtype === 'int4';
}
