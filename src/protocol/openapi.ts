// The OpenAPI 3.1 document served at /openapi.json, assembled from the same schema objects that ajv
// validates requests with (OpenAPI 3.1 schemas ARE JSON Schema 2020-12, so no translation is needed).
import type { JsonSchema } from './schema.js';
import { chatCompletionRequestSchema, completionRequestSchema, encodeRequestSchema, interactiveRequestSchema } from './requests.js';
import {
  chatCompletionResponseSchema,
  completionResponseSchema,
  encodeResponseSchema,
  errorResponseSchema,
  interactiveResponseSchema,
  modelListSchema,
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
      description: `OpenAI- and LMDeploy-compatible API serving ${info.modelName}.`,
    },
    servers: [{ url: '/' }],
    paths: {
      '/v1/models': secured({
        get: { summary: 'List the served model', responses: { '200': { description: 'OK', ...json(ref('ModelList')) }, '401': errors['401'] } },
      }),
      '/v1/completions': secured(
        post('Text completion (OpenAI)', 'CompletionRequest', 'CompletionResponse', 'stream: true answers server-sent events ending in data: [DONE].'),
      ),
      '/v1/chat/completions': secured(
        post('Chat completion (OpenAI)', 'ChatCompletionRequest', 'ChatCompletionResponse', 'stream: true answers server-sent events ending in data: [DONE].'),
      ),
      '/v1/chat/interactive': secured(
        post('Interactive session turn (LMDeploy)', 'InteractiveRequest', 'InteractiveResponse', 'stream: true answers newline-delimited JSON objects.'),
      ),
      '/v1/encode': secured(post('Tokenize text', 'EncodeRequest', 'EncodeResponse', '')),
      '/health': { get: { summary: 'Readiness', responses: { '200': { description: 'Ready' }, '503': errors['503'] } } },
      '/metrics': {
        get: {
          summary: 'Prometheus metrics (vLLM names)',
          responses: { '200': { description: 'OK', content: { 'text/plain': { schema: { type: 'string' } } } } },
        },
      },
    },
    components: {
      schemas: {
        CompletionRequest: completionRequestSchema,
        ChatCompletionRequest: chatCompletionRequestSchema,
        InteractiveRequest: interactiveRequestSchema,
        EncodeRequest: encodeRequestSchema,
        CompletionResponse: completionResponseSchema,
        ChatCompletionResponse: chatCompletionResponseSchema,
        InteractiveResponse: interactiveResponseSchema,
        EncodeResponse: encodeResponseSchema,
        ModelList: modelListSchema,
        ErrorResponse: errorResponseSchema,
      },
      securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer' } },
    },
  };
}
