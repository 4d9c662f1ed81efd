// The parent's side of a shard that runs in a worker process (worker.ts). Why processes: Dawn
// finds adapters by name, so identical GPUs cannot be told apart inside one process, but Mesa's
// device-select layer can pin a whole process to one of them (see src/gpu/adapters.ts).
// Encode calls are queued and sent as one message at submit(); read() and sample() are requests
// answered in order. A step's metadata crosses as changes only (step-delta.ts): the worker keeps
// each request's block table and sampling state and rebuilds the metadata and rows itself.
// A worker's death or GPU error fails every pending and later call with a message naming the
// shard, and is reported once to onFailure listeners (the engine's failAll).
import { fork, type ChildProcess } from 'node:child_process';
import { childEntry } from '../../common/child-entry.js';
import type { ShardPlacement } from './placement.js';
import type { LogitsProcessing, SampleResult, SamplingRow } from '../../sampling/params.js';
import type { ScoredToken } from '../../kernels/prompt-logprobs.js';
import type { ModelConfig } from '../../checkpoint/config.js';
import type { MemoryPlan } from '../memory.js';
import type { RunnerOptions } from '../options.js';
import { shardLayout, type ShardLayout } from '../sharding.js';
import type { ExchangeBufferName, ShardHandle, StepInput, StepShape } from '../shard.js';
import type { HostMessage, ShardOp, WorkerInit, WorkerMessage } from './messages.js';
import { StepDeltaEncoder } from './step-delta.js';

type Request = ShardOp & { id: number };
type RequestBody<T> = T extends { id: number } ? Omit<T, 'id'> : never;

interface Pending {
  resolve(value: unknown): void;
  reject(err: Error): void;
}

export class ShardWorkerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ShardWorkerError';
  }
}

export class RemoteShard implements ShardHandle {
  /** The memory plan this worker computed on open (shard 0's is the runner's). */
  plan: MemoryPlan | null = null;
  private ops: ShardOp[] = [];
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private failure: Error | null = null;
  private closing = false;
  private flushQueued = false;
  private readonly listeners = new Set<(err: Error) => void>();
  private readonly sentListeners = new Set<(msg: HostMessage) => void>();
  /** What this worker holds of each request; rank 0 samples, so only it gets prompts and outputs. */
  private readonly steps: StepDeltaEncoder;
  /** The last uploaded step's shape (encode ops leave it out) and sampling rows (the worker has them). */
  private stepShape: StepShape | null = null;
  private stepRows: readonly SamplingRow[] | null = null;

  constructor(
    private readonly child: ChildProcess,
    readonly placement: ShardPlacement,
    readonly layout: ShardLayout,
  ) {
    this.steps = new StepDeltaEncoder(layout.rank === 0);
    child.on('message', (msg: WorkerMessage) => this.onMessage(msg));
    child.on('exit', (code, signal) => {
      this.fail(new ShardWorkerError(`${placement.label}: worker process ${child.pid} exited (${signal ?? `code ${code}`}); restart the server`));
    });
    child.on('error', (err) => this.fail(new ShardWorkerError(`${placement.label}: worker process error: ${err.message}`)));
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  onFailure(listener: (err: Error) => void): void {
    this.listeners.add(listener);
  }

  /** Calls `listener` with every message sent to the worker (tests and benches measure the traffic). */
  onMessageSent(listener: (msg: HostMessage) => void): () => void {
    this.sentListeners.add(listener);
    return () => this.sentListeners.delete(listener);
  }

  /** Requests the worker holds state for (see StepDeltaEncoder). */
  get numTrackedRequests(): number {
    return this.steps.numTracked;
  }

  begin(): void {
    this.ops.push({ op: 'begin' });
  }
  encodeEmbedding(shape: StepShape): void {
    this.ops.push(shape === this.stepShape ? { op: 'embedding' } : { op: 'embedding', shape });
  }
  encodeAttention(layer: number, shape: StepShape): void {
    this.ops.push(shape === this.stepShape ? { op: 'attention', layer } : { op: 'attention', layer, shape });
  }
  encodeMlp(layer: number, shape: StepShape): void {
    this.ops.push(shape === this.stepShape ? { op: 'mlp', layer } : { op: 'mlp', layer, shape });
  }
  encodeLogits(shape: StepShape): void {
    this.ops.push(shape === this.stepShape ? { op: 'logits' } : { op: 'logits', shape });
  }
  submit(): void {
    this.ops.push({ op: 'submit' });
    // Sent at the end of this tick, so the read the all-reduce issues next rides in the same message.
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(() => this.flush());
    }
  }
  uploadStep(step: StepInput): void {
    const delta = this.steps.encode(step);
    this.stepShape = step.meta.shape;
    this.stepRows = step.rows;
    this.ops.push({ op: 'step', delta });
  }
  write(name: ExchangeBufferName, data: Float32Array): void {
    // A copy: the all-reducer reuses its sum buffer, and this op is only sent at the next flush.
    this.ops.push({ op: 'write', name, data: data.slice() });
  }
  read(name: ExchangeBufferName, count: number): Promise<Float32Array> {
    return this.request({ op: 'read', name, count }) as Promise<Float32Array>;
  }
  sample(
    rows: readonly SamplingRow[],
    fullLogits: Float32Array | null,
    processing: readonly (LogitsProcessing | null)[] | null = null,
  ): Promise<SampleResult[]> {
    // The worker samples the rows it rebuilt for the step; other rows would need a step of their own.
    if (rows !== this.stepRows) return Promise.reject(new Error(`${this.placement.label}: sample() takes the rows of the uploaded step`));
    return this.request({ op: 'sample', fullLogits, ...(processing ? { processing: [...processing] } : {}) }) as Promise<SampleResult[]>;
  }
  encodeScoreLogits(rows: Uint32Array): void {
    this.ops.push({ op: 'scoreLogits', rows: rows.slice() });
  }
  scorePrompt(targets: Uint32Array, numTop: number, fullLogits: Float32Array | null): Promise<ScoredToken[]> {
    return this.request({ op: 'score', targets, numTop, fullLogits }) as Promise<ScoredToken[]>;
  }
  throwIfFailed(): void {
    if (this.failure) throw this.failure;
  }

  /** Sends an answered op (after everything queued before it) and waits for its answer. */
  request(body: RequestBody<ShardOp>): Promise<unknown> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    const promise = new Promise<unknown>((resolve, reject) => this.pending.set(id, { resolve, reject }));
    this.ops.push({ ...body, id } as Request);
    this.flush();
    return promise;
  }

  private flush(): void {
    this.flushQueued = false;
    if (this.ops.length === 0 || this.failure) return;
    const msg: HostMessage = { type: 'ops', ops: this.ops };
    this.ops = [];
    for (const listener of this.sentListeners) listener(msg);
    try {
      this.child.send(msg);
    } catch (err) {
      this.fail(new ShardWorkerError(`${this.placement.label}: cannot reach the worker process: ${(err as Error).message}`));
    }
  }

  private onMessage(msg: WorkerMessage): void {
    if (msg.type === 'result') {
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      p?.resolve(msg.value);
      return;
    }
    const err = new ShardWorkerError(`${this.placement.label}: ${msg.message}`);
    if (msg.id === null) {
      this.fail(err);
      return;
    }
    const p = this.pending.get(msg.id);
    this.pending.delete(msg.id);
    p?.reject(err);
  }

  private fail(err: Error): void {
    if (this.closing || this.failure) return;
    this.failure = err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    for (const listener of this.listeners) listener(err);
  }

  /** Asks the worker to release its GPU and exit (it does so when the channel closes). */
  destroy(): void {
    if (this.closing) return;
    this.closing = true;
    const stopped = new ShardWorkerError(`${this.placement.label}: shard destroyed`);
    for (const p of this.pending.values()) p.reject(stopped);
    this.pending.clear();
    if (this.child.connected) this.child.disconnect();
    // A worker stuck inside the driver must not keep the server alive.
    setTimeout(() => this.child.kill('SIGKILL'), 5000).unref();
  }
}

function spawnWorker(placement: ShardPlacement): ChildProcess {
  const { path, execArgv } = childEntry(import.meta.url, 'worker');
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' };
  for (const [k, v] of Object.entries(placement.env)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  // stdout goes to our stderr: a worker must never write into `generate`'s output.
  return fork(path, [], { env, execArgv, serialization: 'advanced', stdio: ['ignore', 2, 2, 'ipc'] });
}

/**
 * Starts one worker per placement and loads the model into them.
 * 1. Fork every worker with its pinning environment and open its device; each plans memory.
 * 2. Send shard 0's plan to all of them; each loads only its own slices of the weights.
 * On any failure every worker is stopped and the error names the shard.
 */
export async function openRemoteShards(modelDir: string, config: ModelConfig, placements: ShardPlacement[], options: RunnerOptions): Promise<RemoteShard[]> {
  const tp = placements.length;
  const shards = placements.map((p) => new RemoteShard(spawnWorker(p), p, shardLayout(config, tp, p.rank)));
  try {
    const plans = await Promise.all(
      shards.map((s) => {
        const p = s.placement;
        const init: WorkerInit = {
          modelDir,
          tp,
          rank: p.rank,
          adapterIndex: p.adapterIndex,
          label: p.label,
          options: { ...options, progress: options.progress && p.rank === 0 },
        };
        return s.request({ op: 'open', init }) as Promise<MemoryPlan>;
      }),
    );
    shards.forEach((s, i) => (s.plan = plans[i]!));
    await Promise.all(shards.map((s) => s.request({ op: 'load', plan: plans[0]! })));
    shards.forEach((s) => (s.plan = plans[0]!));
    return shards;
  } catch (err) {
    for (const s of shards) s.destroy();
    throw err;
  }
}
