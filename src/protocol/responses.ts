// Response schemas, published in /openapi.json (responses are built by code, not validated).
import { errorResponseSchema, usageSchema, type JsonSchema } from './schema.js';

const finishReason: JsonSchema = { enum: ['stop', 'length', 'abort', null] };
const tokenIds: JsonSchema = { type: 'array', items: { type: 'integer' } };
const stopReason: JsonSchema = {
  type: ['string', 'integer', 'null'],
  description: 'The stop string or stop_token_ids id that ended the choice (vLLM); null for eos, length and abort.',
};

const completionLogprobs: JsonSchema = {
  type: ['object', 'null'],
  properties: {
    tokens: { type: 'array', items: { type: 'string' } },
    token_logprobs: { type: 'array', items: { type: ['number', 'null'] } },
    top_logprobs: { type: 'array', items: { type: ['object', 'null'], additionalProperties: { type: 'number' } } },
    text_offset: { type: 'array', items: { type: 'integer' } },
  },
};

const promptLogprobs: JsonSchema = {
  type: 'array',
  description:
    'With prompt_logprobs (vLLM): per prompt token null (the first) or an object keyed by token id holding the prompt token and the top alternatives, each {logprob, rank, decoded_token}.',
  items: {
    type: ['object', 'null'],
    additionalProperties: {
      type: 'object',
      properties: { logprob: { type: 'number' }, rank: { type: 'integer' }, decoded_token: { type: 'string' } },
    },
  },
};

const chatTopLogprob: JsonSchema = {
  type: 'object',
  properties: { token: { type: 'string' }, logprob: { type: 'number' }, bytes: tokenIds },
};

const chatLogprobs: JsonSchema = {
  type: ['object', 'null'],
  properties: {
    content: {
      type: 'array',
      items: { ...chatTopLogprob, properties: { ...(chatTopLogprob.properties as object), top_logprobs: { type: 'array', items: chatTopLogprob } } },
    },
  },
};

export const completionResponseSchema: JsonSchema = {
  title: 'CompletionResponse',
  description: 'With stream: true, a text/event-stream of objects of this shape (usage only in the last when include_usage), then data: [DONE].',
  type: 'object',
  properties: {
    id: { type: 'string' },
    object: { const: 'text_completion' },
    created: { type: 'integer' },
    model: { type: 'string' },
    choices: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          index: { type: 'integer' },
          text: { type: 'string' },
          logprobs: completionLogprobs,
          prompt_logprobs: promptLogprobs,
          finish_reason: finishReason,
          stop_reason: stopReason,
          token_ids: tokenIds,
          prompt_token_ids: tokenIds,
        },
      },
    },
    usage: usageSchema,
    prompt_token_ids: { anyOf: [tokenIds, { type: 'array', items: tokenIds }] },
  },
};

export const chatCompletionResponseSchema: JsonSchema = {
  title: 'ChatCompletionResponse',
  description: 'With stream: true, chat.completion.chunk objects carrying delta instead of message, then data: [DONE].',
  type: 'object',
  properties: {
    id: { type: 'string' },
    object: { const: 'chat.completion' },
    created: { type: 'integer' },
    model: { type: 'string' },
    choices: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          index: { type: 'integer' },
          message: {
            type: 'object',
            properties: {
              role: { const: 'assistant' },
              content: { type: ['string', 'null'] },
              reasoning_content: {
                type: ['string', 'null'],
                description: 'With serve --reasoning-parser: the text between <think> and </think> (content is the rest).',
              },
              refusal: { type: 'null' },
              tool_calls: {
                type: 'array',
                description: 'The calls the model made (tools given); streamed as delta.tool_calls pieces, each carrying its index.',
                items: {
                  type: 'object',
                  properties: {
                    id: { type: 'string' },
                    type: { const: 'function' },
                    function: { type: 'object', properties: { name: { type: 'string' }, arguments: { type: 'string', description: 'JSON text.' } } },
                  },
                },
              },
            },
          },
          logprobs: chatLogprobs,
          finish_reason: { enum: ['stop', 'length', 'abort', 'tool_calls', null] },
          stop_reason: stopReason,
          token_ids: tokenIds,
        },
      },
    },
    usage: usageSchema,
    prompt_token_ids: tokenIds,
    prompt_logprobs: promptLogprobs,
  },
};

export const modelCardSchema: JsonSchema = {
  title: 'ModelCard',
  type: 'object',
  properties: {
    id: { type: 'string' },
    object: { const: 'model' },
    created: { type: 'integer' },
    owned_by: { type: 'string' },
    root: { type: 'string' },
    parent: { type: 'null' },
    max_model_len: { type: 'integer' },
  },
};

export const modelListSchema: JsonSchema = {
  title: 'ModelList',
  type: 'object',
  properties: {
    object: { const: 'list' },
    data: { type: 'array', items: modelCardSchema },
  },
};

export const tokenizeResponseSchema: JsonSchema = {
  title: 'TokenizeResponse',
  type: 'object',
  properties: { count: { type: 'integer' }, max_model_len: { type: 'integer' }, tokens: tokenIds },
};

export const detokenizeResponseSchema: JsonSchema = {
  title: 'DetokenizeResponse',
  type: 'object',
  properties: { prompt: { type: 'string' } },
};

export const interactiveResponseSchema: JsonSchema = {
  title: 'InteractiveResponse',
  description: 'Non-stream: one object. Stream: one object per line (newline-delimited JSON, not SSE).',
  type: 'object',
  properties: {
    text: { type: 'string' },
    tokens: { type: 'integer', description: 'Tokens generated in this turn.' },
    input_tokens: { type: 'integer', description: "Tokens this turn's prompt added." },
    history_tokens: { type: 'integer', description: 'Tokens the session held before this turn.' },
    finish_reason: { enum: ['stop', 'length', 'abort', null], description: "'abort': the turn was cancelled." },
  },
};

export const encodeResponseSchema: JsonSchema = {
  title: 'EncodeResponse',
  type: 'object',
  properties: {
    input_ids: { anyOf: [tokenIds, { type: 'array', items: tokenIds }] },
    length: { anyOf: [{ type: 'integer' }, { type: 'array', items: { type: 'integer' } }] },
  },
};

export { errorResponseSchema };
