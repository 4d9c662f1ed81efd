#!/usr/bin/env node
// Runs every uvu test file in its own Node process (a hung GPU or a leaked server cannot spill into
// the next file): test/unit files in parallel (one process per CPU), then the GPU and e2e files one
// at a time (each saturates the CPU by itself). Prints one line per file with its time, the skipped
// tests with their reasons, and a closing line "N passed, N failed, N skipped".
// Per-file lines start with "[pass]"/"[FAIL]"/"[skip]", never "ok", so log readers do not take them for TAP.
//
// Skips: a test that cannot run here is not registered with uvu; its file prints
//   [skip] <test name>: <reason>
// (test/helpers/skip.ts), which is counted here. uvu's own test.skip is counted too, without a reason.
// A file fails when its process exits non-zero, times out, or neither ran nor skipped anything; the
// run fails when any file failed or no test passed at all.
//
// Usage: node scripts/run-tests.mjs [dir|file ...]   (default: test/unit test/gpu test/e2e)
// Env: TEST_CONCURRENCY (parallel unit files; default: available CPUs), TEST_FILE_TIMEOUT_MS (default 300000).
// The files run on the Node that runs this script (process.execPath).
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, sep } from 'node:path';

const roots = process.argv.slice(2).length ? process.argv.slice(2) : ['test/unit', 'test/gpu', 'test/e2e'];
const perFileTimeoutMs = Number(process.env.TEST_FILE_TIMEOUT_MS ?? 300_000);
const concurrency = Math.max(1, Number(process.env.TEST_CONCURRENCY) || availableParallelism());
const SKIP_LINE = /^\[skip\] (.*)$/gm;

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

/** Unit tests need no GPU and little CPU each: they may share the machine. */
const isParallel = (file) => file.split(sep).join('/').split('/').includes('unit');

function runFile(file) {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', file], {
      env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp', FORCE_COLOR: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let output = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d) => {
      stdout += d;
      output += d;
    });
    child.stderr.on('data', (d) => {
      output += d;
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, perFileTimeoutMs);
    let spawnError = null;
    child.on('error', (err) => {
      spawnError = err;
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve(summarize(file, { code, signal, timedOut, spawnError, stdout, output, secs: (Date.now() - t0) / 1000 }));
    });
  });
}

function summarize(file, run) {
  const plain = run.output.replace(/\x1b\[[0-9;]*m/g, '');
  const total = Number(/Total:\s+(\d+)/.exec(plain)?.[1] ?? 0);
  const ok = Number(/Passed:\s+(\d+)/.exec(plain)?.[1] ?? 0);
  const uvuSkipped = Number(/Skipped:\s+(\d+)/.exec(plain)?.[1] ?? 0);
  const skips = [...run.stdout.replace(/\x1b\[[0-9;]*m/g, '').matchAll(SKIP_LINE)].map((m) => m[1]);
  for (let i = 0; i < uvuSkipped; i++) skips.push('(a uvu test.skip: no reason given)');
  const failedFile = run.code !== 0 || run.timedOut || run.spawnError !== null || (total === 0 && skips.length === 0) || ok + uvuSkipped < total;
  const nFailed = failedFile ? Math.max(1, total - ok - uvuSkipped) : 0;
  let why = '';
  if (run.spawnError) why = `${run.spawnError.message}\n`;
  else if (run.timedOut) why = `timed out after ${perFileTimeoutMs / 1000}s (TEST_FILE_TIMEOUT_MS)\n`;
  else if (run.signal) why = `killed by ${run.signal}\n`;
  else if (total === 0 && skips.length === 0) why = 'no test ran and none was reported skipped\n';
  return { file, total, ok, nFailed, skips, failedFile, secs: run.secs, detail: failedFile ? `${why}${plain.slice(-6000)}` : '' };
}

function report(r) {
  const tag = r.failedFile ? '[FAIL]' : r.ok === 0 && r.skips.length > 0 ? '[skip]' : '[pass]';
  const skipped = r.skips.length ? `, ${r.skips.length} skipped` : '';
  console.log(`${tag} ${r.file} (${r.ok}/${r.total} tests${skipped}, ${r.secs.toFixed(1)}s)`);
}

/** Runs `files` with at most `limit` at a time, reporting each as it finishes. */
async function runPool(files, limit) {
  const results = [];
  let next = 0;
  const worker = async () => {
    while (next < files.length) {
      const r = await runFile(files[next++]);
      report(r);
      results.push(r);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, files.length) }, worker));
  return results;
}

const files = roots.flatMap(collect);
const parallel = files.filter(isParallel);
const serial = files.filter((f) => !isParallel(f));
const started = Date.now();
if (parallel.length) console.log(`${parallel.length} unit test files, ${Math.min(concurrency, parallel.length)} at a time:`);
const results = await runPool(parallel, concurrency);
if (serial.length) console.log(`${serial.length} GPU/e2e test files, one at a time:`);
results.push(...(await runPool(serial, 1)));

const passed = results.reduce((n, r) => n + r.ok, 0);
const failed = results.reduce((n, r) => n + r.nFailed, 0);
const skipped = results.flatMap((r) => r.skips.map((s) => `[skip] ${r.file}: ${s}`));
for (const r of results) if (r.failedFile) console.log(`--- ${r.file}\n${r.detail}`);
console.log(`\n${files.length} files in ${((Date.now() - started) / 1000).toFixed(1)}s on Node ${process.version}`);
if (skipped.length) console.log(`skipped:\n${skipped.join('\n')}`);
console.log(`${passed} passed, ${failed} failed, ${skipped.length} skipped`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
