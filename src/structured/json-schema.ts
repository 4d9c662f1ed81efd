// Which JSON schemas guided decoding can enforce. xgrammar's JSON-schema converter turns a schema into
// a grammar, but it silently drops some keywords (format, multipleOf, uniqueItems, minLength/maxLength
// next to a pattern, ...), gets number ranges wrong, and aborts on others: the output would not be
// guaranteed to validate. So a schema is first validated as a schema (ajv), then every keyword of
// every subschema must be one the grammar enforces (or a pure annotation); anything else is a 400
// that names the keyword and where it is.
import { Ajv2020 } from 'ajv/dist/2020.js';
import { InvalidRequestError } from '../common/errors.js';

/** Annotations: they change nothing about which documents validate. */
const ANNOTATIONS = new Set(['title', 'description', 'default', 'examples', '$schema', '$id', '$comment', 'deprecated', 'readOnly', 'writeOnly']);

/** Keywords the grammar enforces (checked in the worker's compile too). */
const ENFORCED = new Set([
  'type',
  'properties',
  'required',
  'additionalProperties',
  'items',
  'prefixItems',
  'enum',
  'const',
  'anyOf',
  '$ref',
  '$defs',
  'definitions',
  'pattern',
  'minLength',
  'maxLength',
  'minItems',
  'maxItems',
  'minimum',
  'maximum',
  'exclusiveMinimum',
  'exclusiveMaximum',
]);

const RANGE = ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'];
const ajv = new Ajv2020({ strict: false, validateFormats: false, allErrors: false });

/**
 * Throws InvalidRequestError (param `param`) when `schema` is not a valid JSON schema or uses a
 * feature guided decoding cannot enforce.
 */
export function checkJsonSchema(schema: unknown, param = 'response_format'): void {
  if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) {
    throw new InvalidRequestError('the JSON schema must be an object', param);
  }
  try {
    ajv.compile(schema as object);
  } catch (err) {
    throw new InvalidRequestError(`the JSON schema is invalid: ${(err as Error).message}`, param);
  } finally {
    ajv.removeSchema();
  }
  walk(schema, '#', param);
}

function walk(node: unknown, path: string, param: string): void {
  if (typeof node === 'boolean') return;
  if (typeof node !== 'object' || node === null || Array.isArray(node)) return;
  const s = node as Record<string, unknown>;
  const refuse = (what: string) => {
    throw new InvalidRequestError(`the JSON schema uses ${what} at ${path}, which guided decoding cannot enforce; remove it`, param);
  };
  for (const key of Object.keys(s)) {
    if (ANNOTATIONS.has(key)) continue;
    if (!ENFORCED.has(key)) refuse(`"${key}"`);
  }
  if (typeof s.$ref === 'string' && !s.$ref.startsWith('#')) refuse(`a remote "$ref" (${s.$ref})`);
  if ('pattern' in s && ('minLength' in s || 'maxLength' in s)) refuse('"minLength"/"maxLength" together with "pattern"');
  const types = Array.isArray(s.type) ? s.type : [s.type];
  if (RANGE.some((k) => k in s) && !(types.length === 1 && types[0] === 'integer')) refuse('a numeric range ("minimum"/"maximum") on a non-integer type');
  const sub = (v: unknown, p: string) => walk(v, p, param);
  for (const key of ['properties', '$defs', 'definitions'] as const) {
    const m = s[key];
    if (m && typeof m === 'object') for (const [k, v] of Object.entries(m)) sub(v, `${path}/${key}/${k}`);
  }
  if (s.additionalProperties !== undefined) sub(s.additionalProperties, `${path}/additionalProperties`);
  if (Array.isArray(s.items)) s.items.forEach((v, i) => sub(v, `${path}/items/${i}`));
  else if (s.items !== undefined) sub(s.items, `${path}/items`);
  if (Array.isArray(s.prefixItems)) s.prefixItems.forEach((v, i) => sub(v, `${path}/prefixItems/${i}`));
  if (Array.isArray(s.anyOf)) s.anyOf.forEach((v, i) => sub(v, `${path}/anyOf/${i}`));
}
