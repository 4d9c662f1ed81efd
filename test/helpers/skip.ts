// Skips with a reason that reaches scripts/run-tests.mjs. uvu has no skip-with-reason of its own (and
// its test.skip never says why), so a test that cannot run here is not registered with uvu at all:
// the file calls skip() instead, which prints one line that the runner counts and lists at the end:
//   [skip] <test name>: <reason>
// testIf(condition, reason) registers the test or reports it skipped. Never register a test that
// returns early and passes: skip it with a reason, or make it fail.
import { test } from 'uvu';

/** The prefix run-tests.mjs looks for at the start of a stdout line. */
export const SKIP_MARKER = '[skip]';

/** Reports `name` as skipped because of `reason` (one line; newlines are folded). */
export function skip(name: string, reason: string): void {
  const oneLine = (s: string) => s.replace(/\s+/g, ' ').trim();
  process.stdout.write(`${SKIP_MARKER} ${oneLine(name)}: ${oneLine(reason) || 'no reason given'}\n`);
}

/**
 * uvu's `test` when `condition` holds, else a stand-in that reports the test skipped with `reason`:
 *   testIf(gpu.hasF16, 'the adapter lacks shader-f16')('native f16 matches', async () => { ... });
 */
export function testIf(condition: boolean, reason: string): (name: string, fn: () => void | Promise<void>) => void {
  return condition ? (name, fn) => test(name, fn) : (name) => skip(name, reason);
}
