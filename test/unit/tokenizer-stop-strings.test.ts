// Stop strings over chunked text, against a direct search of the whole text.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { StopStringMatcher } from '../../src/tokenizer/stop-strings.js';

function run(stops: string[], chunks: string[]) {
  const matcher = new StopStringMatcher(stops);
  const emits: string[] = [];
  let stopped = false;
  for (const chunk of chunks) {
    const r = matcher.push(chunk);
    emits.push(r.emit);
    if (r.stopped) {
      stopped = true;
      break;
    }
  }
  const tail = stopped ? '' : matcher.flush();
  return { emits, stopped, tail, text: emits.join('') + tail };
}

test('a stop split across chunks is caught: "He" "llo wor" "ld" with stop "lo w"', () => {
  const r = run(['lo w'], ['He', 'llo wor', 'ld']);
  assert.equal(r.emits, ['He', 'l']);
  assert.ok(r.stopped);
  assert.is(r.text, 'Hel');
});

test('a stop split over many one-character chunks', () => {
  const r = run(['lo w'], [...'Hello world']);
  assert.ok(r.stopped);
  assert.is(r.text, 'Hel');
  assert.equal(r.emits.slice(0, 4), ['H', 'e', '', 'l']); // an "l" could start "lo w": held until the next
});

test('with several stops the first to complete wins, not the first listed', () => {
  assert.is(run(['world', 'lo'], ['Hello world']).text, 'Hel');
  assert.is(run(['wor', 'o w'], ['Hello', ' wor']).text, 'Hell');
  // "bc" completes inside "abc" before the longer "abcd" could: generation ends at the first match.
  assert.is(run(['abcd', 'bc'], ['xab', 'c', 'd']).text, 'xa');
  assert.is(run(['abcd', 'bc'], ['xabcd']).text, 'xa'); // the same in one chunk: chunking does not matter
});

test('a partial stop is held back, then released when it turns out not to be one', () => {
  const matcher = new StopStringMatcher(['</answer>']);
  assert.equal(matcher.push('The answer is </ans'), { emit: 'The answer is ', stopped: false });
  assert.equal(matcher.push('wer'), { emit: '', stopped: false });
  assert.equal(matcher.push('ing> yes'), { emit: '</answering> yes', stopped: false });
  assert.is(matcher.flush(), '');
});

test('held text is returned by flush at the end of generation', () => {
  const matcher = new StopStringMatcher(['STOP', '\n\n']);
  assert.equal(matcher.push('end of text\nST'), { emit: 'end of text\n', stopped: false });
  assert.is(matcher.flush(), 'ST');
  assert.is(matcher.flush(), '');
});

test('a stop at the very start emits nothing, and nothing after it', () => {
  const matcher = new StopStringMatcher(['STOP']);
  assert.equal(matcher.push('STOP and more'), { emit: '', stopped: true, stop: 'STOP' });
  assert.equal(matcher.push('later text'), { emit: '', stopped: true });
  assert.is(matcher.flush(), '');
  assert.equal(run(['STOP'], ['ST', 'OP', 'x']).emits, ['', '']);
});

test('no stops (or only empty ones) pass text straight through', () => {
  assert.equal(new StopStringMatcher([]).push('anything'), { emit: 'anything', stopped: false });
  assert.equal(new StopStringMatcher(['']).push('anything'), { emit: 'anything', stopped: false });
});

test('multi-code-unit characters: a stop made of emoji is matched and never half-held', () => {
  assert.is(run(['😀😀'], ['a😀', '😀b']).text, 'a');
  assert.is(run(['😀😀'], ['a😀', 'b😀']).text, 'a😀b😀');
});

test('random texts and chunkings agree with scanning the whole text', () => {
  let seed = 7;
  const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000;
  const pick = (alphabet: string, n: number) => Array.from({ length: n }, () => alphabet[Math.floor(rand() * alphabet.length)]).join('');
  for (let trial = 0; trial < 2000; trial++) {
    const text = pick('abc ', 1 + Math.floor(rand() * 30));
    const stops = Array.from({ length: 1 + Math.floor(rand() * 3) }, () => pick('abc ', 1 + Math.floor(rand() * 4)));
    const chunks: string[] = [];
    for (let i = 0; i < text.length; ) {
      const n = Math.floor(rand() * 5); // empty chunks too
      chunks.push(text.slice(i, i + n));
      i += n;
    }
    // Reference: the stop that completes first in the whole text (longest on a tie).
    let expected = text;
    let stopped = false;
    for (let end = 1; end <= text.length && !stopped; end++) {
      const starts = stops.filter((s) => text.slice(0, end).endsWith(s)).map((s) => end - s.length);
      if (starts.length) {
        expected = text.slice(0, Math.min(...starts));
        stopped = true;
      }
    }
    const r = run(stops, chunks);
    const ctx = `trial ${trial}: ${JSON.stringify({ text, stops, chunks })}`;
    assert.is(r.text, expected, ctx);
    assert.is(r.stopped, stopped, ctx);
  }
});

test.run();
