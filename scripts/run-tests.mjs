#!/usr/bin/env node
// Runs every uvu test file in its own Node process (a hung GPU or a leaked server cannot spill into
// the next file), in a stable order, then prints one closing line: "N passed, N failed".
// Per-file lines start with "[pass]"/"[FAIL]", never "ok", so log readers do not take them for TAP.
// Usage: node scripts/run-tests.mjs [dir|file ...]   (default: test/unit test/gpu test/e2e)
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';

const roots = process.argv.slice(2).length ? process.argv.slice(2) : ['test/unit', 'test/gpu', 'test/e2e'];
const perFileTimeoutMs = Number(process.env.TEST_FILE_TIMEOUT_MS ?? 300_000);

function collect(path) {
  if (!existsSync(path)) return [];
  if (statSync(path).isFile()) return [path];
  return readdirSync(path)
    .sort()
    .flatMap((name) => {
      const child = join(path, name);
      if (statSync(child).isDirectory()) return name === 'fixtures' ? [] : collect(child);
      return /\.test\.ts$/.test(name) ? [child] : [];
    });
}

const files = roots.flatMap(collect);
let passed = 0,
  failed = 0,
  skipped = 0;
const failures = [];
const started = Date.now();
for (const file of files) {
  const t0 = Date.now();
  const res = spawnSync(process.execPath, ['--import', 'tsx', file], {
    encoding: 'utf8',
    timeout: perFileTimeoutMs,
    env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp', FORCE_COLOR: '0' },
    maxBuffer: 64 * 1024 * 1024,
  });
  const out = (res.stdout ?? '') + (res.stderr ?? '');
  const plain = out.replace(/\x1b\[[0-9;]*m/g, '');
  const total = Number(/Total:\s+(\d+)/.exec(plain)?.[1] ?? 0);
  const ok = Number(/Passed:\s+(\d+)/.exec(plain)?.[1] ?? 0);
  const skip = Number(/Skipped:\s+(\d+)/.exec(plain)?.[1] ?? 0);
  const fileFailed = res.status !== 0 || total === 0 || ok + skip < total;
  passed += ok;
  skipped += skip;
  const nFailed = fileFailed ? Math.max(1, total - ok - skip) : 0;
  failed += nFailed;
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  console.log(`${fileFailed ? '[FAIL]' : '[pass]'} ${file} (${ok}/${total} tests, ${secs}s)`);
  if (fileFailed) {
    const why = res.error ? `${res.error.message}\n` : res.signal ? `killed by ${res.signal}\n` : '';
    failures.push(`--- ${file}\n${why}${plain.slice(-6000)}`);
  }
}
for (const f of failures) console.log(f);
console.log(`\n${files.length} files in ${((Date.now() - started) / 1000).toFixed(1)}s`);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 || files.length === 0 ? 1 : 0);
