// Chat templates: real model templates (Qwen2's ChatML, Llama-3's) in generated model folders render
// exactly what transformers' apply_chat_template renders; models without one get the plain default.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { DEFAULT_CHAT_TEMPLATE } from '../../src/tokenizer/chat-template.js';
import { InvalidRequestError } from '../../src/common/errors.js';
import type { ChatMessage } from '../../src/common/types.js';

const MODEL_DIR = join(process.cwd(), '../shared/models/stories260K');
const TOKENIZER_JSON = readFileSync(join(MODEL_DIR, 'tokenizer.json'), 'utf8');

// Qwen/Qwen2-7B-Instruct tokenizer_config.json chat_template, verbatim.
const QWEN2_TEMPLATE =
  "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

// meta-llama/Meta-Llama-3-8B-Instruct tokenizer_config.json chat_template, verbatim.
const LLAMA3_TEMPLATE =
  "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

const dirs: string[] = [];
/** A model folder with stories260K's tokenizer.json and the given extra files. */
function modelDir(files: Record<string, string | object>): string {
  const dir = mkdtempSync(join(tmpdir(), 'tokenizer-test-'));
  dirs.push(dir);
  writeFileSync(join(dir, 'tokenizer.json'), TOKENIZER_JSON);
  for (const [name, content] of Object.entries(files)) {
    writeFileSync(join(dir, name), typeof content === 'string' ? content : JSON.stringify(content));
  }
  return dir;
}

const conversation: ChatMessage[] = [
  { role: 'system', content: 'You are a bot.' },
  { role: 'user', content: '  Hi there!  ' },
  { role: 'assistant', content: 'Hello.' },
  { role: 'user', content: 'Tell me a story.' },
];

test("Qwen2's ChatML template renders exactly, with the default system prompt and generation prompt", async () => {
  const dir = modelDir({ 'tokenizer_config.json': { chat_template: QWEN2_TEMPLATE, bos_token: null, eos_token: '<|im_end|>' } });
  const tok = await Tokenizer.fromModelDir(dir);
  assert.ok(tok.hasChatTemplate);
  assert.is(
    tok.applyChatTemplate([{ role: 'user', content: 'Hello' }]),
    '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n',
  );
  assert.is(
    tok.applyChatTemplate(conversation, { addGenerationPrompt: false }),
    '<|im_start|>system\nYou are a bot.<|im_end|>\n<|im_start|>user\n  Hi there!  <|im_end|>\n' +
      '<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nTell me a story.<|im_end|>\n',
  );
  assert.is(tok.bosTokenId, null);
});

test("Llama-3's template renders exactly: bos_token first, contents trimmed, assistant header", async () => {
  const dir = modelDir({
    'tokenizer_config.json': { chat_template: LLAMA3_TEMPLATE, bos_token: '<|begin_of_text|>', eos_token: '<|eot_id|>' },
  });
  const tok = await Tokenizer.fromModelDir(dir);
  assert.is(
    tok.applyChatTemplate(conversation),
    '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a bot.<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\nHi there!<|eot_id|>' +
      '<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\nTell me a story.<|eot_id|>' +
      '<|start_header_id|>assistant<|end_header_id|>\n\n',
  );
});

test('bos_token and eos_token given as AddedToken objects reach the template and the ids', async () => {
  const dir = modelDir({
    'tokenizer_config.json': {
      chat_template: '{{ bos_token }}[{{ messages[0].content }}]{{ eos_token }}',
      bos_token: { content: '<s>', special: true },
      eos_token: { content: '</s>', special: true },
    },
  });
  const tok = await Tokenizer.fromModelDir(dir);
  assert.is(tok.applyChatTemplate([{ role: 'user', content: 'x' }]), '<s>[x]</s>');
  assert.is(tok.bosTokenId, 1);
  assert.equal(tok.eosTokenIds, [2]);
  // The rendered template already starts with BOS: encoding it adds no second one.
  assert.equal(
    tok.encode(tok.applyChatTemplate([{ role: 'user', content: 'x' }])).filter((id) => id === 1),
    [1],
  );
});

test('chat_template.jinja beats tokenizer_config; the chatTemplate option beats both; named templates pick "default"', async () => {
  const dir = modelDir({
    'tokenizer_config.json': { chat_template: 'config:{{ messages[0].content }}' },
    'chat_template.jinja': 'jinja:{{ messages[0].content }}',
  });
  const msg: ChatMessage[] = [{ role: 'user', content: 'x' }];
  assert.is((await Tokenizer.fromModelDir(dir)).applyChatTemplate(msg), 'jinja:x');
  assert.is((await Tokenizer.fromModelDir(dir, { chatTemplate: 'option:{{ messages[0].content }}' })).applyChatTemplate(msg), 'option:x');
  const named = modelDir({
    'tokenizer_config.json': {
      chat_template: [
        { name: 'tool_use', template: 'tools:{{ messages[0].content }}' },
        { name: 'default', template: 'default:{{ messages[0].content }}' },
      ],
    },
  });
  assert.is((await Tokenizer.fromModelDir(named)).applyChatTemplate(msg), 'default:x');
});

test('without a template (stories260K): contents joined by newlines, no role markers', async () => {
  const tok = await Tokenizer.fromModelDir(MODEL_DIR);
  assert.not.ok(tok.hasChatTemplate);
  const messages: ChatMessage[] = [
    { role: 'system', content: 'A story.' },
    { role: 'user', content: 'Once upon a time' },
  ];
  const prompt = tok.applyChatTemplate(messages);
  assert.is(prompt, 'A story.\nOnce upon a time');
  assert.is(tok.applyChatTemplate(messages, { addGenerationPrompt: false }), prompt);
  assert.is(tok.applyChatTemplate([{ role: 'user', content: 'Once upon a time' }]), 'Once upon a time');
  assert.equal(tok.encode(tok.applyChatTemplate([{ role: 'user', content: 'Once upon a time' }])), [1, 403, 407, 261, 378]);
  // A template that says so uses the same text as the default.
  const explicit = await Tokenizer.fromModelDir(MODEL_DIR, { chatTemplate: DEFAULT_CHAT_TEMPLATE });
  assert.ok(explicit.hasChatTemplate);
  assert.is(explicit.applyChatTemplate(messages), prompt);
});

test("a template's raise_exception becomes an InvalidRequestError on messages", async () => {
  const dir = modelDir({
    'tokenizer_config.json': {
      chat_template: "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation must start with a user message') }}{% endif %}ok",
    },
  });
  const tok = await Tokenizer.fromModelDir(dir);
  assert.is(tok.applyChatTemplate([{ role: 'user', content: 'x' }]), 'ok');
  try {
    tok.applyChatTemplate([{ role: 'assistant', content: 'x' }]);
    assert.unreachable('should throw');
  } catch (err) {
    assert.instance(err, InvalidRequestError);
    assert.match((err as Error).message, /Conversation must start with a user message/);
    assert.is((err as InvalidRequestError).param, 'messages');
  }
});

test('a template that does not parse fails at load, saying how to replace it', async () => {
  const dir = modelDir({ 'tokenizer_config.json': { chat_template: '{% for m in messages %}{{ m.content }' } });
  try {
    await Tokenizer.fromModelDir(dir);
    assert.unreachable('should throw');
  } catch (err) {
    assert.match((err as Error).message, /chat template does not parse.*--chat-template/);
  }
});

test.after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

test.run();
