// Dawn's native "artificially reduced ... to fit dynamic offset allocation limit" warnings (printed on
// lavapipe by every process that enumerates adapters) stay off the CLI's stderr below debug level, and
// show at LOG_LEVEL=debug (src/cli/stderr-filter.ts). Runs the built CLI, like test/e2e/cli.test.ts.
import { spawn } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CLI, ROOT } from '../helpers/cli.js';

function devices(env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, 'devices'], { cwd: ROOT, env: { ...process.env, XDG_RUNTIME_DIR: '/tmp', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

test('devices: no Dawn limit warnings on stderr at the default level; shown at debug', async () => {
  const quiet = await devices({ LOG_LEVEL: 'info' });
  assert.is(quiet.code, 0, quiet.stderr);
  assert.match(quiet.stdout, /\[0\] /);
  assert.not.match(quiet.stderr, /artificially reduced/);
  const debug = await devices({ LOG_LEVEL: 'debug' });
  assert.is(debug.code, 0, debug.stderr);
  // Only lavapipe (and other adapters with huge dynamic-buffer limits) makes Dawn say it.
  if (/llvmpipe|lavapipe/i.test(debug.stdout)) assert.match(debug.stderr, /artificially reduced from \d+ to \d+/);
});

test.run();
