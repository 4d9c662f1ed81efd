// Errors the engine raises towards the server; the server maps them to HTTP statuses.

/** The waiting queue is full: the caller should retry later (HTTP 429). */
export class EngineOverloadedError extends Error {
  constructor(
    readonly numWaiting: number,
    readonly maxWaiting: number,
  ) {
    super(`the server is overloaded: ${numWaiting} requests are already waiting (limit ${maxWaiting}); retry later`);
    this.name = 'EngineOverloadedError';
  }
}

/** The engine is not serving (loading, shutting down, or its GPU was lost) (HTTP 503). */
export class EngineUnavailableError extends Error {
  constructor(reason: string) {
    super(`the engine is not available: ${reason}`);
    this.name = 'EngineUnavailableError';
  }
}

/** The request cannot be served as given, e.g. the prompt fills the session length (HTTP 400). */
export class InvalidRequestError extends Error {
  constructor(
    message: string,
    readonly param?: string,
  ) {
    super(message);
    this.name = 'InvalidRequestError';
  }
}
