// A tensor-parallel shard in its own process (forked by shard-host.ts with an environment that pins
// it to one GPU). It owns a real Shard, the same class as in-process shards, loads only its own
// slices of the weights, and runs the parent's ops strictly in order. After the first failure it
// answers every request with that failure: the parent must not go on with a half-done step.
import { openDevices, type GpuDevice } from '../../gpu/index.js';
import { loadModelConfig } from '../../checkpoint/config.js';
import { planMemory } from '../memory.js';
import { ConsoleLoadProgress } from '../../common/progress.js';
import { ropeInvFreq } from '../../checkpoint/rope.js';
import { SafetensorsReader } from '../../checkpoint/safetensors.js';
import { ShardWeightBuilder } from '../shard-weights.js';
import { createShard, type Shard } from '../shard.js';
import type { HostMessage, ShardOp, WorkerInit, WorkerMessage } from './host.js';
import { shardLayout } from '../sharding.js';
import { loadCanonicalTensors } from '../../checkpoint/weights.js';

let init: WorkerInit | null = null;
let gpu: GpuDevice | null = null;
let shard: Shard | null = null;
let failure: string | null = null;
let chain: Promise<void> = Promise.resolve();

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
  const config = await loadModelConfig(i.modelDir);
  return planMemory(config, shardLayout(config, i.tp, 0), gpu!, i.options);
}

async function load(plan: { numBlocks: number; maxTokensPerStep: number }): Promise<unknown> {
  const i = need(init, 'load');
  const device = need(gpu, 'load');
  const config = await loadModelConfig(i.modelDir);
  const layout = shardLayout(config, i.tp, i.rank);
  const builder = new ShardWeightBuilder(device, config, layout, i.options.dtype);
  const reader = await SafetensorsReader.open(i.modelDir);
  try {
    const progress = i.options.progress ? new ConsoleLoadProgress() : undefined;
    await loadCanonicalTensors(reader, config, i.options.dtype, (t) => builder.add(t), progress);
  } finally {
    await reader.close();
  }
  const { invFreq, attentionScaling } = ropeInvFreq(config.rope, config.maxPositionEmbeddings);
  shard = await createShard(device, config, layout, builder.finish(), {
    blockSize: i.options.blockSize,
    numBlocks: plan.numBlocks,
    maxTokensPerStep: plan.maxTokensPerStep,
    maxNumSeqs: i.options.maxNumSeqs,
    maxBlocksPerSeq: Math.ceil(i.options.maxModelLen / i.options.blockSize),
    invFreq,
    attentionScaling,
    kvCacheDtype: i.options.kvCacheDtype,
  });
  await device.sync();
  return null;
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
      return need(shard, 'sample').sample(op.rows, op.fullLogits);
    case 'begin':
      return need(shard, 'begin').begin();
    case 'embedding':
      return need(shard, 'embedding').encodeEmbedding(op.shape);
    case 'attention':
      return need(shard, 'attention').encodeAttention(op.layer, op.shape);
    case 'mlp':
      return need(shard, 'mlp').encodeMlp(op.layer, op.shape);
    case 'logits':
      return need(shard, 'logits').encodeLogits(op.shape);
    case 'submit':
      return need(shard, 'submit').submit();
    case 'meta':
      return need(shard, 'meta').uploadMetadata(op.meta);
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
      if (id !== null && (op.op === 'open' || op.op === 'load' || op.op === 'read' || op.op === 'sample')) {
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
