// Wire types of the OpenAI-compatible and LMDeploy endpoints (snake_case, as on the wire). The
// request types mirror the JSON schemas in requests.ts, which validate them before a handler runs.

export interface StreamOptions {
  include_usage?: boolean | null;
}

/** Fields shared by completions and chat completions. */
export interface SamplingRequestFields {
  model?: string;
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  min_p?: number | null;
  n?: number | null;
  stop?: string | string[] | null;
  stop_token_ids?: number[] | null;
  seed?: number | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  repetition_penalty?: number | null;
  ignore_eos?: boolean | null;
  skip_special_tokens?: boolean | null;
  spaces_between_special_tokens?: boolean | null;
  include_stop_str_in_output?: boolean | null;
  stream?: boolean | null;
  stream_options?: StreamOptions | null;
  user?: string | null;
  return_token_ids?: boolean | null;
  logit_bias?: Record<string, number> | null;
  min_tokens?: number | null;
  min_new_tokens?: number | null;
  guided_json?: Record<string, unknown> | string | null;
  guided_regex?: string | null;
  guided_choice?: string[] | null;
  guided_grammar?: string | null;
}

/** OpenAI's response_format; regex_schema is LMDeploy's. */
export interface ResponseFormat {
  type: string;
  json_schema?: { name: string; description?: string; schema?: Record<string, unknown>; strict?: boolean | null };
  regex_schema?: string;
}

export type CompletionPrompt = string | number[] | string[] | number[][];

export interface CompletionRequest extends SamplingRequestFields {
  response_format?: ResponseFormat | null;
  prompt: CompletionPrompt;
  max_tokens?: number | null;
  logprobs?: number | null;
  echo?: boolean | null;
  prompt_logprobs?: number | null;
}

export interface ChatContentPart {
  type: 'text';
  text: string;
}

export interface ChatRequestMessage {
  role: 'system' | 'user' | 'assistant' | 'tool' | 'developer';
  content?: string | ChatContentPart[] | null;
  name?: string;
  /** An assistant turn's calls (arguments as JSON text, as OpenAI returns them). */
  tool_calls?: ToolCall[] | null;
  /** A tool message: the call it answers. */
  tool_call_id?: string | null;
}

/** OpenAI's function tool. */
export interface ToolDefinition {
  type: 'function';
  function: { name: string; description?: string | null; parameters?: Record<string, unknown> | null; strict?: boolean | null };
}

export type ToolChoice = 'none' | 'auto' | 'required' | { type: 'function'; function: { name: string } };

export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/** A streamed piece of a call: the first carries id, type and name (arguments ""), later ones argument text. */
export interface ToolCallDelta {
  index: number;
  id?: string;
  type?: 'function';
  function?: { name?: string; arguments?: string };
}

export interface ChatCompletionRequest extends SamplingRequestFields {
  messages: ChatRequestMessage[];
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  logprobs?: boolean | null;
  top_logprobs?: number | null;
  prompt_logprobs?: number | null;
  add_generation_prompt?: boolean | null;
  continue_final_message?: boolean | null;
  chat_template_kwargs?: Record<string, unknown> | null;
  tools?: ToolDefinition[] | null;
  tool_choice?: ToolChoice | null;
  parallel_tool_calls?: boolean | null;
  response_format?: ResponseFormat | null;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
}

export type WireFinishReason = 'stop' | 'length' | 'abort' | 'tool_calls' | null;
/** vLLM's stop_reason: the stop string or stop_token_ids id that ended the choice; null for eos, length, abort. */
export type WireStopReason = string | number | null;

export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: (number | null)[];
  top_logprobs: (Record<string, number> | null)[];
  text_offset: number[];
}

/** vLLM's prompt_logprobs: null for the first prompt token, then {token id: {logprob, rank, decoded_token}}. */
export type WirePromptLogprobs = (Record<string, { logprob: number; rank: number; decoded_token: string }> | null)[];

export interface CompletionChoice {
  index: number;
  text: string;
  logprobs: CompletionLogprobs | null;
  prompt_logprobs?: WirePromptLogprobs;
  finish_reason: WireFinishReason;
  stop_reason?: WireStopReason;
  token_ids?: number[];
  prompt_token_ids?: number[];
}

export interface CompletionResponse {
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  choices: CompletionChoice[];
  usage: Usage | null;
  prompt_token_ids?: number[] | number[][];
}

export interface ChatTopLogprob {
  token: string;
  logprob: number;
  bytes: number[];
}
export interface ChatTokenLogprob extends ChatTopLogprob {
  top_logprobs: ChatTopLogprob[];
}
export interface ChatLogprobs {
  content: ChatTokenLogprob[];
}

export interface ChatCompletionChoice {
  index: number;
  message: { role: 'assistant'; content: string | null; reasoning_content?: string | null; refusal: null; tool_calls?: ToolCall[] };
  logprobs: ChatLogprobs | null;
  finish_reason: WireFinishReason;
  stop_reason?: WireStopReason;
  token_ids?: number[];
}

export interface ChatCompletionResponse {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: ChatCompletionChoice[];
  prompt_logprobs?: WirePromptLogprobs;
  usage: Usage;
  prompt_token_ids?: number[];
}

export interface ChatCompletionChunkChoice {
  index: number;
  delta: { role?: 'assistant'; content?: string; reasoning_content?: string; tool_calls?: ToolCallDelta[] };
  logprobs: ChatLogprobs | null;
  finish_reason: WireFinishReason;
  stop_reason?: WireStopReason;
  token_ids?: number[];
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: ChatCompletionChunkChoice[];
  usage?: Usage | null;
  prompt_token_ids?: number[];
}

export interface CompletionChunk {
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  choices: CompletionChoice[];
  usage?: Usage | null;
  prompt_token_ids?: number[] | number[][];
}

export interface ModelCard {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
  root: string;
  parent: null;
  max_model_len: number;
}

export interface ModelList {
  object: 'list';
  data: ModelCard[];
}

/** LMDeploy's /v1/chat/interactive request (lmdeploy.serve.openai.protocol.GenerateRequest). */
export interface InteractiveRequest {
  prompt: string | ChatRequestMessage[];
  session_id?: number | null;
  interactive_mode?: boolean | null;
  stream?: boolean | null;
  stop?: string | string[] | null;
  request_output_len?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  temperature?: number | null;
  repetition_penalty?: number | null;
  ignore_eos?: boolean | null;
  skip_special_tokens?: boolean | null;
  cancel?: boolean | null;
  adapter_name?: string | null;
  image_url?: unknown;
  seed?: number | null;
  min_p?: number | null;
}

/** LMDeploy's GenerateResponse: one JSON object, or one per line when streaming. */
export interface InteractiveResponse {
  text: string;
  tokens: number;
  input_tokens: number;
  history_tokens: number;
  finish_reason: 'stop' | 'length' | 'abort' | null;
}

export interface EncodeRequest {
  input: string | string[];
  add_bos?: boolean | null;
  do_preprocess?: boolean | null;
}
export interface EncodeResponse {
  input_ids: number[] | number[][];
  length: number | number[];
}

/** vLLM's /tokenize request: prompt or messages. */
export interface TokenizeRequest {
  model?: string;
  prompt?: string;
  messages?: ChatRequestMessage[];
  tools?: ToolDefinition[] | null;
  add_special_tokens?: boolean | null;
  add_generation_prompt?: boolean | null;
  continue_final_message?: boolean | null;
  chat_template_kwargs?: Record<string, unknown> | null;
}
export interface TokenizeResponse {
  count: number;
  max_model_len: number;
  tokens: number[];
}
export interface DetokenizeRequest {
  model?: string;
  tokens: number[];
}
export interface DetokenizeResponse {
  prompt: string;
}

export interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | number | null };
}

/** GET /status: what the chat page's status strip shows (not an OpenAI or LMDeploy endpoint). */
export interface ServerStatus {
  model: string;
  max_model_len: number;
  ready: boolean;
  reason: string | null;
  /** The GPU adapters the model runs on, one per tensor-parallel shard (empty while loading). */
  devices: string[];
  num_requests_running: number;
  num_requests_waiting: number;
  /** Fraction of KV cache blocks in use, 0..1. */
  kv_cache_usage: number;
  num_kv_blocks: number;
  num_free_kv_blocks: number;
  /** The weight format as the startup log says it (`f16`, `awq-int4 g128`); null while loading. */
  weights: string | null;
  /** The KV cache element type (`f16`, `int8` for --quant-policy 8, `int4` for 4); null while loading. */
  kv_cache_dtype: string | null;
  /** Whether /v1/* needs an API key (the chat page then asks for one). */
  auth_required: boolean;
  version: string;
}
