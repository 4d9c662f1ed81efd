// The protocol layer: wire types, the JSON schemas, their validators and the OpenAPI document.
export * from './types.js';
export * from './schema.js';
export * from './requests.js';
export * from './responses.js';
export * from './validate.js';
export * from './openapi.js';
