// ajv validators compiled from the request schemas, with ajv's errors rewritten into one sentence
// that names the field the way a client wrote it (messages[0].content), e.g.
// "temperature must be <= 2 (got 5)".
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import type { JsonSchema } from './schema.js';
import {
  chatCompletionRequestSchema,
  completionRequestSchema,
  detokenizeRequestSchema,
  encodeRequestSchema,
  interactiveRequestSchema,
  tokenizeRequestSchema,
} from './requests.js';
import type { ChatCompletionRequest, CompletionRequest, DetokenizeRequest, EncodeRequest, InteractiveRequest, TokenizeRequest } from './types.js';

export interface ValidationFailure {
  message: string;
  /** The offending field as a client spells it, e.g. "messages[0].content"; null for the body itself. */
  param: string | null;
}

export type Validator<T> = (body: unknown) => { ok: true; value: T } | { ok: false; error: ValidationFailure };

const ajv = new Ajv2020({ strict: true, strictRequired: false, allowUnionTypes: true, verbose: true, allErrors: false });

function compile<T>(schema: JsonSchema): Validator<T> {
  const check: ValidateFunction = ajv.compile(schema);
  return (body) => {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      return { ok: false, error: { message: 'the request body must be a JSON object', param: null } };
    }
    if (check(body)) return { ok: true, value: body as T };
    return { ok: false, error: explain(check.errors ?? []) };
  };
}

export const validateCompletionRequest = compile<CompletionRequest>(completionRequestSchema);
export const validateChatCompletionRequest = compile<ChatCompletionRequest>(chatCompletionRequestSchema);
export const validateInteractiveRequest = compile<InteractiveRequest>(interactiveRequestSchema);
export const validateEncodeRequest = compile<EncodeRequest>(encodeRequestSchema);
export const validateTokenizeRequest = compile<TokenizeRequest>(tokenizeRequestSchema);
export const validateDetokenizeRequest = compile<DetokenizeRequest>(detokenizeRequestSchema);

/** "/messages/0/content" -> "messages[0].content". */
export function fieldName(instancePath: string): string {
  return instancePath
    .split('/')
    .slice(1)
    .map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce((name, part) => (/^\d+$/.test(part) ? `${name}[${part}]` : name ? `${name}.${part}` : part), '');
}

const BRANCH_KEYWORDS = new Set(['type', 'anyOf', 'const', 'enum']);

/**
 * Picks the one error worth reporting.
 * 1. Errors at the deepest path: the client's mistake is there, not in its parents.
 * 2. There, a constraint (minimum, maxLength, required...) beats a type mismatch: the value had the
 *    right type for some branch but broke its rule.
 * 3. Otherwise describe the outermost anyOf ("must be a string, an array or null").
 */
function explain(errors: ErrorObject[]): ValidationFailure {
  if (errors.length === 0) return { message: 'the request body is invalid', param: null };
  const depth = (e: ErrorObject) => (e.instancePath ? e.instancePath.split('/').length : 0);
  const deepest = Math.max(...errors.map(depth));
  const candidates = errors.filter((e) => depth(e) === deepest);
  const chosen =
    candidates.find((e) => !BRANCH_KEYWORDS.has(e.keyword)) ??
    candidates.filter((e) => e.keyword === 'anyOf').sort((a, b) => a.schemaPath.length - b.schemaPath.length)[0] ??
    candidates[0]!;
  return describe(chosen);
}

function describe(error: ErrorObject): ValidationFailure {
  const field = fieldName(error.instancePath);
  const subject = field || 'the request body';
  const got = ` (got ${preview(error.data)})`;
  const params = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'required': {
      const missing = String(params.missingProperty);
      const name = field ? `${field}.${missing}` : missing;
      return { message: `missing required field '${name}'`, param: name };
    }
    case 'type':
      return { message: `${subject} must be ${article(String(params.type))}${got}`, param: field || null };
    case 'anyOf':
      return { message: `${subject} must be ${branches(error.parentSchema as JsonSchema)}${got}`, param: field || null };
    case 'const':
      return { message: `${subject} must be ${JSON.stringify(params.allowedValue)}${got}`, param: field || null };
    case 'enum':
      return {
        message: `${subject} must be one of ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}${got}`,
        param: field || null,
      };
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return { message: `${subject} ${error.message ?? 'is out of range'}${got}`, param: field || null };
    case 'minItems':
    case 'maxItems':
    case 'minLength':
    case 'maxLength':
      return { message: `${subject} ${error.message ?? 'has the wrong length'}`, param: field || null };
    default:
      return { message: `${subject} ${error.message ?? 'is invalid'}`, param: field || null };
  }
}

function article(type: string): string {
  const names = type.split(',').map((t) => (t === 'null' ? 'null' : /^[aeiou]/.test(t) ? `an ${t}` : `a ${t}`));
  return names.length > 1 ? `${names.slice(0, -1).join(', ')} or ${names.at(-1)}` : names[0]!;
}

/** A readable list of what an anyOf accepts: "a string, an array of integers or null". */
function branches(schema: JsonSchema): string {
  const unique = [...new Set(branchNames(schema))];
  return unique.length > 1 ? `${unique.slice(0, -1).join(', ')} or ${unique.at(-1)}` : (unique[0] ?? 'valid');
}

function branchNames(schema: JsonSchema): string[] {
  return ((schema.anyOf as JsonSchema[] | undefined) ?? []).flatMap((branch) => {
    if (branch.anyOf) return branchNames(branch);
    const type = branch.type as string | string[] | undefined;
    if (type === 'array') {
      const itemType = (branch.items as JsonSchema | undefined)?.type;
      return [typeof itemType === 'string' ? `an array of ${itemType}s` : 'an array'];
    }
    if (Array.isArray(type)) return type.map((t) => article(t));
    if (typeof type === 'string') return [article(type)];
    if ('const' in branch) return [JSON.stringify(branch.const)];
    return ['a valid value'];
  });
}

function preview(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return value.length > 40 ? `a string of ${value.length} characters` : JSON.stringify(value);
  return String(value);
}
