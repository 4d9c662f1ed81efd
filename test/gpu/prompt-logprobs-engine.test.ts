// Prompt logprobs (scoring) through the engine on stories260K against the CPU reference: every prompt
// token's log-softmax logprob, rank and top-k, a prompt longer than the prefill chunk and than a
// score chunk, max_tokens 0, the prefix cache skipped, and tensor parallelism (in process and in
// worker processes).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Engine } from '../../src/engine/engine.js';
import type { PromptTokenLogprob } from '../../src/engine/types.js';
import { InvalidRequestError } from '../../src/common/errors.js';
import { ReferenceModel } from '../support/reference-model.js';
import { collect, openEngine, request, STORIES } from '../helpers/engine.js';

const BOS = 1;
let reference: ReferenceModel | null = null;

/** log_softmax of the reference logits of every prompt row: [numPrompt, vocab] in f64. */
async function referenceLogprobs(prompt: number[]): Promise<Float64Array[]> {
  reference ??= await ReferenceModel.load(STORIES);
  reference.reset();
  const V = reference.config.vocabSize;
  const logits = reference.forward(prompt);
  return prompt.map((_, r) => {
    const row = logits.subarray(r * V, (r + 1) * V);
    let m = -Infinity;
    for (const x of row) m = Math.max(m, x);
    let s = 0;
    for (const x of row) s += Math.exp(x - m);
    const lse = m + Math.log(s);
    return Float64Array.from(row, (x) => x - lse);
  });
}

/** Checks every entry against the reference; returns the largest logprob error. */
async function checkAgainstReference(prompt: number[], got: (PromptTokenLogprob | null)[] | undefined, numTop: number): Promise<number> {
  assert.ok(got, 'the first delta carries prompt logprobs');
  assert.is(got.length, prompt.length);
  assert.is(got[0], null);
  const ref = await referenceLogprobs(prompt);
  let maxErr = 0;
  for (let i = 1; i < prompt.length; i++) {
    const e = got[i]!;
    const row = ref[i - 1]!;
    assert.is(e.tokenId, prompt[i]);
    const err = Math.abs(e.logprob - row[prompt[i]!]!);
    maxErr = Math.max(maxErr, err);
    assert.ok(err < 1e-3, `token ${i}: logprob ${e.logprob} vs reference ${row[prompt[i]!]}`);
    let rank = 0;
    for (const x of row) if (x > row[prompt[i]!]! + 1e-4) rank++;
    assert.ok(e.rank >= rank + 1 && e.rank <= rank + 1 + 2, `token ${i}: rank ${e.rank} vs reference ${rank + 1}`);
    assert.is(e.top.length, numTop);
    const best = row.reduce((b, x, j) => (x > row[b]! ? j : b), 0);
    if (numTop > 0) {
      assert.ok(Math.abs(e.top[0]!.logprob - row[best]!) < 1e-3, `token ${i}: top-1 is the argmax`);
      for (const t of e.top) assert.ok(Math.abs(t.logprob - row[t.tokenId]!) < 1e-3, `token ${i}: top ${t.tokenId}`);
    }
  }
  return maxErr;
}

function storyPrompt(engine: Engine, text: string): number[] {
  return [BOS, ...engine.tokenizer.encode(text, { addSpecialTokens: false })];
}

const LONG_TEXT = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friend Tom.';

test('max_tokens 0: every prompt token scored across prefill chunks and score chunks, no token generated', async () => {
  // 7-token prefill chunks and 3 sequences (3-row score chunks), so rows of one chunk span several GPU passes.
  const engine = await openEngine({ maxNumBatchedTokens: 7, maxBatchSize: 3 });
  try {
    const prompt = storyPrompt(engine, LONG_TEXT);
    assert.ok(prompt.length > 20, `prompt has ${prompt.length} tokens`);
    const out = await collect(engine.generate(request(prompt, { maxTokens: 0, promptLogprobs: 5 })));
    assert.is(out.finishReason, 'length');
    assert.equal(out.tokenIds, []);
    assert.is(out.text, '');
    assert.is(out.usage.completionTokens, 0);
    assert.is(out.deltas.length, 1);
    const err = await checkAgainstReference(prompt, out.deltas[0]!.promptLogprobs, 5);
    console.log(`  prompt logprobs (${prompt.length} tokens, chunks of 7): max |error| vs reference ${err.toExponential(2)}`);
    // max_tokens 0 without prompt logprobs is still refused.
    assert.throws(
      () => engine.generate(request(prompt, { maxTokens: 0 })),
      (e: unknown) => e instanceof InvalidRequestError && /max_tokens/.test(e.message),
    );
    assert.throws(
      () => engine.generate(request(prompt, { maxTokens: 0, promptLogprobs: 21 })),
      (e: unknown) => e instanceof InvalidRequestError,
    );
  } finally {
    await engine.shutdown();
  }
});

test('with generation: prompt logprobs on the first delta, the prefix cache skipped, batched with others', async () => {
  const engine = await openEngine({ maxNumBatchedTokens: 16 });
  try {
    const prompt = storyPrompt(engine, LONG_TEXT);
    // Warm the prefix cache with the same prompt: the scoring request must not take the hit.
    const plain = await collect(engine.generate(request(prompt, { maxTokens: 4 })));
    const [scored, other] = await Promise.all([
      collect(engine.generate(request(prompt, { maxTokens: 4, promptLogprobs: 0 }))),
      collect(engine.generate(request(prompt.slice(0, 9), { maxTokens: 4 }))),
    ]);
    assert.is(scored.usage.cachedTokens, 0);
    assert.equal(scored.tokenIds, plain.tokenIds);
    assert.is(scored.deltas.filter((d) => d.promptLogprobs).length, 1);
    assert.ok(scored.deltas[0]!.promptLogprobs);
    assert.is(other.deltas.filter((d) => d.promptLogprobs).length, 0);
    await checkAgainstReference(prompt, scored.deltas[0]!.promptLogprobs, 0);
    // A one-token prompt has nothing to score: [null].
    const single = await collect(engine.generate(request([BOS], { maxTokens: 0, promptLogprobs: 2 })));
    assert.equal(single.deltas[0]!.promptLogprobs, [null]);
  } finally {
    await engine.shutdown();
  }
});

for (const shardProcesses of [false, true]) {
  test(`tensor parallel (tp 2${shardProcesses ? ', worker processes' : ''}): vocab-split logits gathered for scoring`, async () => {
    const engine = await openEngine({ devices: [0, 0], allowRepeatedDevices: true, shardProcesses, maxNumBatchedTokens: 12, maxBatchSize: 4 });
    try {
      const prompt = storyPrompt(engine, LONG_TEXT).slice(0, 20);
      const out = await collect(engine.generate(request(prompt, { maxTokens: 0, promptLogprobs: 3 })));
      const err = await checkAgainstReference(prompt, out.deltas[0]!.promptLogprobs, 3);
      console.log(`  tp 2${shardProcesses ? ' (workers)' : ''}: max |error| vs reference ${err.toExponential(2)}`);
    } finally {
      await engine.shutdown();
    }
  });
}

test.run();
