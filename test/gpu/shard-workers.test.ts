// Tensor-parallel shards in worker processes (src/runner/worker/host.ts + worker.ts) on the one
// software adapter: the same logits and tokens as in-process tp 1, the same tokens and logprobs as
// in-process tp 2 through concurrency, penalties and preemption (steps cross as changes only), a
// decode step's message that does not grow with the prompt, the real CLI with --shard-processes, a
// killed worker surfacing as an error and an unhealthy engine, and the parsing of Mesa's device
// list into the environment that pins each worker to its GPU.
import { serialize } from 'node:v8';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseDeviceSelectList, hasIdenticalGpus } from '../../src/gpu/physical.js';
import { planShardPlacement } from '../../src/runner/worker/placement.js';
import type { RemoteShard } from '../../src/runner/worker/host.js';
import type { HostMessage } from '../../src/runner/worker/messages.js';
import type { Engine } from '../../src/engine/engine.js';
import type { SchedulerOutput } from '../../src/scheduler/types.js';
import { greedyLogits as greedyLogitsOf, relativeMaxError } from '../helpers/runner.js';
import { collect, greedy, openEngine, PUBLISHED_GREEDY_TEXT, request, STORIES } from '../helpers/engine.js';
import { runCli } from '../helpers/cli.js';

const greedyLogits = (tp: number, shardProcesses: boolean, prompt: number[], steps: number) => greedyLogitsOf(STORIES, { tp, shardProcesses }, prompt, steps);

test('stories260K: tp 2 and 4 in worker processes give the in-process tp 1 logits and greedy tokens', async () => {
  const prompt = [1, 403, 407, 261, 378];
  const base = await greedyLogits(1, false, prompt, 10);
  for (const tp of [2, 4]) {
    const got = await greedyLogits(tp, true, prompt, 10);
    assert.is(got.numWorkers, tp, 'every shard runs in a worker');
    assert.equal(got.tokens, base.tokens, `tp ${tp} tokens`);
    got.logits.forEach((l, i) => assert.ok(relativeMaxError(l, base.logits[i]!) < 1e-4, `tp ${tp} step ${i}: ${relativeMaxError(l, base.logits[i]!)}`));
  }
});

/** Prompts of `length` tokens, different per request. */
const prompt = (k: number, length: number) => Array.from({ length }, (_, i) => 3 + ((i * 37 + k * 11) % 500));

/** Starts all requests before the first step, so every engine schedules them the same way. */
function runConcurrently(engine: Engine, requests: ReturnType<typeof request>[]) {
  return Promise.all(requests.map((r) => collect(engine.generate(r))));
}

test('worker tp 2 gives in-process tp 2 tokens and logprobs bit for bit through penalties, seeds and preemption', async () => {
  const sampled = { temperature: 0.9, topK: 40, repetitionPenalty: 1.3, frequencyPenalty: 0.4, presencePenalty: 0.3, logprobs: 2 };
  const requests = [0, 1, 2, 3].map((k) =>
    request(prompt(k, 20 + 7 * k), {
      maxTokens: 40,
      ignoreEos: true,
      sampling: greedy(k % 2 ? { ...sampled, seed: 100 + k } : { logprobs: 1, repetitionPenalty: 1.2 }),
    }),
  );
  // 12 blocks of 16 tokens cannot hold four requests of up to 81 tokens: the newest get preempted and recomputed.
  const settings = { devices: [0, 0], allowRepeatedDevices: true, kvCacheBlocks: 12, enablePrefixCaching: false };
  const inProcess = await openEngine(settings);
  const expected = await runConcurrently(inProcess, requests);
  await inProcess.shutdown();
  const workers = await openEngine({ ...settings, shardProcesses: true });
  try {
    const got = await runConcurrently(workers, requests);
    assert.ok(workers.stats().numPreemptionsTotal > 0, 'the run preempted');
    got.forEach((g, k) => {
      assert.equal(g.tokenIds, expected[k]!.tokenIds, `request ${k} tokens`);
      assert.equal(
        g.deltas.map((d) => d.logprobs),
        expected[k]!.deltas.map((d) => d.logprobs),
        `request ${k} logprobs`,
      );
    });
    // Finished requests are forgotten after a while, not kept forever.
    assert.ok((workers.runner.remoteShards[0] as RemoteShard).numTrackedRequests <= 4);
  } finally {
    await workers.shutdown();
  }
});

test('a guided request (json_schema) in worker shards: schema-valid and the same tokens as in-process tp 2', async () => {
  const schema = { type: 'object', properties: { name: { type: 'string', maxLength: 8 }, pet: { enum: ['cat', 'dog'] } }, required: ['name', 'pet'] };
  const guided = request(prompt(0, 12), { maxTokens: 60, sampling: greedy({ temperature: 1, seed: 7 }), guided: { type: 'json_schema', schema } });
  const settings = { devices: [0, 0], allowRepeatedDevices: true };
  const runs = [];
  for (const shardProcesses of [false, true]) {
    const engine = await openEngine({ ...settings, shardProcesses });
    try {
      runs.push(await collect(engine.generate(guided)));
    } finally {
      await engine.shutdown();
    }
  }
  const [inProcess, workers] = runs as [Awaited<ReturnType<typeof collect>>, Awaited<ReturnType<typeof collect>>];
  assert.is(workers.finishReason, 'stop', workers.text);
  const value = JSON.parse(workers.text) as { name: string; pet: string };
  assert.ok(typeof value.name === 'string' && value.name.length <= 8 && ['cat', 'dog'].includes(value.pet), workers.text);
  assert.equal(workers.tokenIds, inProcess.tokenIds);
});

/** Bytes the parent sends both workers in the 50th all-decode step, minus the activations (all-reduce writes, gathered logits). */
async function decodeStepBytes(promptLength: number) {
  const engine = await openEngine({ devices: [0, 0], allowRepeatedDevices: true, shardProcesses: true });
  const steps: { decode: boolean; messages: HostMessage[] }[] = [];
  let current: HostMessage[] | null = null;
  for (const s of engine.runner.remoteShards) s.onMessageSent((msg) => current?.push(msg));
  const runner = engine.runner as unknown as { execute(output: SchedulerOutput, rows: unknown): Promise<unknown> };
  const execute = runner.execute.bind(runner);
  runner.execute = async (output, rows) => {
    current = [];
    steps.push({ decode: output.sequences.length === 4 && output.sequences.every((q) => q.tokenIds.length === 1), messages: current });
    try {
      return await execute(output, rows);
    } finally {
      current = null;
    }
  };
  try {
    await runConcurrently(
      engine,
      [0, 1, 2, 3].map((k) => request(prompt(k, promptLength), { maxTokens: 60, ignoreEos: true })),
    );
  } finally {
    engine.runner.destroy();
  }
  const step = steps.filter((s) => s.decode)[49]!;
  let rest = 0;
  let stepOps = 0;
  for (const msg of step.messages) {
    rest += serialize(msg).byteLength;
    for (const op of msg.ops) {
      if (op.op === 'write') rest -= op.data.byteLength;
      if (op.op === 'sample') {
        rest -= op.fullLogits?.byteLength ?? 0;
        assert.equal(Object.keys(op).sort(), ['fullLogits', 'id', 'op'], 'sample sends no rows');
      }
      if (op.op === 'step') {
        stepOps += serialize(op).byteLength;
        assert.is(op.delta.add, undefined, 'no request is sent again');
        assert.is(op.delta.sampling, undefined, 'no prompt, outputs or params are sent again');
      }
      if (op.op === 'embedding' || op.op === 'attention' || op.op === 'mlp' || op.op === 'logits')
        assert.is(op.shape, undefined, 'the shape came with the step');
    }
  }
  return { rest, stepOps };
}

test('a decode step sends both workers a few hundred bytes of step data, whatever the prompt length', async () => {
  // 224 = 14 blocks apart, so both runs append their blocks at the same decode steps.
  const short = await decodeStepBytes(100);
  const long = await decodeStepBytes(324);
  assert.is(long.stepOps, short.stepOps, `step ops: ${short.stepOps} vs ${long.stepOps} bytes`);
  assert.ok(short.stepOps < 400, `step ops: ${short.stepOps} bytes`);
  // Everything else but the activations: begin/submit/encode ops and read requests (ids may take a byte more).
  assert.ok(Math.abs(long.rest - short.rest) <= 32, `rest: ${short.rest} vs ${long.rest} bytes`);
  assert.ok(short.rest < 5000, `rest: ${short.rest} bytes (it was 10048 when steps carried full metadata and rows)`);
});

test('generate --devices 0,0 --shard-processes prints the published greedy text', async () => {
  const r = await runCli([
    'generate',
    STORIES,
    '--prompt',
    '',
    '--max-tokens',
    '64',
    '--dtype',
    'f32',
    '--kv-cache-blocks',
    '16',
    '--devices',
    '0,0',
    '--shard-processes',
  ]);
  assert.is(r.code, 0, r.stderr);
  assert.ok(r.stdout.startsWith(PUBLISHED_GREEDY_TEXT), r.stdout);
  assert.match(r.stderr, /tp=2 \(worker processes\)/);
});

test('a worker killed mid-run fails the request with a message naming the shard, and the engine turns unhealthy', async () => {
  const engine = await openEngine({ devices: [0, 0], allowRepeatedDevices: true, shardProcesses: true });
  try {
    const victim = engine.runner.remoteShards[1] as RemoteShard;
    let numDeltas = 0;
    const run = (async () => {
      for await (const _ of engine.generate(request([1], { maxTokens: 1000, ignoreEos: true }))) {
        if (++numDeltas === 3) process.kill(victim.pid!, 'SIGKILL');
      }
    })();
    const err = await run.then(
      () => null,
      (e: Error) => e,
    );
    assert.ok(err, `the stream ended normally after ${numDeltas} deltas`);
    assert.match(err!.message, /shard 1/);
    assert.ok(numDeltas >= 3 && numDeltas < 1000);
    const health = engine.health();
    assert.is(health.ready, false);
    assert.match(health.reason ?? '', /shard 1/);
    assert.throws(() => engine.generate(request([1])), /shard 1/);
  } finally {
    engine.runner.destroy();
  }
});

// Two identical GPUs with PCI addresses and a CPU device, as Mesa 25's device-select layer prints
// them (format "  GPU %d: %x:%x \"%s\" %s[ %04x:%02x:%02x.%x]", to stderr, then exit(0)).
const TWO_H100 = `selectable devices:
  GPU 0: 10de:2330 "NVIDIA H100 80GB HBM3" discrete GPU 0000:18:00.0
  GPU 1: 10de:2330 "NVIDIA H100 80GB HBM3" discrete GPU 0000:2a:00.0
  GPU 2: 10005:0 "llvmpipe (LLVM 15.0.6, 256 bits)" CPU
`;

test('MESA_VK_DEVICE_SELECT=list output maps device indices to the environment each worker gets', () => {
  const gpus = parseDeviceSelectList(`Warning: something before\n${TWO_H100}`)!;
  assert.is(gpus.length, 3);
  assert.equal(gpus[1], { index: 1, vendorId: 0x10de, deviceId: 0x2330, name: 'NVIDIA H100 80GB HBM3', type: 'discrete GPU', pciBus: '0000:2a:00.0' });
  assert.equal(gpus[2]!.pciBus, null);
  assert.ok(hasIdenticalGpus(gpus));

  const placements = planShardPlacement([1, 0], gpus, false)!;
  assert.ok(placements, 'identical GPUs need worker processes even without --shard-processes');
  assert.equal(
    placements.map((p) => [p.rank, p.deviceIndex, p.adapterIndex]),
    [
      [0, 1, 0],
      [1, 0, 0],
    ],
  );
  assert.equal(placements[0]!.env, {
    MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE: '1',
    NODEVICE_SELECT: undefined,
    MESA_VK_DEVICE_SELECT: undefined,
    DRI_PRIME: 'pci-0000_2a_00_0',
  });
  assert.is(placements[1]!.env.DRI_PRIME, 'pci-0000_18_00_0');
  assert.match(placements[0]!.label, /shard 0 \(GPU 1 NVIDIA H100 80GB HBM3 0000:2a:00.0\)/);
  // A unique device without a bus is pinned by vendor:device id.
  const cpu = planShardPlacement([2], gpus, false)![0]!;
  assert.equal(cpu.env, {
    MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE: '1',
    NODEVICE_SELECT: undefined,
    DRI_PRIME: undefined,
    MESA_VK_DEVICE_SELECT: '10005:0',
  });
  assert.throws(() => planShardPlacement([3], gpus, false), /device index 3 does not exist: this machine has 3 GPU/);
});

test('without identical GPUs shards stay in-process unless forced; twins without a bus cannot be pinned', () => {
  const one = parseDeviceSelectList('selectable devices:\n  GPU 0: 10005:0 "llvmpipe (LLVM 15.0.6, 256 bits)" CPU\n')!;
  assert.is(planShardPlacement([0, 0], one, false), null);
  assert.is(planShardPlacement([0, 0], null, false), null);
  const forced = planShardPlacement([0, 0], one, true)!;
  assert.equal(
    forced.map((p) => [p.adapterIndex, p.env]),
    [
      [0, {}],
      [0, {}],
    ],
  );
  assert.is(parseDeviceSelectList('no layer here\n'), null);
  const noBus = parseDeviceSelectList('selectable devices:\n  GPU 0: 1002:73bf "AMD RX 6800" discrete GPU\n  GPU 1: 1002:73bf "AMD RX 6800" discrete GPU\n')!;
  assert.throws(() => planShardPlacement([0, 1], noBus, false), /GPUs 0 and 1 are both "AMD RX 6800" \(1002:73bf\) and the driver reports no PCI bus/);
});

test.run();
