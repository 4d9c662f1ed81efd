// `serve --devices 0,0`: two tensor-parallel shards on one software adapter, through the openai client.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import OpenAI from 'openai';
import { startServe } from '../helpers/cli.js';
import { PUBLISHED_GREEDY_TEXT, STORIES } from '../helpers/engine.js';

test('the server answers with two shards and reproduces the published greedy text', async () => {
  const server = await startServe([STORIES, '--devices', '0,0', '--dtype', 'f32', '--kv-cache-blocks', '32']);
  try {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const res = await client.completions.create({ model: 'stories260K', prompt: '', max_tokens: 64, temperature: 0 });
    assert.ok(res.choices[0]!.text.startsWith(PUBLISHED_GREEDY_TEXT), res.choices[0]!.text);
    assert.match(server.logs(), /tp=2/);
  } finally {
    assert.is(await server.stop(), 0);
  }
});

test.run();
