// Prometheus metrics with vLLM's names (labelled model_name), so vLLM dashboards work unchanged, built
// with prom-client on a Registry of this app's own (never the global one: tests run several servers in
// one process). Engine-wide numbers come from engine.stats() at scrape time; per-request histograms are
// observed when a request ends: its latency as the HTTP layer saw it (TTFT, end to end, inter-token
// gaps) and where its time went inside the engine (queue, prefill, decode: GenerateDelta.timing).
//
// Counters are named with their `_total` suffix, as prom-client wants: the Prometheus text format then
// declares `# TYPE vllm:prompt_tokens_total counter` over the sample of the same name (what Python's
// prometheus_client, and so vLLM, print), and the OpenMetrics format the family `vllm:prompt_tokens`.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { EngineStats, RequestTiming } from '../engine/types.js';
import type { FinishReason } from '../common/types.js';

// vLLM's bucket boundaries (vllm/v1/metrics/loggers.py).
const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0];
const TPOT_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0];
const LATENCY_BUCKETS = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0];
/**
 * vLLM's build_1_2_5_buckets(max_model_len) for token counts. The session length is not known when the
 * app starts (the model loads after the server listens), so the series runs to 1M tokens.
 */
const TOKEN_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000];

export const METRICS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;

export interface FinishedRequest {
  /** Seconds from arrival to the first output token; null when none came. */
  ttftSeconds: number | null;
  e2eSeconds: number;
  numPromptTokens: number;
  numOutputTokens: number;
  finishReason: FinishReason;
  /** The engine's account of the request (from its last delta); absent when the stream failed. */
  timing?: RequestTiming;
}

export class ServerMetrics {
  readonly registry = new Registry();
  /** The engine's numbers of the scrape under way; collect() callbacks read them. */
  private stats: EngineStats | null = null;
  private readonly ttft: Histogram;
  private readonly tpot: Histogram;
  private readonly requestTpot: Histogram;
  private readonly itl: Histogram;
  private readonly e2e: Histogram;
  private readonly queue: Histogram;
  private readonly prefill: Histogram;
  private readonly decode: Histogram;
  private readonly inference: Histogram;
  private readonly promptTokens: Histogram;
  private readonly generationTokens: Histogram;
  private readonly success: Counter<'finished_reason'>;

  constructor(modelName: string) {
    const registers = [this.registry];
    this.registry.setDefaultLabels({ model_name: modelName });
    const read = (pick: (s: EngineStats) => number) => () => (this.stats ? pick(this.stats) : 0);
    const gauge = (name: string, help: string, pick: (s: EngineStats) => number) => {
      const value = read(pick);
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(value());
        },
      });
    };
    // A counter mirrors an engine total: reset and set it to the total at each scrape (prom-client
    // counters only go up through inc(), and the engine's totals only go up).
    const counter = (name: string, help: string, pick: (s: EngineStats) => number) => {
      const value = read(pick);
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          this.inc(value());
        },
      });
    };
    const histogram = (name: string, help: string, buckets: number[]) => new Histogram({ name, help, buckets, registers });

    gauge('vllm:num_requests_running', 'Number of requests in model execution batches.', (s) => s.numRunning);
    gauge('vllm:num_requests_waiting', 'Number of requests waiting to be processed.', (s) => s.numWaiting);
    gauge('vllm:gpu_cache_usage_perc', 'KV-cache usage. 1 means 100 percent usage. (Old name of vllm:kv_cache_usage_perc.)', (s) => s.kvCacheUsage);
    gauge('vllm:kv_cache_usage_perc', 'KV-cache usage. 1 means 100 percent usage.', (s) => s.kvCacheUsage);
    counter('vllm:prefix_cache_queries_total', 'Prefix cache queries, in terms of number of queried tokens.', (s) => s.prefixCacheQueries);
    counter('vllm:prefix_cache_hits_total', 'Prefix cache hits, in terms of number of cached tokens.', (s) => s.prefixCacheHits);
    counter('vllm:prompt_tokens_total', 'Number of prefill tokens processed.', (s) => s.promptTokensTotal);
    counter('vllm:generation_tokens_total', 'Number of generation tokens processed.', (s) => s.generationTokensTotal);
    counter('vllm:num_preemptions_total', 'Cumulative number of preemptions from the engine.', (s) => s.numPreemptionsTotal);
    this.success = new Counter({
      name: 'vllm:request_success_total',
      help: 'Count of successfully processed requests.',
      labelNames: ['finished_reason'],
      registers,
    });
    for (const reason of ['stop', 'length', 'abort'] as const) this.success.inc({ finished_reason: reason }, 0);

    this.ttft = histogram('vllm:time_to_first_token_seconds', 'Histogram of time to first token in seconds.', TTFT_BUCKETS);
    this.itl = histogram('vllm:inter_token_latency_seconds', 'Histogram of inter-token latency in seconds.', TPOT_BUCKETS);
    this.tpot = histogram(
      'vllm:time_per_output_token_seconds',
      'Histogram of time per output token in seconds: each request mean after its first token.',
      TPOT_BUCKETS,
    );
    this.requestTpot = histogram('vllm:request_time_per_output_token_seconds', 'Histogram of time_per_output_token_seconds per request.', TPOT_BUCKETS);
    this.e2e = histogram('vllm:e2e_request_latency_seconds', 'Histogram of end to end request latency in seconds.', LATENCY_BUCKETS);
    this.queue = histogram('vllm:request_queue_time_seconds', 'Histogram of time spent in WAITING phase for request.', LATENCY_BUCKETS);
    this.prefill = histogram('vllm:request_prefill_time_seconds', 'Histogram of time spent in PREFILL phase for request.', LATENCY_BUCKETS);
    this.decode = histogram('vllm:request_decode_time_seconds', 'Histogram of time spent in DECODE phase for request.', LATENCY_BUCKETS);
    this.inference = histogram('vllm:request_inference_time_seconds', 'Histogram of time spent in RUNNING phase for request.', LATENCY_BUCKETS);
    this.promptTokens = histogram('vllm:request_prompt_tokens', 'Number of prefill tokens processed.', TOKEN_BUCKETS);
    this.generationTokens = histogram('vllm:request_generation_tokens', 'Number of generation tokens processed.', TOKEN_BUCKETS);

    // LMDeploy-style aliases for its dashboards.
    gauge('lmdeploy:num_requests_running', 'Number of requests running.', (s) => s.numRunning);
    gauge('lmdeploy:num_requests_waiting', 'Number of requests waiting.', (s) => s.numWaiting);
    gauge('lmdeploy:gpu_cache_usage_perc', 'KV-cache usage. 1 means 100 percent usage.', (s) => s.kvCacheUsage);
  }

  /** Called once per engine request (each choice of n counts), however it ended. */
  observe(request: FinishedRequest): void {
    if (request.ttftSeconds !== null) {
      this.ttft.observe(request.ttftSeconds);
      if (request.numOutputTokens > 1) {
        const perToken = (request.e2eSeconds - request.ttftSeconds) / (request.numOutputTokens - 1);
        this.tpot.observe(perToken);
        this.requestTpot.observe(perToken);
      }
    }
    this.e2e.observe(request.e2eSeconds);
    this.promptTokens.observe(request.numPromptTokens);
    this.generationTokens.observe(request.numOutputTokens);
    const t = request.timing;
    if (t) {
      if (t.queueSeconds !== null) this.queue.observe(t.queueSeconds);
      if (t.prefillSeconds !== null) this.prefill.observe(t.prefillSeconds);
      if (t.decodeSeconds !== null) this.decode.observe(t.decodeSeconds);
      if (t.prefillSeconds !== null) this.inference.observe(t.prefillSeconds + (t.decodeSeconds ?? 0));
    }
    this.success.inc({ finished_reason: request.finishReason });
  }

  /** The gap between two consecutive outputs of one request, per token when one delta brought several. */
  observeInterToken(seconds: number, numTokens: number): void {
    for (let i = 0; i < numTokens; i++) this.itl.observe(seconds / numTokens);
  }

  /** The Prometheus text exposition (format 0.0.4) of every metric, with `stats` as the engine's numbers. */
  async render(stats: EngineStats): Promise<string> {
    // Every collect() runs synchronously at the start of metrics(), so concurrent scrapes cannot mix stats.
    this.stats = stats;
    try {
      return await this.registry.metrics();
    } finally {
      this.stats = null;
    }
  }
}
