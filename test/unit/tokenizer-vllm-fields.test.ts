// The tokenizer/engine side of vLLM's fields on stories260K (it has byte-fallback tokens): logprob
// tokens of partial UTF-8 characters keep their own bytes, spaces_between_special_tokens, stop_reason and
// include_stop_str_in_output in the output processor, chat_template_kwargs and continue_final_message
// through a real Jinja template (a fixture file, as --chat-template reads one), generation_config defaults.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { StopStringMatcher } from '../../src/tokenizer/stop-strings.js';
import { OutputProcessor } from '../../src/engine/output-processor.js';
import { chatPromptTokenIds, describeRequestDefaults, renderChat, requestDefaults } from '../../src/engine/prompt.js';
import { completionLogprobs, chatLogprobs } from '../../src/server/logprobs.js';

const MODEL_DIR = join(process.cwd(), '../shared/models/stories260K');
const TEMPLATE = readFileSync(join(process.cwd(), 'test/fixtures/chat-templates/thinking.jinja'), 'utf8');
const tok = await Tokenizer.fromModelDir(MODEL_DIR);
const id = (piece: string) => tok.tokenToId(piece)!;

test('logprobs of byte-fallback tokens: real bytes, "bytes:\\xNN" spelling, no top_logprobs collisions', () => {
  const [e2, x82, xac] = [id('<0xE2>'), id('<0x82>'), id('<0xAC>')];
  const c3 = id('<0xC3>');
  const out = new OutputProcessor(tok, [1], { stop: [], skipSpecialTokens: true, wantLogprobs: true, stopTokenIds: new Set([2]) });
  const sample = (tokenId: number, top: number[]) => ({ tokenId, logprob: -0.5, topLogprobs: top.map((t, i) => ({ tokenId: t, logprob: -1 - i })) });
  const steps = [
    out.process([e2], sample(e2, [e2, c3, id('▁Once')]), null),
    out.process([x82], sample(x82, []), null),
    out.process([xac], sample(xac, []), 'length'),
  ];
  assert.is(steps.map((s) => s.text).join(''), '€');
  const items = steps.flatMap((s) => s.logprobs!);
  assert.equal(
    items.map((i) => i.token),
    ['bytes:\\xe2', 'bytes:\\x82', 'bytes:\\xac'],
  );
  assert.equal(
    items.map((i) => i.bytes),
    [[0xe2], [0x82], [0xac]],
  );
  assert.equal(
    items[0]!.top.map((t) => [t.token, t.bytes]),
    [
      ['bytes:\\xe2', [0xe2]],
      ['bytes:\\xc3', [0xc3]],
      [' Once', [...Buffer.from(' Once')]],
    ],
  );
  const wire = completionLogprobs(items, 3, 0);
  assert.is(Object.keys(wire.top_logprobs[0]!).length, 3, 'two byte tokens no longer collide on U+FFFD');
  assert.equal(wire.text_offset, [0, 0, 0]);
  const chat = chatLogprobs(items, 3);
  assert.equal(Buffer.from(chat.flatMap((c) => c.bytes)).toString('utf8'), '€', 'bytes reassemble the character');
  assert.not.ok(
    chat.some((c) => c.bytes.includes(0xef)),
    'never the replacement character',
  );
});

test('a byte-fallback token that is a whole character keeps its text; its twin piece does not collide with it', () => {
  const out = new OutputProcessor(tok, [1], { stop: [], skipSpecialTokens: true, wantLogprobs: true, stopTokenIds: new Set() });
  const [byteA, pieceA] = [id('<0x41>'), id('A')];
  assert.ok(byteA !== undefined && pieceA !== undefined && byteA !== pieceA);
  const r = out.process(
    [pieceA],
    {
      tokenId: pieceA,
      logprob: -1,
      topLogprobs: [
        { tokenId: pieceA, logprob: -1 },
        { tokenId: byteA, logprob: -2 },
      ],
    },
    null,
  );
  assert.is(r.logprobs![0]!.top[1]!.token, 'A');
  assert.equal(completionLogprobs(r.logprobs!, 2, 0).top_logprobs[0], Object.assign(Object.create(null), { A: -1, [`token_id:${byteA}`]: -2 }));
});

test('spaces_between_special_tokens: with special tokens kept, they are joined with spaces (vLLM)', () => {
  const ids = [1, ...tok.encode('Once upon', { addSpecialTokens: false }), 2];
  assert.is(tok.decode(ids, { skipSpecialTokens: false }), '<s> Once upon</s>');
  assert.is(tok.decode(ids, { skipSpecialTokens: false, spacesBetweenSpecialTokens: true }), '<s> Once upon </s>');
  assert.is(tok.decode(ids, { skipSpecialTokens: true, spacesBetweenSpecialTokens: true }), 'Once upon');
  // The engine's default is true; false keeps the tokenizer's plain decode.
  const spaced = new OutputProcessor(tok, [1], { stop: [], skipSpecialTokens: false, wantLogprobs: false, stopTokenIds: new Set() });
  const plain = new OutputProcessor(tok, [1], {
    stop: [],
    skipSpecialTokens: false,
    wantLogprobs: false,
    stopTokenIds: new Set(),
    spacesBetweenSpecialTokens: false,
  });
  const run = (p: OutputProcessor) =>
    ids
      .slice(1)
      .map((t, i) => p.process([t], undefined, i === ids.length - 2 ? 'length' : null).text)
      .join('');
  // As vLLM's incremental detokenizer: decoded after the prompt's "<s>", so the text starts with its space.
  assert.is(run(spaced), ' Once upon </s>');
  assert.is(run(plain), ' Once upon</s>');
});

test('stop_reason and include_stop_str_in_output in the output processor', () => {
  const ids = tok.encode('Once upon a time there was', { addSpecialTokens: false });
  const feed = (p: OutputProcessor) => {
    let text = '';
    for (const t of ids) {
      const r = p.process([t], undefined, null);
      text += r.text;
      if (r.stoppedByString) return { text, stopReason: r.stopReason };
    }
    return { text, stopReason: undefined };
  };
  assert.equal(feed(new OutputProcessor(tok, [1], { stop: ['time'], skipSpecialTokens: true, wantLogprobs: false, stopTokenIds: new Set() })), {
    text: 'Once upon a ',
    stopReason: 'time',
  });
  assert.equal(
    feed(
      new OutputProcessor(tok, [1], { stop: ['time'], skipSpecialTokens: true, wantLogprobs: false, stopTokenIds: new Set(), includeStopStrInOutput: true }),
    ),
    { text: 'Once upon a time', stopReason: 'time' },
  );
  // A stop_token_ids id is the stop_reason; eos is null.
  const byId = new OutputProcessor(tok, [1], {
    stop: [],
    skipSpecialTokens: true,
    wantLogprobs: false,
    stopTokenIds: new Set([2, ids[1]!]),
    stopReasonTokenIds: new Set([ids[1]!]),
  });
  byId.process([ids[0]!], undefined, null);
  assert.is(byId.process([ids[1]!], undefined, 'stop').stopReason, ids[1]);
  const byEos = new OutputProcessor(tok, [1], {
    stop: [],
    skipSpecialTokens: true,
    wantLogprobs: false,
    stopTokenIds: new Set([2]),
    stopReasonTokenIds: new Set(),
  });
  assert.is(byEos.process([2], undefined, 'stop').stopReason, null);
  const matcher = new StopStringMatcher(['lo w', 'xyz'], true);
  assert.equal(matcher.push('Hel'), { emit: 'He', stopped: false });
  assert.equal(matcher.push('lo world'), { emit: 'llo w', stopped: true, stop: 'lo w' });
});

test('chat_template_kwargs reach a Jinja template (--chat-template file); they cannot replace messages', () => {
  const t = new Tokenizer(JSON.parse(readFileSync(join(MODEL_DIR, 'tokenizer.json'), 'utf8')), {}, TEMPLATE);
  const messages = [{ role: 'user' as const, content: 'Hi' }];
  assert.is(t.applyChatTemplate(messages), '<|user|>Hi</s><|assistant|>');
  assert.is(t.applyChatTemplate(messages, { kwargs: { enable_thinking: false } }), '<|user|>Hi</s><|assistant|><think></think>');
  assert.is(t.applyChatTemplate(messages, { kwargs: { greeting: 'hello', messages: [] } }), '<|user|>Hi</s><|assistant|>[hello]');
  assert.is(t.applyChatTemplate(messages, { addGenerationPrompt: false, kwargs: { add_generation_prompt: true } }), '<|user|>Hi</s>');
});

test('continue_final_message renders without the generation prompt and cuts the final end-of-turn', () => {
  const t = new Tokenizer(JSON.parse(readFileSync(join(MODEL_DIR, 'tokenizer.json'), 'utf8')), { bos_token: '<s>' }, TEMPLATE);
  const messages = [
    { role: 'user' as const, content: 'Hi' },
    { role: 'assistant' as const, content: 'Once upon' },
  ];
  assert.is(renderChat(t, messages, { addGenerationPrompt: false, continueFinalMessage: true }), '<|user|>Hi</s><|assistant|>Once upon');
  assert.is(renderChat(t, messages, { addGenerationPrompt: false }), '<|user|>Hi</s><|assistant|>Once upon</s>');
  const ids = chatPromptTokenIds(t, messages, { addGenerationPrompt: false, continueFinalMessage: true });
  assert.is(ids[0], 1, 'BOS first');
  assert.ok(t.decode(ids).endsWith('Once upon'));
});

test("generation_config.json: vLLM's fields become request defaults (do_sample ignored); none: nothing", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'genconfig-'));
  try {
    writeFileSync(
      join(dir, 'generation_config.json'),
      JSON.stringify({ do_sample: false, temperature: 0.6, top_p: 0.95, top_k: 20, min_p: 0, repetition_penalty: 1.1, eos_token_id: [2, 3], max_length: 512 }),
    );
    const d = await requestDefaults(dir);
    assert.equal(d, { temperature: 0.6, topP: 0.95, topK: 20, minP: 0, repetitionPenalty: 1.1 });
    assert.match(describeRequestDefaults(d), 'temperature=0.6 top_p=0.95 top_k=20 min_p=0 repetition_penalty=1.1');
    assert.equal(await requestDefaults(MODEL_DIR), {}, 'stories260K sets only do_sample and ids');
    assert.match(describeRequestDefaults({}), 'no sampling defaults');
    assert.equal(await requestDefaults(join(dir, 'missing')), {});
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
