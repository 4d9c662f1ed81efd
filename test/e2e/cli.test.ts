// The real CLI with stories260K: devices, generate (exact published greedy text), chat, errors.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { runCli } from '../helpers/cli.js';
import { PUBLISHED_GREEDY_TEXT, STORIES } from '../helpers/engine.js';

test('devices lists the adapter with its limits, and --json parses', async () => {
  const text = await runCli(['devices']);
  assert.is(text.code, 0, text.stderr);
  assert.match(text.stdout, /\[0\] /);
  assert.match(text.stdout, /maxStorageBufferBindingSize: \d+/);
  const json = await runCli(['devices', '--json']);
  const list = JSON.parse(json.stdout) as { index: number; limits: Record<string, number>; features: string[] }[];
  assert.is(list[0]!.index, 0);
  assert.ok((list[0]!.limits.maxBufferSize ?? 0) > 0);
  assert.ok(Array.isArray(list[0]!.features));
});

test('generate from an empty prompt (BOS alone) prints exactly the published greedy text', async () => {
  const r = await runCli(['generate', STORIES, '--prompt', '', '--max-tokens', '64', '--dtype', 'f32', '--kv-cache-blocks', '16']);
  assert.is(r.code, 0, r.stderr);
  assert.ok(r.stdout.startsWith(PUBLISHED_GREEDY_TEXT), r.stdout);
  assert.match(r.stderr, /tok\/s/);
  assert.not.match(r.stdout, /tok\/s/);
});

test('generate honours --prompt, sampling flags and a seed (same seed, same text)', async () => {
  const args = [
    'generate',
    STORIES,
    '--prompt',
    'The dog',
    '--max-tokens',
    '20',
    '--temperature',
    '0.9',
    '--top-k',
    '40',
    '--seed',
    '7',
    '--kv-cache-blocks',
    '16',
  ];
  const a = await runCli(args);
  const b = await runCli(args);
  assert.is(a.code, 0, a.stderr);
  assert.ok(a.stdout.trim().length > 0);
  assert.is(a.stdout, b.stdout);
});

test('chat reads lines from stdin and streams answers', async () => {
  const r = await runCli(['chat', STORIES, '--max-tokens', '12', '--kv-cache-blocks', '16', '--temperature', '0'], { input: 'Once upon a time\n\n' });
  assert.is(r.code, 0, r.stderr);
  assert.ok(r.stdout.length > 10, r.stdout);
});

test('a model that is not there, or a bad flag, is a clear error and exit 1', async () => {
  const missing = await runCli(['generate', '/nonexistent/model', '--prompt', 'x']);
  assert.is(missing.code, 1);
  assert.match(missing.stderr, /error: /);
  const badTp = await runCli(['generate', STORIES, '--devices', '0,0,0', '--prompt', 'x']);
  assert.is(badTp.code, 1);
  assert.match(badTp.stderr, /not divisible by tp 3/);
});

test.run();
