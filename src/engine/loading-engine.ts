// An EngineClient that exists before the model is loaded, so the HTTP server can listen at once:
// /health answers 503 "loading" (what Kubernetes readiness probes want) and every model route 503s,
// until ready() hands over the real engine. Loading failures keep /health at 503 with the reason.
import { EngineUnavailableError } from '../common/errors.js';
import type { EngineClient, EngineHealth, EngineStats, GenerateDelta, GenerateRequest, LoadedFormat } from './types.js';
import type { TextCodec } from '../common/types.js';
import type { SamplingParams } from '../sampling/params.js';

const EMPTY_STATS: EngineStats = {
  numRunning: 0,
  numWaiting: 0,
  kvCacheUsage: 0,
  numKvBlocks: 0,
  numFreeKvBlocks: 0,
  prefixCacheQueries: 0,
  prefixCacheHits: 0,
  promptTokensTotal: 0,
  generationTokensTotal: 0,
  numPreemptionsTotal: 0,
  requestsFinishedTotal: 0,
};

export class LoadingEngine implements EngineClient {
  private engine: EngineClient | null = null;
  private failure: string | null = null;

  constructor(readonly modelName: string) {}

  /** The model is loaded: from now on every call goes to `engine`. */
  ready(engine: EngineClient): void {
    this.engine = engine;
  }

  /** Loading failed: stay unavailable, saying why. */
  failed(reason: string): void {
    this.failure = reason;
  }

  private get current(): EngineClient {
    if (this.engine) return this.engine;
    throw new EngineUnavailableError(this.failure ?? 'the model is still loading; retry when GET /health answers 200');
  }

  get sessionLen(): number {
    return this.engine?.sessionLen ?? 0;
  }

  get codec(): TextCodec {
    return this.current.codec;
  }

  get format(): LoadedFormat | undefined {
    return this.engine?.format;
  }

  get generationDefaults(): Readonly<Partial<SamplingParams>> {
    return this.engine?.generationDefaults ?? {};
  }

  generate(request: GenerateRequest, signal?: AbortSignal): AsyncIterable<GenerateDelta> {
    return this.current.generate(request, signal);
  }

  abort(requestId: string): void {
    this.engine?.abort(requestId);
  }

  stats(): EngineStats {
    return this.engine?.stats() ?? EMPTY_STATS;
  }

  health(): EngineHealth {
    if (this.engine) return this.engine.health();
    return { ready: false, reason: this.failure ?? 'loading' };
  }

  async shutdown(): Promise<void> {
    await this.engine?.shutdown();
  }
}
