// A tensor-parallel shard in its own process (forked by host.ts with an environment that pins it to
// one GPU). It owns a real Shard, the same class as in-process shards, loaded by the same code
// (shard-loader.ts) but with only its own slices of the weights. It keeps each request's block table
// and sampling state, so a step arrives as changes only (step-delta.ts), and runs the parent's ops
// strictly in order. After the first failure it answers every request with that failure: the parent
// must not go on with a half-done step.
import { openDevices, type GpuDevice } from '../../gpu/index.js';
import { loadModelConfig, type ModelConfig } from '../../checkpoint/config.js';
import type { SamplingRow } from '../../sampling/params.js';
import { planMemory, type MemoryPlan } from '../memory.js';
import type { Shard, StepShape } from '../shard.js';
import { loadShards } from '../shard-loader.js';
import { shardLayout } from '../sharding.js';
import { buildStepMetadata } from '../step-metadata.js';
import type { HostMessage, ShardOp, StepDelta, WorkerInit, WorkerMessage } from './messages.js';
import { StepDeltaDecoder } from './step-delta.js';

let init: WorkerInit | null = null;
let config: ModelConfig | null = null;
let gpu: GpuDevice | null = null;
let shard: Shard | null = null;
let plan: MemoryPlan | null = null;
let failure: string | null = null;
let chain: Promise<void> = Promise.resolve();
/** Each request's block table and sampling state, kept across steps. */
const steps = new StepDeltaDecoder();
/** The last step's shape (encode ops without one use it) and sampling rows (the sample op uses them). */
let stepShape: StepShape | null = null;
let stepRows: SamplingRow[] = [];

function send(msg: WorkerMessage): void {
  if (process.connected) process.send!(msg);
}

function fail(message: string): void {
  if (failure) return;
  failure = message;
  send({ type: 'error', id: null, message });
}

function need<T>(value: T | null, what: string): T {
  if (value === null) throw new Error(`shard worker: ${what} before it was set up (the parent sent ops out of order)`);
  return value;
}

async function open(i: WorkerInit): Promise<unknown> {
  init = i;
  gpu = (await openDevices([i.adapterIndex]))[0] ?? null;
  gpu!.onLost((err) => fail(err.message));
  config = await loadModelConfig(i.modelDir);
  return planMemory(config, shardLayout(config, i.tp, 0), gpu!, i.options);
}

/** Loads this worker's slices with shard 0's plan, through the same loader as in-process shards. */
async function load(p: MemoryPlan): Promise<unknown> {
  const i = need(init, 'load');
  const c = need(config, 'load');
  const target = { gpu: need(gpu, 'load'), layout: shardLayout(c, i.tp, i.rank) };
  shard = (await loadShards(i.modelDir, c, [target], p, i.options))[0]!;
  plan = p;
  return null;
}

/** Applies a step's changes and uploads the metadata the in-process path would build for it. */
function uploadStep(delta: StepDelta): void {
  const s = need(shard, 'step');
  const p = need(plan, 'step');
  const { sequences, rows } = steps.apply(delta);
  const meta = buildStepMetadata({ sequences }, p.blockSize, p.maxBlocksPerSeq);
  s.uploadMetadata(meta);
  stepShape = meta.shape;
  stepRows = rows;
}

/** Runs one op; returns its answer for ops with an id. */
async function run(op: ShardOp): Promise<unknown> {
  switch (op.op) {
    case 'open':
      return open(op.init);
    case 'load':
      return load(op.plan);
    case 'read':
      return need(shard, 'read').read(op.name, op.count);
    case 'sample':
      return need(shard, 'sample').sample(stepRows, op.fullLogits, op.processing ?? null);
    case 'scoreLogits':
      return need(shard, 'scoreLogits').encodeScoreLogits(op.rows);
    case 'score':
      return need(shard, 'score').scorePrompt(op.targets, op.numTop, op.fullLogits);
    case 'begin':
      return need(shard, 'begin').begin();
    case 'embedding':
      return need(shard, 'embedding').encodeEmbedding(op.shape ?? need(stepShape, 'embedding'));
    case 'attention':
      return need(shard, 'attention').encodeAttention(op.layer, op.shape ?? need(stepShape, 'attention'));
    case 'mlp':
      return need(shard, 'mlp').encodeMlp(op.layer, op.shape ?? need(stepShape, 'mlp'));
    case 'logits':
      return need(shard, 'logits').encodeLogits(op.shape ?? need(stepShape, 'logits'));
    case 'submit':
      return need(shard, 'submit').submit();
    case 'step':
      return uploadStep(op.delta);
    case 'write':
      return need(shard, 'write').write(op.name, op.data);
  }
}

async function handle(msg: HostMessage): Promise<void> {
  for (const op of msg.ops) {
    const id = 'id' in op ? op.id : null;
    if (failure) {
      if (id !== null) send({ type: 'error', id, message: failure });
      continue;
    }
    try {
      const value = await run(op);
      if (id !== null) send({ type: 'result', id, value });
    } catch (err) {
      const message = (err as Error).message;
      if (id !== null && (op.op === 'open' || op.op === 'load' || op.op === 'read' || op.op === 'sample' || op.op === 'score')) {
        // A failed request poisons the shard too: its GPU state is unknown from here on.
        failure = message;
        send({ type: 'error', id, message });
      } else {
        fail(`${op.op} failed: ${message}`);
      }
    }
  }
}

process.on('message', (msg: HostMessage) => {
  chain = chain.then(() => handle(msg));
});

// The parent closed the channel (shutdown, or it died): release the GPU and go.
process.on('disconnect', () => {
  void chain.finally(() => {
    try {
      shard?.destroy();
      gpu?.destroy();
    } finally {
      process.exit(0);
    }
  });
});
