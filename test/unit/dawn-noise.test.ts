// The CLI's stderr filter (src/gpu/dawn-noise.ts, src/cli/stderr-filter.ts): Dawn's "artificially
// reduced" lines are dropped whole, however the pipe splits them; every other byte passes, partial
// lines (progress bars redrawn with \r) at once; debug logging turns the filter off.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { wantsDebug } from '../../src/cli/stderr-filter.js';
import { DAWN_NOISE_LINE, LineFilter } from '../../src/gpu/dawn-noise.js';

const NOISE = [
  'Warning: maxDynamicUniformBuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.',
  'Warning: maxDynamicStorageBuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.',
];

function run(chunks: string[]): { out: string; writes: string[] } {
  const writes: string[] = [];
  const filter = new LineFilter((text) => writes.push(text));
  for (const c of chunks) filter.push(c);
  filter.end();
  return { out: writes.join(''), writes };
}

test('the two lavapipe lines match; other warnings do not', () => {
  for (const line of NOISE) assert.ok(DAWN_NOISE_LINE.test(line), line);
  assert.not.ok(DAWN_NOISE_LINE.test('Warning: something else entirely'));
  assert.not.ok(DAWN_NOISE_LINE.test(`${NOISE[0]} and more`));
  assert.not.ok(DAWN_NOISE_LINE.test('Error: device lost'));
});

test('noise lines are dropped, whatever the chunking; the rest passes unchanged', () => {
  const text = `${NOISE[0]}\n{"level":"info","msg":"listening"}\n${NOISE[1]}\nWarning: maxDynamicFoo is fine\nlast line without newline`;
  const expected = '{"level":"info","msg":"listening"}\nWarning: maxDynamicFoo is fine\nlast line without newline';
  assert.is(run([text]).out, expected);
  for (const size of [1, 3, 7, 19, 64]) {
    const chunks: string[] = [];
    for (let i = 0; i < text.length; i += size) chunks.push(text.slice(i, i + size));
    assert.is(run(chunks).out, expected, `chunks of ${size}`);
  }
});

test('a partial line that cannot be noise goes out at once (progress bars)', () => {
  const writes: string[] = [];
  const filter = new LineFilter((text) => writes.push(text));
  filter.push('\r\x1b[K[model] [####------]  40%');
  assert.equal(writes, ['\r\x1b[K[model] [####------]  40%'], 'no newline needed');
  filter.push('\r\x1b[K[model] loaded\n');
  assert.is(writes.length, 2);
  filter.push('Warn');
  assert.is(writes.length, 2, 'a new line that may become a noise line is held');
  filter.push('ing: other\n');
  assert.is(writes.at(-1), 'Warning: other\n');
});

test('debug logging (flag or LOG_LEVEL) turns the filter off', () => {
  assert.ok(wantsDebug(['serve', 'm', '--log-level', 'debug'], {}));
  assert.ok(wantsDebug(['serve', 'm', '--log-level=debug'], {}));
  assert.ok(wantsDebug(['devices'], { LOG_LEVEL: 'debug' }));
  assert.not.ok(wantsDebug(['serve', 'm', '--log-level', 'info'], { LOG_LEVEL: 'debug' }), 'the flag wins');
  assert.not.ok(wantsDebug(['devices'], {}));
});

test.run();
