// `node dist/cli.js quantize` as a user runs it (needs the build): flags reach the quantizer, the
// folder is written (with and without duo scaling), and a bad flag exits 1 with an error naming it.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../helpers/cli.js';
import { STORIES } from '../helpers/engine.js';

let root = '';
test.before(async () => {
  root = await mkdtemp(join(tmpdir(), 'quantize-cli-'));
});
test.after(async () => {
  await rm(root, { recursive: true, force: true });
});

test('quantize --method awq --group-size 64 writes an AWQ folder', async () => {
  const out = join(root, 'awq');
  const r = await runCli(['quantize', STORIES, '--out', out, '--method', 'awq', '--group-size', '64', '--calib-samples', '2', '--calib-seqlen', '64'], {
    timeoutMs: 60_000,
  });
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stderr, /scale search with duo scaling/);
  assert.match(r.stderr, /AWQ: summed output MSE of the scored blocks .* \(duo scaling; plain RTN scored best in \d+ of 5 groups\)/);
  const config = JSON.parse(await readFile(join(out, 'config.json'), 'utf8'));
  assert.equal([config.quantization_config.quant_method, config.quantization_config.group_size], ['awq', 64]);
  assert.ok(existsSync(join(out, 'model.safetensors')));
  assert.ok(existsSync(join(out, 'tokenizer.json')));
});

test('quantize --no-duo-scaling runs the x_mean-only grid', async () => {
  const out = join(root, 'awq-no-duo');
  const r = await runCli(['quantize', STORIES, '--out', out, '--group-size', '32', '--calib-samples', '1', '--calib-seqlen', '32', '--no-duo-scaling'], {
    timeoutMs: 60_000,
  });
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stderr, /scale search without duo scaling/);
  assert.match(r.stderr, /\(x_mean scaling \(no duo scaling\); plain RTN scored best in \d+ of 5 groups\)/);
  assert.ok(existsSync(join(out, 'model.safetensors')));
});

test('a bad --group-size, a missing --calib-data file or a calibration flag with --method rtn exits 1 naming the flag', async () => {
  const bad = await runCli(['quantize', STORIES, '--out', join(root, 'bad'), '--group-size', '96']);
  assert.is(bad.code, 1);
  assert.match(bad.stderr, /--group-size must be a power of two/);
  const missing = await runCli(['quantize', STORIES, '--out', join(root, 'bad2'), '--calib-data', join(root, 'nope.txt')]);
  assert.is(missing.code, 1);
  assert.match(missing.stderr, /--calib-data .*nope\.txt/);
  const rtnCalib = await runCli(['quantize', STORIES, '--out', join(root, 'bad3'), '--method', 'rtn', '--calib-seqlen', '64', '--device', '0']);
  assert.is(rtnCalib.code, 1);
  assert.match(rtnCalib.stderr, /--calib-seqlen, --device only apply to --method awq/);
  assert.not.ok(existsSync(join(root, 'bad3')));
  for (const flag of ['--no-duo-scaling', '--duo-scaling']) {
    const rtnDuo = await runCli(['quantize', STORIES, '--out', join(root, 'bad4'), '--method', 'rtn', flag]);
    assert.is(rtnDuo.code, 1);
    assert.match(rtnDuo.stderr, new RegExp(`${flag} only apply to --method awq`));
    assert.not.ok(existsSync(join(root, 'bad4')));
  }
});

test.run();
