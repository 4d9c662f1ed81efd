// JSON Schema (2020-12) building blocks. Request schemas are validated by ajv AND published in
// /openapi.json, so every field's range and description is written exactly once, here.

/** A JSON Schema object; kept structural so both ajv and the OpenAPI document can take it as is. */
export type JsonSchema = { readonly [keyword: string]: unknown };

export const MAX_SAFE_SEED = Number.MAX_SAFE_INTEGER;

export function nullable(schema: JsonSchema): JsonSchema {
  return { anyOf: [schema, { type: 'null' }] };
}

export const stringOrStringList: JsonSchema = {
  anyOf: [
    { type: 'string', minLength: 1, maxLength: 1024 },
    { type: 'array', items: { type: 'string', minLength: 1, maxLength: 1024 }, maxItems: 16 },
  ],
};

/** Sampling fields shared by /v1/completions and /v1/chat/completions (OpenAI + vLLM/LMDeploy extras). */
export const samplingProperties: Record<string, JsonSchema> = {
  model: { type: 'string', description: 'Must equal the served model name (GET /v1/models).' },
  temperature: nullable({ type: 'number', minimum: 0, maximum: 2, description: '0 = greedy.' }),
  top_p: nullable({ type: 'number', exclusiveMinimum: 0, maximum: 1 }),
  top_k: nullable({ type: 'integer', minimum: -1, maximum: 1_000_000, description: '0 or -1 = off.' }),
  min_p: nullable({ type: 'number', minimum: 0, maximum: 1 }),
  n: nullable({ type: 'integer', minimum: 1, maximum: 16, description: 'Choices per prompt.' }),
  stop: nullable({ ...stringOrStringList, description: 'Up to 16 stop strings; the stop text is not returned.' }),
  stop_token_ids: nullable({ type: 'array', items: { type: 'integer', minimum: 0 }, maxItems: 64 }),
  seed: nullable({
    type: 'integer',
    minimum: -MAX_SAFE_SEED,
    maximum: MAX_SAFE_SEED,
    description: 'With n > 1, choice i is sampled with seed + i.',
  }),
  presence_penalty: nullable({ type: 'number', minimum: -2, maximum: 2 }),
  frequency_penalty: nullable({ type: 'number', minimum: -2, maximum: 2 }),
  repetition_penalty: nullable({ type: 'number', exclusiveMinimum: 0, maximum: 10 }),
  ignore_eos: nullable({ type: 'boolean' }),
  skip_special_tokens: nullable({ type: 'boolean', description: 'Default true: special tokens (eos, chat markers) are left out of the text.' }),
  spaces_between_special_tokens: nullable({
    type: 'boolean',
    description: "Default true. With skip_special_tokens false, added tokens are joined to the text around them with spaces (vLLM's slow-tokenizer rule).",
  }),
  include_stop_str_in_output: nullable({ type: 'boolean', description: 'Default false. true: the matched stop string stays at the end of the text.' }),
  stream: nullable({ type: 'boolean' }),
  stream_options: nullable({
    type: 'object',
    properties: { include_usage: nullable({ type: 'boolean' }) },
  }),
  user: nullable({ type: 'string', maxLength: 256 }),
  return_token_ids: nullable({ type: 'boolean', description: 'Add prompt_token_ids and per-choice token_ids.' }),
  ...constraintProperties(),
};

/** Structured output and logits processing fields of both generating endpoints (OpenAI, vLLM, LMDeploy). */
function constraintProperties(): Record<string, JsonSchema> {
  return {
    logit_bias: nullable({
      type: 'object',
      description: 'Token id (as a string) -> bias in [-100, 100], added to that logit before penalties, temperature, sampling and logprobs.',
      propertyNames: { pattern: '^(0|[1-9][0-9]{0,9})$' },
      additionalProperties: { type: 'number', minimum: -100, maximum: 100 },
      maxProperties: 1024,
    }),
    min_tokens: nullable({
      type: 'integer',
      minimum: 0,
      maximum: 2 ** 31 - 1,
      description: 'vLLM: EOS and stop_token_ids cannot be sampled before this many tokens.',
    }),
    min_new_tokens: nullable({ type: 'integer', minimum: 0, maximum: 2 ** 31 - 1, description: "LMDeploy's name for min_tokens." }),
    guided_json: nullable({
      description: 'vLLM: the output is JSON valid against this JSON schema (an object, or its JSON text). Unenforceable keywords are a 400.',
      anyOf: [{ type: 'object' }, { type: 'string', maxLength: 1024 * 1024 }],
    }),
    guided_regex: nullable({ type: 'string', minLength: 1, maxLength: 64 * 1024, description: 'vLLM: the output matches this regular expression.' }),
    guided_choice: nullable({
      type: 'array',
      items: { type: 'string', minLength: 1, maxLength: 64 * 1024 },
      minItems: 1,
      maxItems: 1024,
      description: 'vLLM: the output is exactly one of these strings.',
    }),
    guided_grammar: nullable({
      type: 'string',
      minLength: 1,
      maxLength: 1024 * 1024,
      description: "vLLM: the output matches this EBNF grammar (xgrammar's dialect; the start rule is `root`).",
    }),
  };
}

/** OpenAI's response_format (chat), plus LMDeploy's regex_schema. */
export const responseFormatProperty: JsonSchema = nullable({
  description:
    'text (default), json_object (any JSON object), json_schema ({name, schema, strict}: JSON valid against the schema; keywords the grammar cannot enforce are a 400) or regex_schema (LMDeploy: the output matches the regex).',
  type: 'object',
  required: ['type'],
  properties: {
    type: { type: 'string', description: 'text, json_object, json_schema or regex_schema.' },
    json_schema: {
      type: 'object',
      required: ['name'],
      properties: {
        name: { type: 'string', maxLength: 64 },
        description: { type: 'string' },
        schema: { type: 'object' },
        strict: nullable({ type: 'boolean' }),
      },
    },
    regex_schema: { type: 'string', minLength: 1, maxLength: 64 * 1024 },
  },
});

/** The OpenAI error body. */
export const errorResponseSchema: JsonSchema = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['message', 'type', 'param', 'code'],
      properties: {
        message: { type: 'string' },
        type: { type: 'string' },
        param: { type: ['string', 'null'] },
        code: { type: ['string', 'integer', 'null'] },
      },
    },
  },
};

export const usageSchema: JsonSchema = {
  type: 'object',
  properties: {
    prompt_tokens: { type: 'integer' },
    completion_tokens: { type: 'integer' },
    total_tokens: { type: 'integer' },
    prompt_tokens_details: { type: 'object', properties: { cached_tokens: { type: 'integer' } } },
  },
};
