// LMDeploy's --quant-policy on the real CLI: 8 reaches the engine as an int8 KV cache (its startup line)
// and keeps the greedy story; 3, or a --kv-cache-dtype that contradicts it, is a clear error.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { resolveKvCacheDtype } from '../../src/cli/engine-options.js';
import { runCli } from '../helpers/cli.js';
import { STORIES } from '../helpers/engine.js';

test('generate --quant-policy 8 runs an int8 KV cache (engine startup line) and keeps the greedy story', async () => {
  const r = await runCli(['generate', STORIES, '--prompt', '', '--max-tokens', '24', '--dtype', 'f32', '--kv-cache-blocks', '16', '--quant-policy', '8']);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stderr, /kv_blocks=16x64 kv_dtype=int8 /);
  assert.ok(r.stdout.startsWith('Once upon a time, there was a little girl named Lily.'), r.stdout);
});

test('--quant-policy 3 and --quant-policy 4 with --kv-cache-dtype f16 are clear errors, exit 1', async () => {
  const bad = await runCli(['generate', STORIES, '--prompt', 'x', '--quant-policy', '3']);
  assert.is(bad.code, 1);
  assert.match(bad.stderr, /Invalid values:\s+Argument: quant-policy, Given: 3, Choices: 0, 4, 8/);
  const conflict = await runCli(['generate', STORIES, '--prompt', 'x', '--quant-policy', '4', '--kv-cache-dtype', 'f16']);
  assert.is(conflict.code, 1);
  assert.match(conflict.stderr, /error: --quant-policy 4 stores an int4 KV cache but --kv-cache-dtype is f16; give one of them/);
});

test('resolveKvCacheDtype: 0 keeps --kv-cache-dtype, 4/8 pick int4/int8, agreeing flags pass, others throw', () => {
  assert.is(resolveKvCacheDtype(undefined, undefined), 'f32');
  assert.is(resolveKvCacheDtype('f16', 0), 'f16');
  assert.is(resolveKvCacheDtype('int4', 0), 'int4');
  assert.is(resolveKvCacheDtype(undefined, 8), 'int8');
  assert.is(resolveKvCacheDtype('int8', 8), 'int8');
  assert.is(resolveKvCacheDtype(undefined, 4), 'int4');
  assert.throws(() => resolveKvCacheDtype('int8', 4), /--quant-policy 4 stores an int4 KV cache but --kv-cache-dtype is int8/);
  assert.throws(() => resolveKvCacheDtype(undefined, 3), /--quant-policy must be one of 0, 4, 8/);
});

test.run();
