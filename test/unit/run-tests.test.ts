// scripts/run-tests.mjs on fixture files (test/fixtures/run-tests): per-file lines with times, skips
// counted and listed with their reasons, the closing "N passed, N failed, N skipped", and the exit code.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';

const FIXTURES = 'test/fixtures/run-tests';

function runTests(...files: string[]): Promise<{ code: number; lines: string[] }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['scripts/run-tests.mjs', ...files.map((f) => `${FIXTURES}/${f}.test.ts`)],
      { env: { ...process.env, CI: '' }, timeout: 60_000 },
      (err, stdout) => resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, lines: stdout.split('\n') }),
    );
  });
}

const fileLine = (lines: string[], file: string) => lines.find((l) => l.includes(`${FIXTURES}/${file}.test.ts (`)) ?? '';

test('passes, failures and skips with reasons are reported per file and in the closing line', async () => {
  const { code, lines } = await runTests('passes', 'fails', 'only-skips', 'empty');
  assert.match(fileLine(lines, 'passes'), /^\[pass\] \S+ \(2\/2 tests, 2 skipped, \d+\.\ds\)$/);
  assert.match(fileLine(lines, 'fails'), /^\[FAIL\] \S+ \(1\/2 tests, \d+\.\ds\)$/);
  assert.match(fileLine(lines, 'only-skips'), /^\[skip\] \S+ \(0\/0 tests, 1 skipped, \d+\.\ds\)$/);
  assert.match(fileLine(lines, 'empty'), /^\[FAIL\] \S+ \(0\/0 tests, \d+\.\ds\)$/, 'a file that neither ran nor skipped anything fails');
  assert.ok(lines.includes('no test ran and none was reported skipped'), 'and says why');
  const skips = lines.filter((l) => l.startsWith(`[skip] ${FIXTURES}/`) && l.includes('.test.ts: '));
  assert.equal(skips, [
    `[skip] ${FIXTURES}/passes.test.ts: three: the fixture cannot run it`,
    `[skip] ${FIXTURES}/passes.test.ts: four: a reason spread over lines`,
    `[skip] ${FIXTURES}/only-skips.test.ts: needs a browser: none installed`,
  ]);
  assert.is(lines.filter(Boolean).at(-1), '3 passed, 2 failed, 3 skipped');
  assert.is(code, 1);
  assert.not.ok(
    lines.some((l) => /^ok\b/.test(l)),
    'no line starts with "ok" (TAP readers)',
  );
});

test('exit 0 when nothing failed, with the skipped count always printed', async () => {
  const { code, lines } = await runTests('passes');
  assert.is(lines.filter(Boolean).at(-1), '2 passed, 0 failed, 2 skipped');
  assert.is(code, 0);
});

test('exit 1 when no test ran, even if nothing failed', async () => {
  const { code, lines } = await runTests('only-skips');
  assert.is(lines.filter(Boolean).at(-1), '0 passed, 0 failed, 1 skipped');
  assert.is(code, 1);
});

test.run();
