// The real `serve` on stories260K: generation_config.json defaults (--generation-config auto|vllm, logged
// at startup), /tokenize, GET /v1/models/{id}, stop_reason, and logprobs of byte-fallback tokens keeping
// their own bytes. The model folder is stories260K's files linked into a temp folder with our own
// generation_config.json (the shared files are never copied or changed).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { startServe, type ServeProcess } from '../helpers/cli.js';
import { STORIES } from '../helpers/engine.js';

const dir = mkdtempSync(join(tmpdir(), 'genconfig-model-'));
for (const f of readdirSync(STORIES)) if (f !== 'generation_config.json') symlinkSync(join(STORIES, f), join(dir, f));
// Greedy by default, as a model author might recommend; eos as a list: 2 (</s>) and 432 (",").
const COMMA = 432;
/** vLLM's ignore_eos (the openai SDK's types do not know it; spread, it goes into the body as is). */
const IGNORE_EOS = { ignore_eos: true };
writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ bos_token_id: 1, eos_token_id: [2, COMMA], temperature: 0, top_k: 5 }));

const common = [dir, '--dtype', 'f32', '--kv-cache-blocks', '32', '--model-name', 'stories', '--no-warmup'];
let auto: ServeProcess;

test.before(async () => {
  auto = await startServe(common);
});
test.after(async () => {
  await auto?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('--generation-config auto: the defaults are logged and requests that omit temperature are greedy', async () => {
  // stderr (the log) and stdout ("serving ...", which startServe waits for) are separate pipes.
  for (let i = 0; i < 50 && !auto.logs().includes('request defaults'); i++) await new Promise((r) => setTimeout(r, 100));
  assert.match(auto.logs(), 'request defaults from generation_config.json');
  assert.match(auto.logs(), 'temperature=0 top_k=5');
  const client = new OpenAI({ baseURL: `${auto.url}/v1`, apiKey: 'x', maxRetries: 0 });
  const texts = await Promise.all(
    [1, 2, 3].map(
      async (seed) => (await client.completions.create({ model: 'stories', prompt: 'Once upon a time', max_tokens: 12, seed, ...IGNORE_EOS })).choices[0]!.text,
    ),
  );
  assert.is(new Set(texts).size, 1, `different seeds, one greedy text: ${JSON.stringify(texts)}`);
  assert.ok(texts[0]!.startsWith(','), texts[0]);
  const greedy = await client.completions.create({ model: 'stories', prompt: 'Once upon a time', max_tokens: 12, temperature: 0, ...IGNORE_EOS });
  assert.is(texts[0], greedy.choices[0]!.text);
});

test("every eos_token_id of generation_config.json ends generation (here ','), with stop_reason null", async () => {
  const client = new OpenAI({ baseURL: `${auto.url}/v1`, apiKey: 'x', maxRetries: 0 });
  const res = await client.completions.create({ model: 'stories', prompt: 'Once upon a time', max_tokens: 12, temperature: 0 });
  const choice = res.choices[0] as unknown as { text: string; finish_reason: string; stop_reason: unknown };
  assert.equal([choice.text, choice.finish_reason, choice.stop_reason], ['', 'stop', null]);
  assert.is(res.usage!.completion_tokens, 1);
});

test('GET /v1/models/{id}, /tokenize, /detokenize and stop_reason on the real model', async () => {
  const client = new OpenAI({ baseURL: `${auto.url}/v1`, apiKey: 'x', maxRetries: 0 });
  assert.is((await client.models.retrieve('stories')).id, 'stories');
  const post = async (path: string, body: unknown) =>
    (await (
      await fetch(`${auto.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    ).json()) as Record<string, unknown>;
  assert.equal(await post('/tokenize', { prompt: 'Once upon a time' }), { count: 5, max_model_len: 512, tokens: [1, 403, 407, 261, 378] });
  assert.equal(await post('/detokenize', { tokens: [1, 403, 407, 261, 378] }), { prompt: '<s> Once upon a time' });
  const res = await client.completions.create({ model: 'stories', prompt: 'Once upon a time', max_tokens: 20, stop: ['there'], ...IGNORE_EOS });
  const choice = res.choices[0] as unknown as { text: string; finish_reason: string; stop_reason: unknown };
  assert.is(choice.finish_reason, 'stop');
  assert.is(choice.stop_reason, 'there');
  // A stop_token_ids id (383 is " there") is reported as the stop_reason; its text is not returned.
  const byId = await client.completions.create({
    model: 'stories',
    prompt: 'Once upon a time',
    max_tokens: 20,
    temperature: 0,
    stop_token_ids: [383],
    ...IGNORE_EOS,
  } as never);
  const idChoice = (byId as unknown as { choices: { text: string; stop_reason: unknown }[] }).choices[0]!;
  assert.equal([idChoice.text, idChoice.stop_reason], [',', 383]);
});

test('chat logprobs of a byte-fallback prompt: every token keeps its own bytes, never U+FFFD', async () => {
  const client = new OpenAI({ baseURL: `${auto.url}/v1`, apiKey: 'x', maxRetries: 0 });
  // "€" is not in stories260K's vocabulary: the model sees <0xE2><0x82><0xAC>, and with top_logprobs 20
  // byte tokens come up among the alternatives.
  const res = await client.chat.completions.create({
    model: 'stories',
    messages: [{ role: 'user', content: 'It cost 5 € € €' }],
    max_tokens: 6,
    logprobs: true,
    top_logprobs: 20,
  });
  const all = res.choices[0]!.logprobs!.content!.flatMap((t) => [t, ...t.top_logprobs]);
  for (const t of all) {
    assert.not.ok(t.token.includes('\uFFFD'), `no replacement character: ${JSON.stringify(t)}`);
    if (t.token.startsWith('bytes:')) assert.is(t.token, `bytes:${t.bytes!.map((b) => `\\x${b.toString(16).padStart(2, '0')}`).join('')}`);
    else assert.equal(t.bytes, [...Buffer.from(t.token, 'utf8')]);
  }
  const completion = await client.completions.create({ model: 'stories', prompt: 'It cost 5 €', max_tokens: 6, logprobs: 20 });
  for (const top of completion.choices[0]!.logprobs!.top_logprobs!) assert.ok(Object.keys(top).length >= 20, 'no two alternatives collapsed into one key');
});

test('--generation-config vllm ignores the file: temperature 1 by default', async () => {
  const vllm = await startServe([...common, '--generation-config', 'vllm']);
  try {
    assert.not.match(vllm.logs(), 'request defaults from generation_config.json');
    const client = new OpenAI({ baseURL: `${vllm.url}/v1`, apiKey: 'x', maxRetries: 0 });
    const texts = await Promise.all(
      [1, 2, 3, 4].map(
        async (seed) =>
          (await client.completions.create({ model: 'stories', prompt: 'Once upon a time', max_tokens: 16, seed, ...IGNORE_EOS })).choices[0]!.text,
      ),
    );
    assert.ok(new Set(texts).size > 1, `sampled texts differ by seed: ${JSON.stringify(texts)}`);
  } finally {
    await vllm.stop();
  }
});

test.run();
