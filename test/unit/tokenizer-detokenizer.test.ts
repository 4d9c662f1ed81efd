// Incremental detokenization against full decodes with stories260K's tokenizer (SentencePiece-style
// leading spaces, byte fallback): the deltas must add up to decode-in-context exactly.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { IncrementalDetokenizer } from '../../src/tokenizer/detokenizer.js';

const MODEL_DIR = join(process.cwd(), '../shared/models/stories260K');
const tokenizer = await Tokenizer.fromModelDir(MODEL_DIR);
const BOS = 1;

function stream(prompt: readonly number[], output: readonly number[], skipSpecialTokens: boolean) {
  const detok = new IncrementalDetokenizer(tokenizer, prompt, { skipSpecialTokens });
  const deltas = output.map((id) => detok.push(id));
  const tail = detok.flush();
  return { deltas, tail, text: deltas.join('') + tail, detok };
}

/** What the output adds to the prompt's text in a full decode of both. */
function decodeInContext(prompt: readonly number[], output: readonly number[], skipSpecialTokens: boolean): string {
  const promptText = tokenizer.decode(prompt, { skipSpecialTokens });
  const fullText = tokenizer.decode([...prompt, ...output], { skipSpecialTokens });
  assert.ok(fullText.startsWith(promptText), 'the reference itself is prefix-stable');
  return fullText.slice(promptText.length);
}

function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('after BOS the first word has no leading space, later words do', () => {
  const output = tokenizer.encode('Once upon a time', { addSpecialTokens: false });
  const { deltas, tail, detok } = stream([BOS], output, true);
  assert.equal(deltas, ['Once', ' upon', ' a', ' time']);
  assert.is(tail, '');
  assert.is(detok.text, 'Once upon a time');
});

test('continuing a prompt keeps the space of the first generated word', () => {
  const prompt = tokenizer.encode('Once upon');
  const output = tokenizer.encode('a time', { addSpecialTokens: false }); // ['▁a', '▁time']
  assert.equal(stream(prompt, output, true).deltas, [' a', ' time']);
  // The output alone would decode as "a time": context matters.
  assert.is(tokenizer.decode(output), 'a time');
});

test('a character split across byte tokens is held until complete, never shown as U+FFFD', () => {
  const prompt = tokenizer.encode('Hi');
  const output = tokenizer.encode('世!', { addSpecialTokens: false }); // ▁ E4 B8 96 !
  const { deltas } = stream(prompt, output, true);
  assert.equal(deltas, [' ', '', '', '世', '!']);
});

test('an incomplete character at the end is flushed as U+FFFD, like a full decode', () => {
  const prompt = tokenizer.encode('Hi');
  const output = [...tokenizer.encode('a', { addSpecialTokens: false }), 3 + 0xe2, 3 + 0x82]; // ▁a E2 82
  const { deltas, tail, text } = stream(prompt, output, true);
  assert.equal(deltas, [' a', '', '']);
  assert.is(tail, '\uFFFD');
  assert.is(text, decodeInContext(prompt, output, true));
});

test('unicode-heavy text streams exactly, without U+FFFD or lone surrogates mid-stream', () => {
  const texts = ['naïve café 世界 😀👍🏽 🇫🇷 Ελληνικά\nкириллица\t👩‍👩‍👧 end', '日本語のテキストと中文、😀😀😀', ' leading space and\u00a0nbsp '];
  for (const text of texts) {
    const output = tokenizer.encode(text, { addSpecialTokens: false });
    const { deltas, tail } = stream([BOS], output, true);
    for (const delta of deltas) {
      assert.not.ok(delta.includes('\uFFFD'), `delta ${JSON.stringify(delta)} has U+FFFD`);
      assert.not.ok(/[\uD800-\uDBFF]$/.test(delta), `delta ${JSON.stringify(delta)} ends in a lone surrogate`);
    }
    assert.is(tail, '');
    assert.is(deltas.join(''), tokenizer.decode(output), JSON.stringify(text));
    assert.is(deltas.join(''), text); // encode prepended '▁', the first-space rule took it off again
  }
});

test('random token sequences: deltas + flush == the full decode (BOS prompt, both skip settings)', () => {
  const rand = mulberry32(1234);
  for (let trial = 0; trial < 300; trial++) {
    const skip = trial % 2 === 0;
    // Bias towards byte tokens (3..258) so split and invalid UTF-8 sequences are common.
    const output = Array.from({ length: 1 + Math.floor(rand() * 40) }, () => (rand() < 0.6 ? 3 + Math.floor(rand() * 256) : Math.floor(rand() * 512)));
    const { text, detok } = stream([BOS], output, skip);
    const expected = decodeInContext([BOS], output, skip);
    assert.is(text, expected, `trial ${trial} skip=${skip} output=${JSON.stringify(output)}`);
    assert.is(detok.text, text);
    if (skip) assert.is(text, tokenizer.decode(output, { skipSpecialTokens: true }));
  }
});

test('random outputs after real prompts (long, unicode, ending mid-word) match decode in context', () => {
  const rand = mulberry32(99);
  const prompts = [
    tokenizer.encode('Once upon a time, there was a little girl named Lily. She loved to play'),
    tokenizer.encode('世界世界世界 😀'), // ends in byte tokens: the context must not start mid-character
    tokenizer.encode('x'),
    [...tokenizer.encode('Hello'), 2, 2, 2, 2, 2, 2], // only special tokens at the end: the context grows until it has text
    [],
  ];
  for (let trial = 0; trial < 200; trial++) {
    const prompt = prompts[trial % prompts.length]!;
    const skip = trial % 3 !== 0;
    const output = Array.from({ length: 1 + Math.floor(rand() * 30) }, () => (rand() < 0.5 ? 3 + Math.floor(rand() * 256) : Math.floor(rand() * 512)));
    const { text } = stream(prompt, output, skip);
    assert.is(text, decodeInContext(prompt, output, skip), `trial ${trial} prompt=${prompt.length} output=${JSON.stringify(output)}`);
  }
});

test('special tokens mid-stream: kept as text, or skipped without eating the next space', () => {
  const output = [403, 2, 407]; // ▁Once </s> ▁upon
  assert.is(stream([BOS], output, false).text, ' Once</s> upon');
  assert.is(stream([BOS], output, true).text, 'Once upon');
});

test('a long output keeps the decode window short (cost per token does not grow)', () => {
  const output = tokenizer.encode('Once upon a time there was a girl. '.repeat(60), { addSpecialTokens: false });
  let numDecodedTokens = 0;
  const counting = Object.create(tokenizer) as Tokenizer;
  counting.decode = (ids, options) => {
    numDecodedTokens += ids.length;
    return tokenizer.decode(ids, options);
  };
  const detok = new IncrementalDetokenizer(counting, [BOS], { skipSpecialTokens: true });
  for (const id of output) detok.push(id);
  assert.is(detok.text + detok.flush(), tokenizer.decode(output));
  assert.ok(numDecodedTokens < output.length * 8, `${numDecodedTokens} tokens decoded for ${output.length} outputs`);
});

test.run();
