// Request schemas: the one definition that ajv validates with and /openapi.json publishes.
import { MAX_SAFE_SEED, nullable, responseFormatProperty, samplingProperties, stringOrStringList, type JsonSchema } from './schema.js';

export const MAX_TOP_LOGPROBS_WIRE = 20;
/** Longest text accepted in one prompt or message; the body limit usually bites first. */
const MAX_TEXT = 4 * 1024 * 1024;
/** Larger values are capped to the session length anyway; beyond int32 they are only mistakes. */
const MAX_OUTPUT_TOKENS = 2 ** 31 - 1;
const tokenId: JsonSchema = { type: 'integer', minimum: 0, maximum: 2 ** 31 - 1 };
const promptLogprobsProperty: JsonSchema = nullable({
  type: 'integer',
  minimum: 0,
  maximum: MAX_TOP_LOGPROBS_WIRE,
  description:
    "vLLM's prompt_logprobs: every prompt token's logprob and rank plus this many top alternatives, in the response's prompt_logprobs. Not with stream: true. The request skips the prefix cache.",
});

export const completionRequestSchema: JsonSchema = {
  title: 'CompletionRequest',
  type: 'object',
  required: ['prompt'],
  properties: {
    prompt: {
      description: 'A string, a list of token ids, or a list of either (each prompt gets its own n choices).',
      anyOf: [
        { type: 'string', maxLength: MAX_TEXT },
        { type: 'array', items: tokenId, minItems: 1 },
        { type: 'array', items: { type: 'string', maxLength: MAX_TEXT }, minItems: 1, maxItems: 64 },
        { type: 'array', items: { type: 'array', items: tokenId, minItems: 1 }, minItems: 1, maxItems: 64 },
      ],
    },
    max_tokens: nullable({
      type: 'integer',
      minimum: 0,
      maximum: MAX_OUTPUT_TOKENS,
      description: 'Default 16; capped to the session length. 0 only scores the prompt (with echo and logprobs, or prompt_logprobs): no token is generated.',
    }),
    logprobs: nullable({ type: 'integer', minimum: 0, maximum: MAX_TOP_LOGPROBS_WIRE }),
    echo: nullable({ type: 'boolean', description: "Prepend the prompt to the text; with logprobs, also the prompt tokens' logprobs (the first is null)." }),
    prompt_logprobs: promptLogprobsProperty,
    response_format: responseFormatProperty,
    ...samplingProperties,
  },
};

const toolCallSchema: JsonSchema = {
  type: 'object',
  required: ['function'],
  properties: {
    id: { type: 'string', maxLength: 256 },
    type: { const: 'function' },
    function: {
      type: 'object',
      required: ['name', 'arguments'],
      properties: { name: { type: 'string', maxLength: 256 }, arguments: { type: 'string', maxLength: MAX_TEXT } },
    },
  },
};

const contentPart: JsonSchema = {
  type: 'object',
  required: ['type'],
  properties: {
    type: { const: 'text', description: 'Only text parts are supported.' },
    text: { type: 'string', maxLength: MAX_TEXT },
  },
  // Checked after `type`, so an image part is reported as "must be 'text'", not as a missing text.
  if: { properties: { type: { const: 'text' } } },
  // biome-ignore lint/suspicious/noThenProperty: JSON Schema's if/then keyword, not a thenable
  then: { required: ['text'] },
};

export const chatMessageSchema: JsonSchema = {
  type: 'object',
  required: ['role'],
  properties: {
    role: { enum: ['system', 'developer', 'user', 'assistant', 'tool'] },
    content: nullable({
      anyOf: [
        { type: 'string', maxLength: MAX_TEXT },
        { type: 'array', items: contentPart, maxItems: 256 },
      ],
    }),
    name: { type: 'string', maxLength: 256 },
    tool_calls: nullable({
      type: 'array',
      items: toolCallSchema,
      maxItems: 256,
      description: "An assistant turn's calls; the template sees arguments parsed into objects.",
    }),
    tool_call_id: nullable({ type: 'string', maxLength: 256, description: 'A tool message: the id of the call it answers.' }),
  },
};

/** OpenAI's function tool. */
export const toolSchema: JsonSchema = {
  type: 'object',
  required: ['type', 'function'],
  properties: {
    type: { const: 'function' },
    function: {
      type: 'object',
      required: ['name'],
      properties: {
        name: { type: 'string', minLength: 1, maxLength: 64, pattern: '^[a-zA-Z0-9_.-]+$' },
        description: nullable({ type: 'string', maxLength: MAX_TEXT }),
        parameters: nullable({ type: 'object', description: 'A JSON Schema for the arguments.' }),
        strict: nullable({
          type: 'boolean',
          description: 'Accepted; tool_choice required or named always follows the schema (grammar), auto does not constrain the call (no structural tags).',
        }),
      },
    },
  },
};

const toolsProperty: JsonSchema = nullable({
  type: 'array',
  items: toolSchema,
  maxItems: 128,
  description: 'Functions the model may call; the chat template sees them as `tools`.',
});

/** How the chat template renders the messages (vLLM's fields), shared by chat completions and /tokenize. */
const chatTemplateProperties: Record<string, JsonSchema> = {
  add_generation_prompt: nullable({ type: 'boolean', description: "Default true: end the prompt with the assistant's header." }),
  continue_final_message: nullable({
    type: 'boolean',
    description: 'Default false. true: the last message (an assistant prefix) is continued, not closed; needs add_generation_prompt: false.',
  }),
  chat_template_kwargs: nullable({
    type: 'object',
    description: 'Extra variables for the Jinja chat template, e.g. {"enable_thinking": false}.',
  }),
};

export const chatCompletionRequestSchema: JsonSchema = {
  title: 'ChatCompletionRequest',
  type: 'object',
  required: ['messages'],
  properties: {
    messages: { type: 'array', items: chatMessageSchema, minItems: 1, maxItems: 4096 },
    max_tokens: nullable({ type: 'integer', minimum: 1, maximum: MAX_OUTPUT_TOKENS, description: 'Deprecated alias of max_completion_tokens.' }),
    max_completion_tokens: nullable({ type: 'integer', minimum: 1, maximum: MAX_OUTPUT_TOKENS, description: 'Default: the rest of the session.' }),
    logprobs: nullable({ type: 'boolean' }),
    top_logprobs: nullable({ type: 'integer', minimum: 0, maximum: MAX_TOP_LOGPROBS_WIRE }),
    prompt_logprobs: promptLogprobsProperty,
    tools: toolsProperty,
    tool_choice: nullable({
      description:
        'none, auto (default with tools: the model decides; needs a tool call parser), required (at least one call, grammar-enforced) or {"type": "function", "function": {"name": ...}} (that call, grammar-enforced).',
      anyOf: [
        { enum: ['none', 'auto', 'required'] },
        {
          type: 'object',
          required: ['type', 'function'],
          properties: {
            type: { const: 'function' },
            function: { type: 'object', required: ['name'], properties: { name: { type: 'string', maxLength: 64 } } },
          },
        },
      ],
    }),
    parallel_tool_calls: nullable({ type: 'boolean', description: 'Default true. false: tool_choice required makes exactly one call.' }),
    response_format: responseFormatProperty,
    ...chatTemplateProperties,
    ...samplingProperties,
  },
};

export const interactiveRequestSchema: JsonSchema = {
  title: 'InteractiveRequest',
  description: "LMDeploy's /v1/chat/interactive request (the shape lmdeploy's APIClient.chat_interactive_v1 sends).",
  type: 'object',
  required: ['prompt'],
  properties: {
    prompt: {
      description: "This turn's user text, or a list of chat messages.",
      anyOf: [
        { type: 'string', maxLength: MAX_TEXT },
        { type: 'array', items: chatMessageSchema, maxItems: 4096 },
      ],
    },
    session_id: nullable({ type: 'integer', minimum: -1, maximum: MAX_SAFE_SEED, description: '-1: a new session.' }),
    interactive_mode: nullable({ type: 'boolean', description: 'true: keep the history for the next turn.' }),
    stream: nullable({ type: 'boolean', description: 'Newline-delimited JSON objects, one per step.' }),
    stop: nullable(stringOrStringList),
    request_output_len: nullable({ type: 'integer', minimum: 0, maximum: MAX_OUTPUT_TOKENS, description: 'Default: the rest of the session.' }),
    top_p: nullable({ type: 'number', exclusiveMinimum: 0, maximum: 1 }),
    top_k: nullable({ type: 'integer', minimum: 0, maximum: 1_000_000 }),
    temperature: nullable({ type: 'number', minimum: 0, maximum: 2 }),
    repetition_penalty: nullable({ type: 'number', exclusiveMinimum: 0, maximum: 10 }),
    ignore_eos: nullable({ type: 'boolean' }),
    skip_special_tokens: nullable({ type: 'boolean' }),
    cancel: nullable({ type: 'boolean', description: "true: abort the session's running turn." }),
    adapter_name: nullable({ type: 'string', maxLength: 256, description: 'Ignored (no LoRA adapters).' }),
    seed: nullable({ type: 'integer', minimum: -MAX_SAFE_SEED, maximum: MAX_SAFE_SEED }),
    min_p: nullable({ type: 'number', minimum: 0, maximum: 1 }),
  },
};

export const encodeRequestSchema: JsonSchema = {
  title: 'EncodeRequest',
  type: 'object',
  required: ['input'],
  properties: {
    input: {
      anyOf: [
        { type: 'string', maxLength: MAX_TEXT },
        { type: 'array', items: { type: 'string', maxLength: MAX_TEXT }, maxItems: 1024 },
      ],
    },
    add_bos: nullable({ type: 'boolean', description: 'Default true.' }),
    do_preprocess: nullable({ type: 'boolean', description: 'Ignored (LMDeploy compatibility).' }),
  },
};

export const tokenizeRequestSchema: JsonSchema = {
  title: 'TokenizeRequest',
  description: "vLLM's /tokenize: either prompt (raw text) or messages (rendered by the chat template).",
  type: 'object',
  properties: {
    model: { type: 'string', description: 'Must equal the served model name when given.' },
    prompt: { type: 'string', maxLength: MAX_TEXT },
    messages: { type: 'array', items: chatMessageSchema, minItems: 1, maxItems: 4096 },
    tools: toolsProperty,
    add_special_tokens: nullable({ type: 'boolean', description: 'Add BOS etc.; default true with prompt, false with messages (the template writes them).' }),
    ...chatTemplateProperties,
  },
};

export const detokenizeRequestSchema: JsonSchema = {
  title: 'DetokenizeRequest',
  type: 'object',
  required: ['tokens'],
  properties: {
    model: { type: 'string', description: 'Must equal the served model name when given.' },
    tokens: { type: 'array', items: tokenId, maxItems: 1_000_000 },
  },
};
