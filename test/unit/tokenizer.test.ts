// Tokenizer against stories260K's tokenizer.json: ids checked by hand against the vocab, round trips
// through byte fallback, per-token bytes checked against the full decode.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer, type TokenizerJson } from '../../src/tokenizer/tokenizer.js';
import { IncrementalDetokenizer } from '../../src/tokenizer/detokenizer.js';

const MODEL_DIR = join(process.cwd(), '../shared/models/stories260K');
const vocab = (JSON.parse(readFileSync(join(MODEL_DIR, 'tokenizer.json'), 'utf8')) as { model: { vocab: Record<string, number> } }).model.vocab;
const tokenizer = await Tokenizer.fromModelDir(MODEL_DIR);

const ROUND_TRIP_TEXTS = [
  'Once upon a time',
  ' upon',
  '  two leading, two trailing  ',
  'naïve café, crème brûlée, Ångström',
  '日本語のテキストと中文',
  'emoji 😀👍🏽 and a flag 🇫🇷 and 👩‍👩‍👧',
  'Ελληνικά и кириллица',
  'tabs\tand\nnewlines\n\nand\u00a0nbsp',
  'digits 0123456789 and "quotes" (parens) [brackets] {braces}',
  'x',
];

test('special token ids and sizes come from tokenizer.json and tokenizer_config.json', () => {
  assert.is(tokenizer.bosTokenId, 1);
  assert.equal(tokenizer.eosTokenIds, [2]);
  assert.is(tokenizer.vocabSize, 512);
  assert.ok(tokenizer.isSpecialToken(0) && tokenizer.isSpecialToken(1) && tokenizer.isSpecialToken(2));
  assert.not.ok(tokenizer.isSpecialToken(3));
  assert.not.ok(tokenizer.isSpecialToken(403));
  assert.is(tokenizer.idToToken(403), '▁Once');
  assert.is(tokenizer.idToToken(512), undefined);
  assert.not.ok(tokenizer.hasChatTemplate);
});

test('"Once upon a time" encodes to BOS + the vocab pieces, a leading "▁" on every word', () => {
  const expected = [1, vocab['▁Once'], vocab['▁upon'], vocab['▁a'], vocab['▁time']];
  assert.equal(expected, [1, 403, 407, 261, 378]); // the vocab as read by hand
  assert.equal(tokenizer.encode('Once upon a time'), expected);
  assert.equal(tokenizer.encode('Once upon a time', { addSpecialTokens: false }), expected.slice(1));
});

test('a leading space becomes its own "▁" piece', () => {
  assert.equal(tokenizer.encode(' upon'), [1, vocab['▁'], vocab['▁upon']]);
});

test('characters outside the vocab go through byte fallback', () => {
  // 世 = E4 B8 96; byte tokens <0x00>.. start at id 3.
  assert.equal(tokenizer.encode('世', { addSpecialTokens: false }), [vocab['▁'], 3 + 0xe4, 3 + 0xb8, 3 + 0x96]);
  assert.equal(tokenizer.encode('😀', { addSpecialTokens: false }), [vocab['▁'], 3 + 0xf0, 3 + 0x9f, 3 + 0x98, 3 + 0x80]);
});

test('decode(encode(x)) == x, with and without BOS, for unicode-heavy text', () => {
  for (const text of ROUND_TRIP_TEXTS) {
    assert.is(tokenizer.decode(tokenizer.encode(text), { skipSpecialTokens: true }), text, JSON.stringify(text));
    assert.is(tokenizer.decode(tokenizer.encode(text, { addSpecialTokens: false })), text, JSON.stringify(text));
  }
});

test('decode keeps special tokens unless asked to skip them, and ignores unknown ids', () => {
  assert.is(tokenizer.decode([1, 403, 2]), '<s> Once</s>');
  assert.is(tokenizer.decode([1, 403, 2], { skipSpecialTokens: true }), 'Once');
  assert.is(tokenizer.decode([]), '');
  assert.is(tokenizer.decode([403, 600, 407]), 'Once upon');
});

test('decode never applies clean_up_tokenization_spaces (it is not prefix-stable)', () => {
  const ids = tokenizer.encode('a . b , c', { addSpecialTokens: false });
  assert.is(tokenizer.decode(ids), 'a . b , c');
});

test('a text that already starts with BOS gets no second one', () => {
  const ids = tokenizer.encode('<s>Once');
  assert.equal(ids, [1, 403]);
  assert.equal(tokenizer.encode('<s>Once', { addSpecialTokens: false }), [1, 403]);
});

test('tokenBytes: byte tokens are their byte, "▁" is a space, added tokens their text', () => {
  assert.equal([...tokenizer.tokenBytes(3 + 0xe2)], [0xe2]);
  assert.equal([...tokenizer.tokenBytes(3)], [0x00]);
  assert.is(new TextDecoder().decode(tokenizer.tokenBytes(403)), ' Once');
  assert.is(new TextDecoder().decode(tokenizer.tokenBytes(1)), '<s>');
  assert.is(tokenizer.tokenBytes(9999).length, 0);
});

test('tokenBytes of every token of a text, joined, is the text with its prepended space', () => {
  for (const text of ROUND_TRIP_TEXTS) {
    const ids = tokenizer.encode(text, { addSpecialTokens: false });
    const bytes = ids.flatMap((id) => [...tokenizer.tokenBytes(id)]);
    assert.is(new TextDecoder().decode(Uint8Array.from(bytes)), ' ' + text, JSON.stringify(text));
  }
});

test('a missing tokenizer.json is reported with what to do', async () => {
  try {
    await Tokenizer.fromModelDir('/nonexistent-model-dir');
    assert.unreachable('should throw');
  } catch (err) {
    assert.match((err as Error).message, /no tokenizer\.json in \/nonexistent-model-dir.*save_pretrained/);
  }
});

/**
 * A GPT-2-style byte-level BPE (Qwen2, Llama-3 shape) small enough to write here: the 256 byte
 * characters as ids 0..255 (a byte's id is its value), three merges, one special token.
 */
function byteLevelTokenizer(): Tokenizer {
  const vocab: Record<string, number> = {};
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    vocab[String.fromCodePoint(printable ? b : next++)] = b;
  }
  Object.assign(vocab, { Ġt: 256, he: 257, Ġthe: 258 });
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  const json: TokenizerJson = {
    added_tokens: [{ id: 259, content: '<|endoftext|>', special: true }],
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: byteLevel,
    decoder: byteLevel,
    model: { type: 'BPE', unk_token: null, byte_fallback: false, vocab, merges: ['Ġ t', 'h e', 'Ġt he'] },
  };
  return new Tokenizer(json, { eos_token: '<|endoftext|>' }, null);
}

test('byte-level BPE: ids, round trip, tokenBytes and streaming all agree', () => {
  const tok = byteLevelTokenizer();
  const text = 'the cat 世界 😀 the end';
  const ids = tok.encode(text);
  assert.equal(ids.slice(0, 3), [116, 257, 32]); // t he Ġ
  assert.ok(ids.includes(258)); // Ġthe
  assert.is(tok.decode(ids), text);
  assert.is(tok.bosTokenId, null);
  assert.equal(tok.eosTokenIds, [259]);
  assert.is(tok.vocabSize, 260);
  assert.equal([...tok.tokenBytes(32)], [0x20]);
  assert.equal([...tok.tokenBytes(0xe4)], [0xe4]);
  assert.is(new TextDecoder().decode(tok.tokenBytes(258)), ' the');
  assert.is(new TextDecoder().decode(tok.tokenBytes(259)), '<|endoftext|>');
  assert.is(new TextDecoder().decode(Uint8Array.from(ids.flatMap((id) => [...tok.tokenBytes(id)]))), text);

  const detok = new IncrementalDetokenizer(tok, [], { skipSpecialTokens: true });
  const deltas = ids.map((id) => detok.push(id));
  assert.not.ok(deltas.some((d) => d.includes('\uFFFD')));
  assert.is(deltas.join('') + detok.flush(), text);
  let seed = 5;
  const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000;
  for (let trial = 0; trial < 200; trial++) {
    const skip = trial % 2 === 0;
    const output = Array.from({ length: 1 + Math.floor(rand() * 30) }, () => Math.floor(rand() * 260));
    const d = new IncrementalDetokenizer(tok, [], { skipSpecialTokens: skip });
    const streamed = output.map((id) => d.push(id)).join('') + d.flush();
    assert.is(streamed, tok.decode(output, { skipSpecialTokens: skip }), JSON.stringify(output));
  }
});

test.run();
