// Prometheus text exposition with vLLM's metric names (labelled model_name), so vLLM dashboards
// work unchanged. Engine-wide numbers come from engine.stats() at scrape time; per-request latency
// histograms are observed here, in the HTTP layer, where a request starts and ends.
import type { EngineStats } from '../engine/types.js';
import type { FinishReason } from '../common/types.js';

// vLLM's bucket boundaries (vllm/v1/metrics/loggers.py).
const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0];
const TPOT_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0];
const LATENCY_BUCKETS = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0];

class Histogram {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly buckets: number[],
  ) {
    this.counts = buckets.map(() => 0);
  }

  observe(value: number): void {
    this.sum += value;
    this.count++;
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]!) this.counts[i]!++;
  }

  render(labels: string): string[] {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    // Bounds as Python's prometheus_client prints them ("1.0", not "1"), so dashboards built on vLLM match.
    this.buckets.forEach((le, i) => lines.push(`${this.name}_bucket{${labels},le="${Number.isInteger(le) ? le.toFixed(1) : le}"} ${this.counts[i]}`));
    lines.push(`${this.name}_bucket{${labels},le="+Inf"} ${this.count}`);
    lines.push(`${this.name}_sum{${labels}} ${this.sum}`, `${this.name}_count{${labels}} ${this.count}`);
    return lines;
  }
}

export interface FinishedRequest {
  /** Seconds from arrival to the first output token; null when none came. */
  ttftSeconds: number | null;
  e2eSeconds: number;
  numOutputTokens: number;
  finishReason: FinishReason;
}

export class ServerMetrics {
  private readonly ttft = new Histogram('vllm:time_to_first_token_seconds', 'Histogram of time to first token in seconds.', TTFT_BUCKETS);
  private readonly tpot = new Histogram('vllm:time_per_output_token_seconds', 'Histogram of time per output token in seconds.', TPOT_BUCKETS);
  private readonly e2e = new Histogram('vllm:e2e_request_latency_seconds', 'Histogram of end to end request latency in seconds.', LATENCY_BUCKETS);
  private readonly finished = new Map<FinishReason, number>([
    ['stop', 0],
    ['length', 0],
    ['abort', 0],
  ]);
  private readonly labels: string;

  constructor(modelName: string) {
    this.labels = `model_name="${escapeLabel(modelName)}"`;
  }

  /** Called once per engine request (each choice of n counts), however it ended. */
  observe(request: FinishedRequest): void {
    if (request.ttftSeconds !== null) {
      this.ttft.observe(request.ttftSeconds);
      if (request.numOutputTokens > 1) {
        this.tpot.observe((request.e2eSeconds - request.ttftSeconds) / (request.numOutputTokens - 1));
      }
    }
    this.e2e.observe(request.e2eSeconds);
    this.finished.set(request.finishReason, (this.finished.get(request.finishReason) ?? 0) + 1);
  }

  render(stats: EngineStats): string {
    const l = this.labels;
    const gauge = (name: string, help: string, value: number) => [`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, `${name}{${l}} ${value}`];
    // prometheus_client convention (which vLLM uses): family "x" of type counter exposes sample "x_total".
    const counter = (name: string, help: string, value: number) => [`# HELP ${name} ${help}`, `# TYPE ${name} counter`, `${name}_total{${l}} ${value}`];
    const lines = [
      ...gauge('vllm:num_requests_running', 'Number of requests in model execution batches.', stats.numRunning),
      ...gauge('vllm:num_requests_waiting', 'Number of requests waiting to be processed.', stats.numWaiting),
      ...gauge('vllm:gpu_cache_usage_perc', 'KV-cache usage. 1 means 100 percent usage.', stats.kvCacheUsage),
      ...gauge('vllm:kv_cache_usage_perc', 'KV-cache usage. 1 means 100 percent usage.', stats.kvCacheUsage),
      ...counter('vllm:prefix_cache_queries', 'Prefix cache queries, in terms of number of queried tokens.', stats.prefixCacheQueries),
      ...counter('vllm:prefix_cache_hits', 'Prefix cache hits, in terms of number of cached tokens.', stats.prefixCacheHits),
      ...counter('vllm:prompt_tokens', 'Number of prefill tokens processed.', stats.promptTokensTotal),
      ...counter('vllm:generation_tokens', 'Number of generation tokens processed.', stats.generationTokensTotal),
      ...counter('vllm:num_preemptions', 'Cumulative number of preemptions from the engine.', stats.numPreemptionsTotal),
      '# HELP vllm:request_success Count of successfully processed requests.',
      '# TYPE vllm:request_success counter',
      ...[...this.finished].map(([reason, n]) => `vllm:request_success_total{${l},finished_reason="${reason}"} ${n}`),
      ...this.ttft.render(l),
      ...this.tpot.render(l),
      ...this.e2e.render(l),
      // LMDeploy-style aliases for its dashboards.
      ...gauge('lmdeploy:num_requests_running', 'Number of requests running.', stats.numRunning),
      ...gauge('lmdeploy:num_requests_waiting', 'Number of requests waiting.', stats.numWaiting),
      ...gauge('lmdeploy:gpu_cache_usage_perc', 'KV-cache usage. 1 means 100 percent usage.', stats.kvCacheUsage),
    ];
    return `${lines.join('\n')}\n`;
  }
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}
