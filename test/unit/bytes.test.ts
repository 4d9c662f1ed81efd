// The shared byte formatter and parser (src/common/bytes.ts) and the shared progress bar
// (src/common/progress.ts) as the hub download uses it: unknown totals, clearing for log lines.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { formatBytes, parseBytes } from '../../src/common/bytes.js';
import { ProgressBar } from '../../src/common/progress.js';

test('formatBytes: decimal by default, binary on request, carrying at the unit boundary', () => {
  assert.is(formatBytes(0), '0 B');
  assert.is(formatBytes(999.6), '1.0 kB');
  assert.is(formatBytes(300_000), '300.0 kB');
  assert.is(formatBytes(152_600_000), '152.6 MB');
  assert.is(formatBytes(999_960), '1.0 MB');
  assert.is(formatBytes(7_241_732_096), '7.24 GB');
  assert.is(formatBytes(1536, 'binary'), '1.5 KiB');
  assert.is(formatBytes(128 * 1024 ** 2, 'binary'), '128.0 MiB');
  assert.is(formatBytes(2 * 1024 ** 3, 'binary'), '2.00 GiB');
});

test('parseBytes: units B..TiB in any case, decimals, errors that show the form', () => {
  assert.is(parseBytes('4096'), 4096);
  assert.is(parseBytes('24GiB'), 24 * 1024 ** 3);
  assert.is(parseBytes(' 512 mib '), 512 * 1024 ** 2);
  assert.is(parseBytes('1.5GB'), 1.5e9);
  assert.is(parseBytes('.5 kB'), 500);
  for (const bad of ['', 'GiB', '1.2.3GB', '12 parsecs', '-1GB']) {
    assert.throws(() => parseBytes(bad), /use e\.g\. 24GiB or 512MiB/, bad);
  }
});

function recorder(isTTY: boolean) {
  const out = { text: '' };
  const clock = { t: 0 };
  const stream = {
    isTTY,
    write: (s: string) => {
      out.text += s;
    },
  };
  return { out, clock, stream, now: () => clock.t };
}

test('ProgressBar on a TTY: no percentage for an unknown total, clear() makes room for a log line', () => {
  const r = recorder(true);
  const bar = new ProgressBar({ label: '[hub]', stream: r.stream, now: r.now });
  bar.start(null, 1000);
  r.clock.t = 1000;
  bar.advance(2_000_000, 'model.safetensors');
  assert.is(r.out.text, '\r[hub] 2.0 MB 2.0 MB/s model.safetensors\x1b[K');
  bar.clear();
  assert.ok(r.out.text.endsWith('\x1b[K\r\x1b[K'));
  bar.clear();
  assert.ok(!r.out.text.endsWith('\r\x1b[K\r\x1b[K'), 'nothing to clear twice');
  bar.finish('downloaded model.safetensors (2.0 MB) in 1.0 s');
  assert.ok(r.out.text.endsWith('\r\x1b[K[hub] downloaded model.safetensors (2.0 MB) in 1.0 s\n'));
});

test('ProgressBar off a TTY: only the summary line', () => {
  const r = recorder(false);
  const bar = new ProgressBar({ label: '[hub]', stream: r.stream, now: r.now });
  bar.start(10, 0);
  bar.advance(10, 'x');
  bar.clear();
  bar.finish('done');
  assert.is(r.out.text, '[hub] done\n');
  assert.is(bar.bytes, 10);
});

test.run();
