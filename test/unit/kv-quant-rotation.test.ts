// Why a quantized KV cache stores k in the Hadamard basis: on stories260K (head_dim 8), the CPU reference
// model with the cache's per-(token, kv head) quantization (test/support/kv-quant.ts), teacher-forced
// along the f32 model's greedy story, is measured with and without rotating q and k first. The rotation
// is exact in real arithmetic (H is orthonormal), so every difference comes from what quantization keeps.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ReferenceModel, type ReferenceOptions } from '../support/reference-model.js';
import { STORIES260K_DIR } from '../support/synthetic-model.js';

const BOS = 1;
const STEPS = 120;

function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[best]!) best = i;
  return best;
}

/** KL(p || q) of the softmax distributions of two logit rows, in nats. */
function klDivergence(p: Float32Array, q: Float32Array): number {
  const logSoftmax = (x: Float32Array) => {
    const max = Math.max(...x);
    const lse = max + Math.log(x.reduce((s, v) => s + Math.exp(v - max), 0));
    return Array.from(x, (v) => v - lse);
  };
  const lp = logSoftmax(p);
  const lq = logSoftmax(q);
  return lp.reduce((s, v, i) => s + Math.exp(v) * (v - lq[i]!), 0);
}

/** Logits of every step along `feed` (teacher forcing), or along the model's own greedy choices. */
async function logitsAlong(options: ReferenceOptions, feed: number[] | null): Promise<{ tokens: number[]; logits: Float32Array[] }> {
  const model = await ReferenceModel.load(STORIES260K_DIR, options);
  const tokens = [BOS];
  const logits: Float32Array[] = [];
  for (let step = 0; step < STEPS; step++) {
    logits.push(model.forward([tokens[step]!]));
    tokens.push(feed ? feed[step + 1]! : argmax(logits[step]!));
  }
  return { tokens, logits };
}

test(`rotating q and k before quantizing the cache lowers the mean KL to the f32 model over ${STEPS} steps (int4 and int8)`, async () => {
  const exact = await logitsAlong({}, null);
  const lines: string[] = [];
  for (const bits of [4, 8] as const) {
    const stats: Record<string, { kl: number; agree: number }> = {};
    for (const rotateKeys of [false, true]) {
      const q = await logitsAlong({ kvCache: { bits, rotateKeys } }, exact.tokens);
      let kl = 0;
      let agree = 0;
      for (let s = 0; s < STEPS; s++) {
        kl += klDivergence(exact.logits[s]!, q.logits[s]!) / STEPS;
        if (argmax(q.logits[s]!) === exact.tokens[s + 1]) agree += 1 / STEPS;
      }
      stats[rotateKeys ? 'rotated' : 'plain'] = { kl, agree };
    }
    const { plain, rotated } = stats as { plain: { kl: number; agree: number }; rotated: { kl: number; agree: number } };
    lines.push(
      `int${bits}: mean KL ${plain.kl.toExponential(2)} plain, ${rotated.kl.toExponential(2)} rotated (x${(plain.kl / rotated.kl).toFixed(2)}); ` +
        `greedy agreement ${(100 * plain.agree).toFixed(1)}% / ${(100 * rotated.agree).toFixed(1)}%`,
    );
    assert.ok(rotated.kl < plain.kl, `int${bits}: rotated KL ${rotated.kl} vs plain ${plain.kl}`);
    if (bits === 4) assert.ok(rotated.kl < 0.7 * plain.kl, `int4: rotation should cut the KL well below plain (${rotated.kl} vs ${plain.kl})`);
  }
  console.log(`  stories260K, teacher-forced along its f32 greedy story:\n    ${lines.join('\n    ')}`);
});

test.run();
