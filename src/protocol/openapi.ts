// The OpenAPI 3.1 document served at /openapi.json, assembled from the same schema objects that ajv
// validates requests with (OpenAPI 3.1 schemas ARE JSON Schema 2020-12, so no translation is needed).
import type { JsonSchema } from './schema.js';
import {
  chatCompletionRequestSchema,
  completionRequestSchema,
  detokenizeRequestSchema,
  encodeRequestSchema,
  interactiveRequestSchema,
  tokenizeRequestSchema,
} from './requests.js';
import {
  chatCompletionResponseSchema,
  completionResponseSchema,
  detokenizeResponseSchema,
  encodeResponseSchema,
  errorResponseSchema,
  interactiveResponseSchema,
  modelCardSchema,
  modelListSchema,
  tokenizeResponseSchema,
} from './responses.js';

export interface OpenApiInfo {
  modelName: string;
  version: string;
  authRequired: boolean;
}

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: JsonSchema) => ({ content: { 'application/json': { schema } } });
const errors = {
  '400': { description: 'Invalid request', ...json(ref('ErrorResponse')) },
  '401': { description: 'Missing or wrong API key', ...json(ref('ErrorResponse')) },
  '404': { description: 'Unknown model', ...json(ref('ErrorResponse')) },
  '413': { description: 'Body too large', ...json(ref('ErrorResponse')) },
  '415': { description: 'Content-Type is not JSON (code unsupported_media_type)', ...json(ref('ErrorResponse')) },
  '429': { description: 'Engine overloaded; retry later', ...json(ref('ErrorResponse')) },
  '503': { description: 'Engine not available', ...json(ref('ErrorResponse')) },
};

function post(summary: string, request: string, response: string, streamNote: string) {
  return {
    post: {
      summary,
      description: streamNote,
      requestBody: { required: true, ...json(ref(request)) },
      responses: {
        '200': {
          description: 'OK',
          content: { 'application/json': { schema: ref(response) }, 'text/event-stream': { schema: { type: 'string' } } },
        },
        ...errors,
      },
    },
  };
}

/** The X-Session-Id request header of /v1/chat/interactive (what a load balancer can route sessions by). */
function withSessionHeader<T extends { post: Record<string, unknown> }>(op: T): T {
  op.post.parameters = [
    {
      name: 'X-Session-Id',
      in: 'header',
      required: false,
      description: 'The session id when the body has no session_id (both given and different: 400 session_id_mismatch).',
      schema: { type: 'integer', minimum: -1, maximum: Number.MAX_SAFE_INTEGER },
    },
  ];
  return op;
}

/** GET /status (types.ts ServerStatus): what the chat page's status strip shows. */
const serverStatusSchema: JsonSchema = {
  type: 'object',
  required: [
    'model',
    'max_model_len',
    'ready',
    'reason',
    'devices',
    'num_requests_running',
    'num_requests_waiting',
    'kv_cache_usage',
    'num_kv_blocks',
    'num_free_kv_blocks',
    'weights',
    'kv_cache_dtype',
    'auth_required',
    'version',
  ],
  properties: {
    model: { type: 'string' },
    max_model_len: { type: 'integer' },
    ready: { type: 'boolean' },
    reason: { type: ['string', 'null'], description: 'why not ready ("loading", a device loss); null when ready' },
    devices: { type: 'array', items: { type: 'string' }, description: 'the GPU adapters, one per tensor-parallel shard' },
    num_requests_running: { type: 'integer' },
    num_requests_waiting: { type: 'integer' },
    kv_cache_usage: { type: 'number', minimum: 0, maximum: 1, description: 'fraction of KV cache blocks in use' },
    num_kv_blocks: { type: 'integer' },
    num_free_kv_blocks: { type: 'integer' },
    weights: { type: ['string', 'null'], description: 'weight format as loaded: "f16", "awq-int4 g128", ...; null while loading' },
    kv_cache_dtype: {
      type: ['string', 'null'],
      enum: ['f32', 'f16', 'int8', 'int4', null],
      description: 'KV cache element type (int8 / int4: --quant-policy 8 / 4); null while loading',
    },
    auth_required: { type: 'boolean', description: 'whether /v1/* needs an API key' },
    version: { type: 'string' },
  },
};

export function buildOpenApiDocument(info: OpenApiInfo): Record<string, unknown> {
  const security = info.authRequired ? [{ bearerAuth: [] }] : [];
  const secured = <T extends Record<string, Record<string, unknown>>>(op: T): T => {
    for (const method of Object.values(op)) method.security = security;
    return op;
  };
  return {
    openapi: '3.1.0',
    info: {
      title: 'webgpu-llm-server',
      version: info.version,
      description: `OpenAI- and LMDeploy-compatible API serving ${info.modelName}. Chat with it in the browser at [/chat](/chat).`,
    },
    servers: [{ url: '/' }],
    paths: {
      '/v1/models': secured({
        get: { summary: 'List the served model', responses: { '200': { description: 'OK', ...json(ref('ModelList')) }, '401': errors['401'] } },
      }),
      '/v1/models/{model}': secured({
        get: {
          summary: 'Retrieve the served model (404 for any other id)',
          parameters: [{ name: 'model', in: 'path', required: true, schema: { type: 'string' } }],
          responses: { '200': { description: 'OK', ...json(ref('ModelCard')) }, '401': errors['401'], '404': errors['404'] },
        },
      }),
      '/v1/completions': secured(
        post('Text completion (OpenAI)', 'CompletionRequest', 'CompletionResponse', 'stream: true answers server-sent events ending in data: [DONE].'),
      ),
      '/v1/chat/completions': secured(
        post('Chat completion (OpenAI)', 'ChatCompletionRequest', 'ChatCompletionResponse', 'stream: true answers server-sent events ending in data: [DONE].'),
      ),
      '/v1/chat/interactive': secured(
        withSessionHeader(
          post('Interactive session turn (LMDeploy)', 'InteractiveRequest', 'InteractiveResponse', 'stream: true answers newline-delimited JSON objects.'),
        ),
      ),
      '/v1/encode': secured(post('Tokenize text', 'EncodeRequest', 'EncodeResponse', '')),
      '/tokenize': post('Tokenize a prompt or chat messages (vLLM)', 'TokenizeRequest', 'TokenizeResponse', ''),
      '/detokenize': post('Token ids to text (vLLM)', 'DetokenizeRequest', 'DetokenizeResponse', ''),
      '/health': { get: { summary: 'Readiness', responses: { '200': { description: 'Ready' }, '503': errors['503'] } } },
      '/metrics': {
        get: {
          summary: 'Prometheus metrics (vLLM names)',
          responses: { '200': { description: 'OK', content: { 'text/plain': { schema: { type: 'string' } } } } },
        },
      },
      '/status': {
        get: {
          summary: 'Model, devices, running/waiting requests and KV cache usage as JSON (what /chat polls)',
          responses: { '200': { description: 'OK', ...json(ref('ServerStatus')) } },
        },
      },
      '/chat': {
        get: {
          summary: 'The built-in web chat page (HTML; 503 when dist/web/ was not built)',
          responses: { '200': { description: 'OK', content: { 'text/html': { schema: { type: 'string' } } } } },
        },
      },
    },
    components: {
      schemas: {
        CompletionRequest: completionRequestSchema,
        ChatCompletionRequest: chatCompletionRequestSchema,
        InteractiveRequest: interactiveRequestSchema,
        EncodeRequest: encodeRequestSchema,
        TokenizeRequest: tokenizeRequestSchema,
        DetokenizeRequest: detokenizeRequestSchema,
        TokenizeResponse: tokenizeResponseSchema,
        DetokenizeResponse: detokenizeResponseSchema,
        ModelCard: modelCardSchema,
        CompletionResponse: completionResponseSchema,
        ChatCompletionResponse: chatCompletionResponseSchema,
        InteractiveResponse: interactiveResponseSchema,
        EncodeResponse: encodeResponseSchema,
        ModelList: modelListSchema,
        ErrorResponse: errorResponseSchema,
        ServerStatus: serverStatusSchema,
      },
      securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer' } },
    },
  };
}
