// bench:quant-quality — what 4-bit costs in accuracy, RTN against AWQ at group 32 / 64 / 128, measured
// through the serving path (the 4-bit checkpoints loaded by the runner, logits read back per position):
//   stories260K (trained; only the attention projections quantize, hidden 64 admits groups 32 and 64):
//     perplexity on a held-out story (test/fixtures/held-out-story.txt, not the calibration text);
//   the 76.3M bench model (random weights, every linear quantizes): mean KL(f16 || 4-bit) of the
//     next-token distributions, max |logit difference| and top-1 agreement over the held-out story.
// Calibration is the built-in text with the command's defaults (4 x 128 tokens).
// Usage: npm run bench:quant-quality [-- --json]
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModelConfig } from '../src/checkpoint/config.js';
import { openDevices, type GpuDevice } from '../src/gpu/index.js';
import { planQuantization } from '../src/quantize/plan.js';
import { QUANTIZE_DEFAULTS, quantizeModel, type QuantizeMethod } from '../src/quantize/quantize.js';
import { ModelRunner } from '../src/runner/runner.js';
import { DEFAULT_SAMPLING, type SamplingRow } from '../src/sampling/params.js';
import { Tokenizer } from '../src/tokenizer/tokenizer.js';
import { STORIES260K_DIR } from '../test/support/synthetic-model.js';
import { benchModelDir } from './bench-model.js';
import { nodeVersion, printTable, wantsJson, type Row } from './common.js';

const json = wantsJson();
const say = (s: string) => {
  if (!json) process.stderr.write(`${s}\n`);
};
const heldOut = readFileSync(new URL('../test/fixtures/held-out-story.txt', import.meta.url), 'utf8');
const tmp = await mkdtemp(join(tmpdir(), 'quant-quality-'));
const gpu = (await openDevices([0]))[0]!;
const GROUPS = [32, 64, 128];
const METHODS: QuantizeMethod[] = ['rtn', 'awq'];

/** Logits of every position of `tokens`, one decode step per token (full rows need a sampled row each). */
async function logitsPerPosition(dir: string, device: GpuDevice, tokens: readonly number[]): Promise<Float32Array[]> {
  const config = await loadModelConfig(dir);
  const blockSize = 16;
  const maxModelLen = Math.ceil(tokens.length / blockSize) * blockSize;
  const runner = await ModelRunner.load(dir, config, [device], {
    dtype: 'f16',
    blockSize,
    maxNumSeqs: 1,
    maxModelLen,
    maxNumBatchedTokens: 64,
    cacheMaxEntryCount: 0.5,
    kvCacheBlocks: maxModelLen / blockSize,
  });
  try {
    const blockIds = Array.from({ length: maxModelLen / blockSize }, (_, i) => i);
    const out: Float32Array[] = [];
    for (let pos = 0; pos < tokens.length; pos++) {
      const row: SamplingRow = { params: { ...DEFAULT_SAMPLING, temperature: 0 }, promptTokenIds: tokens.slice(0, pos + 1), outputTokenIds: [], step: 0 };
      await runner.execute(
        {
          step: pos,
          sequences: [{ requestId: 'q', tokenIds: [tokens[pos]!], startPosition: pos, blockIds, sample: true }],
          numScheduledTokens: 1,
          preemptedRequestIds: [],
          finishedRequestIds: [],
        },
        new Map([['q', row]]),
      );
      out.push(await runner.readLogits(1));
    }
    return out;
  } finally {
    runner.destroy();
  }
}

function logSoftmax(logits: Float32Array): Float64Array {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  let sum = 0;
  for (const v of logits) sum += Math.exp(v - max);
  const lse = max + Math.log(sum);
  return Float64Array.from(logits, (v) => v - lse);
}

function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! > v[best]!) best = i;
  return best;
}

/** Perplexity of tokens[1..] given the logits of the positions before them. */
function perplexity(logits: Float32Array[], tokens: readonly number[]): number {
  let nll = 0;
  for (let t = 0; t + 1 < tokens.length; t++) nll -= logSoftmax(logits[t]!)[tokens[t + 1]!]!;
  return Math.exp(nll / (tokens.length - 1));
}

function compare(base: Float32Array[], quant: Float32Array[]) {
  let kl = 0;
  let maxDiff = 0;
  let agree = 0;
  base.forEach((b, t) => {
    const q = quant[t]!;
    const lp = logSoftmax(b),
      lq = logSoftmax(q);
    for (let i = 0; i < lp.length; i++) kl += Math.exp(lp[i]!) * (lp[i]! - lq[i]!);
    for (let i = 0; i < b.length; i++) maxDiff = Math.max(maxDiff, Math.abs(b[i]! - q[i]!));
    if (argmax(b) === argmax(q)) agree++;
  });
  return { meanKl: kl / base.length, maxLogitDiff: maxDiff, top1Agreement: agree / base.length };
}

interface Result {
  model: string;
  method: string;
  groupSize: number | null;
  quantizeSeconds: number;
  perplexity: number;
  meanKl: number;
  maxLogitDiff: number;
  top1Agreement: number;
  /** AWQ: summed scored-block output MSE (attention, MLP, o_proj, down_proj) of RTN over AWQ's, on the calibration tokens. */
  searchGain: number | null;
}

async function evaluate(name: string, modelDir: string, maxTokens: number): Promise<Result[]> {
  const tokenizer = await Tokenizer.fromModelDir(modelDir);
  const tokens = tokenizer.encode(heldOut.trim(), { addSpecialTokens: true }).slice(0, maxTokens);
  say(`[bench] ${name}: ${tokens.length} held-out tokens`);
  const base = await logitsPerPosition(modelDir, gpu, tokens);
  const results: Result[] = [
    { model: name, method: 'f16', groupSize: null, quantizeSeconds: 0, perplexity: perplexity(base, tokens), ...compare(base, base), searchGain: null },
  ];
  const config = await loadModelConfig(modelDir);
  for (const groupSize of GROUPS) {
    if (planQuantization(config, groupSize).quantized.size === 0) {
      say(`[bench] ${name}: group ${groupSize} quantizes no linear (in features ${config.hiddenSize}), skipped`);
      continue;
    }
    for (const method of METHODS) {
      const outDir = join(tmp, `${name}-${method}-g${groupSize}`);
      const q = await quantizeModel({ ...QUANTIZE_DEFAULTS, modelDir, outDir, method, groupSize, gpu });
      const logits = await logitsPerPosition(outDir, gpu, tokens);
      const searchLoss = q.searches.reduce((s, g) => s + g.loss, 0);
      const rtnLoss = q.searches.reduce((s, g) => s + g.rtnLoss, 0);
      results.push({
        model: name,
        method,
        groupSize,
        quantizeSeconds: q.seconds,
        perplexity: perplexity(logits, tokens),
        ...compare(base, logits),
        searchGain: q.searches.length ? rtnLoss / searchLoss : null,
      });
      say(`[bench] ${name} ${method} g${groupSize}: quantized in ${q.seconds.toFixed(1)} s`);
      await rm(outDir, { recursive: true, force: true });
    }
  }
  return results;
}

try {
  const stories = await evaluate('stories260K', STORIES260K_DIR, 512);
  const bench = await evaluate('bench-76M', await benchModelDir(), 128);
  if (json) {
    console.log(JSON.stringify({ node: nodeVersion(), adapter: gpu.adapter.info.description, stories260K: stories, benchModel: bench }, null, 2));
  } else {
    const row = (r: Result): Row => ({
      method: r.method,
      group: r.groupSize === null ? '-' : String(r.groupSize),
      'quantize s': r.quantizeSeconds,
      perplexity: r.perplexity,
      'x f16 ppl': r.perplexity / stories[0]!.perplexity,
      'mean KL': r.meanKl.toExponential(2),
      'max |dlogit|': r.maxLogitDiff,
      'top-1 agree': r.top1Agreement,
      'search MSE gain': r.searchGain ?? '-',
    });
    printTable(`stories260K (attention projections in 4 bits), held-out story, Node ${nodeVersion()}`, stories.map(row));
    printTable(
      'Bench model (76.3M, random weights, every linear in 4 bits) vs its f16 self, held-out story',
      bench.map((r) => {
        const { perplexity: _p, 'x f16 ppl': _x, ...rest } = row(r);
        return rest;
      }),
    );
  }
} finally {
  await rm(tmp, { recursive: true, force: true });
}
process.exit(0);
