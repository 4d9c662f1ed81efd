// Swagger UI at /docs rendered by a real headless Chromium against a fake-engine server: the
// operations must appear in the DOM (so the local swagger-ui-dist assets load and /openapi.json
// parses), and a screenshot is kept in test-artifacts/docs.png. Without Chromium the tests are reported
// skipped, except in CI (CI set), where that fails.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFakeServer } from '../helpers/fake-engine.js';
import { skip } from '../helpers/skip.js';

/** The browser (Debian's chromium package); CHROMIUM=<path> points elsewhere. */
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

function runChromium(args: string[], timeoutMs = 45_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const profile = mkdtempSync(join(tmpdir(), 'docs-chromium-'));
  const child = spawn(
    CHROMIUM,
    [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
      '--disable-dev-shm-usage',
      `--user-data-dir=${profile}`,
      '--virtual-time-budget=10000',
      ...args,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve) => {
    child.on('close', (code) => {
      clearTimeout(timer);
      rmSync(profile, { recursive: true, force: true });
      resolve({ code, stdout, stderr });
    });
  });
}

const MISSING = `${CHROMIUM} not found: apt-get install chromium (scripts/setup.sh does it as root)`;
if (!existsSync(CHROMIUM) && process.env.CI) {
  // CI installs Chromium (scripts/setup.sh fails without it): a missing browser there is a broken setup.
  test('Chromium is installed in CI', () => {
    assert.unreachable(`${MISSING}; CI=${process.env.CI} requires the browser test to run`);
  });
} else if (!existsSync(CHROMIUM)) {
  skip('Swagger UI at /docs renders every operation from local assets', MISSING);
  skip('a screenshot of /docs is saved as an artifact', MISSING);
} else {
  let server: Awaited<ReturnType<typeof startFakeServer>>;
  test.before(async () => {
    server = await startFakeServer({}, { apiKeys: ['secret'] });
  });
  test.after(async () => {
    await server.close();
  });

  test('Swagger UI at /docs renders every operation from local assets', async () => {
    const { stdout, stderr, code } = await runChromium(['--dump-dom', `${server.url}/docs`]);
    assert.is(code, 0, stderr.slice(-2000));
    assert.match(stdout, /class="[^"]*swagger-ui/, 'the Swagger UI root rendered');
    const opblocks = stdout.match(/class="opblock opblock-(get|post)[^"]*"/g) ?? [];
    assert.ok(opblocks.length >= 7, `${opblocks.length} operation blocks rendered`);
    for (const path of ['/v1/chat/completions', '/v1/completions', '/v1/chat/interactive', '/v1/models', '/v1/encode', '/health', '/metrics']) {
      assert.match(stdout, new RegExp(`data-path="${path.replace(/\//g, '\\/')}"`), `operation ${path} rendered`);
    }
    const requested = server.logLines.filter((l) => / GET \/(docs|openapi\.json)/.test(l));
    assert.ok(
      server.logLines.some((l) => /GET \/openapi\.json 200/.test(l)),
      `the page fetched /openapi.json: ${requested.join('\n')}`,
    );
  });

  test('a screenshot of /docs is saved as an artifact', async () => {
    mkdirSync('test-artifacts', { recursive: true });
    const file = join('test-artifacts', 'docs.png');
    rmSync(file, { force: true });
    const { code, stderr } = await runChromium([`--screenshot=${file}`, '--window-size=1280,2000', '--hide-scrollbars', `${server.url}/docs`]);
    assert.is(code, 0, stderr.slice(-2000));
    assert.ok(existsSync(file) && statSync(file).size > 10_000, 'a non-trivial PNG was written');
  });
}

test.run();
