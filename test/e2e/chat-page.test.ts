// The chat page (/chat) in a real headless Chromium (playwright-core driving the system browser)
// against the real server on stories260K, started with an API key so the page's key field is used:
// streamed greedy answers, stop, multi-turn with regenerate and edit, the server-side session mode,
// sanitized Markdown, JSON mode, tool-call cards, and `webui <api_url>` on another port. Screenshots (desktop and phone width)
// go to test-artifacts/; UPDATE_SCREENSHOTS=1 also writes them to docs/images/ (the README's).
// Without Chromium the tests are reported skipped, except in CI (CI set), where that fails.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { CLI, ROOT, startServe, type ServeProcess } from '../helpers/cli.js';
import { PUBLISHED_GREEDY_TEXT, STORIES } from '../helpers/engine.js';
import { skip } from '../helpers/skip.js';

// The browser globals that the callbacks run in the page use (tests are type-checked without the DOM lib).
declare const document: {
  querySelector(selector: string): { textContent: string | null } | null;
  querySelectorAll(selector: string): ArrayLike<{ textContent: string | null }>;
  getElementById(id: string): { textContent: string | null } | null;
};
declare const localStorage: { getItem(key: string): string | null };
declare const window: { __pwned?: number; frames_: string[] };

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const KEY = 'chat-page-key';
const PROMPT = 'Once upon a time';
const TESTS = [
  'the page streams the greedy answer token by token; Enter sends, Shift+Enter adds a line',
  'stop aborts the answer mid-stream and the server frees the request',
  'a second turn includes the first; regenerate and edit-and-resend redo the last turn',
  'server-side session mode sends only the new turn and shows growing history_tokens',
  'a Markdown answer is highlighted and sanitized: its <script> never runs',
  'webui <api_url> serves the same page against a server on another port',
  'screenshots at desktop and phone width',
  'JSON mode sends response_format json_object and shows the answer as a JSON code block',
  'streamed tool calls are shown as collapsible cards, kept across a reload and sent back in history',
];

interface StoredTurn {
  role: string;
  content: string;
  tool_calls?: { id: string; type: string; function: { name: string; arguments: string } }[];
  stats?: { finishReason: string | null; tokens: number | null; historyTokens?: number };
}

let server: ServeProcess;
let browser: Browser;
const contexts: BrowserContext[] = [];

async function openChat(url: string, viewport = { width: 1280, height: 800 }, colorScheme: 'light' | 'dark' = 'light'): Promise<Page> {
  const context = await browser.newContext({ viewport, colorScheme });
  contexts.push(context);
  const page = await context.newPage();
  page.on('pageerror', (err) => {
    throw new Error(`page error: ${err.message}`);
  });
  await page.goto(`${url}/chat`);
  // The status strip polls GET /status; the key field appears because the server requires a key.
  await page.waitForSelector('#status [data-key="model"]', { timeout: 15_000 });
  const drawer = viewport.width <= 800; // phone width: the settings live in a drawer behind the menu button
  if (drawer) await page.click('#menu');
  await page.locator('#api-key').waitFor({ state: 'visible' });
  await page.fill('#api-key', KEY);
  if (drawer) await page.click('#menu');
  return page;
}

async function setSampling(page: Page, temperature: number, maxTokens: number): Promise<void> {
  const drawer = !(await page.locator('#temperature').isVisible());
  if (drawer) await page.click('#menu');
  await page.fill('#temperature', String(temperature));
  await page.fill('#max-tokens', String(maxTokens));
  if (drawer) await page.click('#menu');
}

async function send(page: Page, text: string): Promise<void> {
  await page.fill('#prompt', text);
  await page.press('#prompt', 'Enter');
}

/** Waits for the n-th answer (1-based) to finish, i.e. to show its statistics line. */
async function waitAnswer(page: Page, n: number, timeout = 90_000): Promise<void> {
  await page.waitForFunction((count) => document.querySelectorAll('.msg.assistant .stats').length >= count && !document.querySelector('.msg.streaming'), n, {
    timeout,
  });
}

async function storedTurns(page: Page): Promise<StoredTurn[]> {
  return page.evaluate(() => {
    const list = JSON.parse(localStorage.getItem('webgpu-llm-chat:conversations') ?? '[]') as { messages: unknown[] }[];
    return (list[0]?.messages ?? []) as StoredTurn[];
  });
}

async function apiGreedy(url: string, messages: { role: string; content: string }[], maxTokens: number): Promise<string> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
    body: JSON.stringify({ messages, max_tokens: maxTokens, temperature: 0 }),
  });
  assert.is(res.status, 200);
  return ((await res.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content;
}

async function runningRequests(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = /^vllm:num_requests_running\{[^}]*\} (\S+)$/m.exec(text);
  assert.ok(m, 'vllm:num_requests_running is in /metrics');
  return Number(m[1]);
}

function startWebui(apiUrl: string): Promise<{ url: string; child: ChildProcess }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'webui', apiUrl, '--server-name', '127.0.0.1', '--server-port', '0'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`webui did not start:\n${out}`));
    }, 30_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /chat page for \S+ at (http:\/\/\S+)\/chat/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ url: m[1]!, child });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`webui exited with ${code}:\n${out}`));
    });
  });
}

const MISSING = `${CHROMIUM} not found: apt-get install chromium (scripts/setup.sh does it as root)`;
if (!existsSync(CHROMIUM) && process.env.CI) {
  test('Chromium is installed in CI', () => {
    assert.unreachable(`${MISSING}; CI=${process.env.CI} requires the browser tests to run`);
  });
} else if (!existsSync(CHROMIUM)) {
  for (const name of TESTS) skip(name, MISSING);
} else {
  test.before(async () => {
    [server, browser] = await Promise.all([
      startServe([STORIES, '--dtype', 'f32', '--kv-cache-blocks', '64', '--model-name', 'stories260K', '--api-keys', KEY]),
      chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] }),
    ]);
  });
  test.after(async () => {
    for (const c of contexts) await c.close().catch(() => {});
    await browser?.close();
    await server?.stop();
  });

  test(TESTS[0]!, async () => {
    const page = await openChat(server.url);
    await setSampling(page, 0, 48);
    // Shift+Enter starts a new line and sends nothing.
    await page.fill('#prompt', 'first line');
    await page.press('#prompt', 'Shift+Enter');
    await page.keyboard.type('second');
    assert.is(await page.inputValue('#prompt'), 'first line\nsecond');
    assert.is(await page.locator('.msg').count(), 0);
    // Sample the answer's text at every animation frame: a streamed answer shows partial text in several paints.
    // (A string: tsx would wrap a named function in a helper the page does not have.)
    await page.evaluate(`(() => {
      window.frames_ = [];
      const sample = () => {
        const content = document.querySelector('.msg.assistant .content');
        if (content) window.frames_.push(content.textContent ?? '');
        if (!document.querySelector('.msg.assistant .stats')) requestAnimationFrame(sample);
      };
      requestAnimationFrame(sample);
    })()`);
    await send(page, PROMPT);
    assert.is(await page.inputValue('#prompt'), '', 'Enter sent the message and cleared the box');
    await waitAnswer(page, 1);
    const turns = await storedTurns(page);
    assert.is(turns.length, 2);
    assert.is(turns[0]!.content, PROMPT);
    const answer = turns[1]!.content;
    // The default chat template of stories260K is the bare text: BOS + prompt, so the greedy answer
    // continues the published greedy text from BOS.
    assert.ok(answer.length > 40 && PUBLISHED_GREEDY_TEXT.startsWith(PROMPT + answer), `answer: ${JSON.stringify(answer)}`);
    assert.is(answer, await apiGreedy(server.url, [{ role: 'user', content: PROMPT }], 48));
    const frames = await page.evaluate(() => window.frames_);
    const final = frames.at(-1) ?? '';
    const partial = [...new Set(frames)].filter((t) => t.length > 0 && t.length < final.length);
    assert.ok(final.length > 40, `the last frame shows the answer: ${JSON.stringify(final)}`);
    assert.ok(partial.length >= 1, `partial text was painted before the whole answer (${frames.length} frames sampled)`);
    const stats = await page.locator('.msg.assistant .stats').textContent();
    assert.match(stats ?? '', /[\d.]+ tok\/s · TTFT \d+ ms · 48 tokens · finish_reason: length/);
    await page.waitForFunction(() => /running 0/.test(document.getElementById('status')?.textContent ?? ''));
    assert.match((await page.locator('#status').textContent()) ?? '', /stories260K.*devices gpu0.*weights f32.*KV cache [\d.]+% f32/);
  });

  test(TESTS[1]!, async () => {
    const page = await openChat(server.url);
    await setSampling(page, 0, 400);
    await send(page, PROMPT);
    await page.waitForFunction(() => (document.querySelector('.msg.assistant .content')?.textContent ?? '').length > 0, null, { timeout: 60_000 });
    assert.ok(await page.locator('#stop').isVisible(), 'the stop button shows while an answer streams');
    await page.click('#stop');
    await waitAnswer(page, 1, 30_000);
    const turns = await storedTurns(page);
    assert.is(turns[1]!.stats?.finishReason, 'abort');
    assert.ok(turns[1]!.content.length < 1200, `stopped early: ${turns[1]!.content.length} characters`);
    assert.match((await page.locator('.msg.assistant .stats').textContent()) ?? '', /finish_reason: abort/);
    let running = -1;
    for (let i = 0; i < 50 && running !== 0; i++) {
      running = await runningRequests(server.url);
      if (running !== 0) await new Promise((r) => setTimeout(r, 100));
    }
    assert.is(running, 0, '/metrics shows no running request after stop');
    assert.ok(await page.locator('#send').isVisible(), 'the send button is back');
  });

  test(TESTS[2]!, async () => {
    const page = await openChat(server.url);
    await setSampling(page, 0, 16);
    const bodies: { messages: { role: string; content: string }[] }[] = [];
    page.on('request', (req) => {
      if (req.url().endsWith('/v1/chat/completions')) bodies.push(req.postDataJSON());
    });
    await page.fill('#system', 'A story.');
    await send(page, PROMPT);
    await waitAnswer(page, 1);
    await send(page, 'Lily');
    await waitAnswer(page, 2);
    const first = (await storedTurns(page))[1]!.content;
    assert.equal(bodies[1]!.messages, [
      { role: 'system', content: 'A story.' },
      { role: 'user', content: PROMPT },
      { role: 'assistant', content: first },
      { role: 'user', content: 'Lily' },
    ]);
    const second = (await storedTurns(page))[3]!.content;
    assert.is(second, await apiGreedy(server.url, bodies[1]!.messages, 16));
    // Regenerate: the same request again (greedy: the same answer).
    await page.locator('.msg.assistant').last().getByRole('button', { name: 'Regenerate the answer' }).click();
    await waitAnswer(page, 2);
    assert.equal(bodies[2], bodies[1]);
    assert.is((await storedTurns(page)).length, 4);
    assert.is((await storedTurns(page))[3]!.content, second);
    // Edit the last question and resend it: the last turn is replaced.
    await page.locator('.msg.user').last().getByRole('button', { name: 'Edit and resend' }).click();
    await page.fill('.msg.user textarea.edit', 'Tom');
    await page.press('.msg.user textarea.edit', 'Enter');
    await waitAnswer(page, 2);
    assert.is(bodies[3]!.messages.at(-1)!.content, 'Tom');
    assert.is(bodies[3]!.messages.length, 4);
    const turns = await storedTurns(page);
    assert.equal(
      turns.map((t) => t.role),
      ['user', 'assistant', 'user', 'assistant'],
    );
    assert.is(turns[2]!.content, 'Tom');
    assert.is(await page.locator('.msg.user .content').last().textContent(), 'Tom');
    // The conversation lives in localStorage: a reload shows it again, listed in the sidebar.
    await page.reload();
    await page.waitForSelector('.msg.assistant .stats');
    assert.is(await page.locator('.msg').count(), 4);
    assert.is(await page.locator('#conversations .conversation[aria-current="true"]').textContent(), PROMPT);
  });

  test(TESTS[3]!, async () => {
    const page = await openChat(server.url);
    await setSampling(page, 0, 16);
    await page.check('input[name="mode"][value="session"]');
    const bodies: { prompt: unknown; session_id: number; interactive_mode: boolean }[] = [];
    page.on('request', (req) => {
      if (req.url().endsWith('/v1/chat/interactive')) bodies.push(req.postDataJSON());
    });
    await send(page, PROMPT);
    await waitAnswer(page, 1);
    const afterFirst = Number(await page.locator('#session-info').getAttribute('data-history-tokens'));
    await send(page, 'Lily');
    await waitAnswer(page, 2);
    const afterSecond = Number(await page.locator('#session-info').getAttribute('data-history-tokens'));
    const perAnswer = await page
      .locator('.msg.assistant .stats')
      .evaluateAll((els) => els.map((e) => Number((e as unknown as { dataset: Record<string, string> }).dataset.historyTokens)));
    assert.is(perAnswer[0], 0, 'the first turn starts from an empty history');
    assert.ok(perAnswer[1]! > 0 && perAnswer[1] === afterFirst, `history_tokens of the second turn: ${perAnswer[1]} (after the first: ${afterFirst})`);
    assert.ok(afterSecond > afterFirst && afterFirst > 0, `history grows: ${afterFirst} -> ${afterSecond}`);
    assert.match((await page.locator('#session-info').textContent()) ?? '', new RegExp(`history_tokens ${afterSecond}`));
    assert.match((await page.locator('.msg.assistant .stats').last().textContent()) ?? '', /history_tokens \d+/);
    assert.is(bodies.length, 2);
    assert.is(bodies[0]!.prompt, PROMPT);
    assert.is(bodies[1]!.prompt, 'Lily', 'only the new turn is sent');
    assert.is(bodies[1]!.session_id, bodies[0]!.session_id);
    assert.ok(bodies.every((b) => b.interactive_mode === true));
    // End the session: the server forgets it; the next message starts a new one from an empty history.
    await page.click('#end-session');
    await page.waitForSelector('.msg.note');
    assert.equal(
      bodies[2],
      { prompt: '', session_id: bodies[0]!.session_id, interactive_mode: false, request_output_len: 0 },
      "LMDeploy's end-session request",
    );
    assert.match((await page.locator('#session-info').textContent()) ?? '', /starts with the next message/);
    await send(page, PROMPT);
    await waitAnswer(page, 3);
    const third = await page.locator('.msg.assistant .stats').last().getAttribute('data-history-tokens');
    assert.is(third, '0');
    assert.is.not(bodies[3]!.session_id, bodies[0]!.session_id, 'a new session');
  });

  test(TESTS[4]!, async () => {
    const page = await openChat(server.url);
    const markdown = [
      'Here is **bold** text and code:\n\n```js\nconst answer = 42; // the answer\n```\n\n',
      '<script>window.__pwned = 1</script>\n\n',
      '<img src="x" onerror="window.__pwned = 2">\n\n',
      '[a link](javascript:window.__pwned=3) and <a href="#" onclick="window.__pwned=4">click</a>\n',
    ];
    // The model cannot be made to write this, so the answer stream is stood in for by the browser.
    await page.route('**/v1/chat/completions', (route) => {
      const chunk = (delta: { content?: string; reasoning_content?: string }, finish: string | null) =>
        `data: ${JSON.stringify({ id: 'x', object: 'chat.completion.chunk', created: 0, model: 'stories260K', choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] })}\n\n`;
      void route.fulfill({
        status: 200,
        contentType: 'text/event-stream',
        body:
          chunk({ reasoning_content: 'Thinking <script>window.__pwned = 5</script> hard.' }, null) +
          markdown.map((m, i) => chunk({ content: m }, i === markdown.length - 1 ? 'stop' : null)).join('') +
          'data: [DONE]\n\n',
      });
    });
    await send(page, 'show me markdown');
    await waitAnswer(page, 1);
    const content = page.locator('.msg.assistant .content');
    assert.is(await content.locator('strong').textContent(), 'bold');
    // serve --reasoning-parser: reasoning_content is shown folded above the answer, sanitized the same way.
    const reasoning = page.locator('.msg.assistant details.reasoning');
    assert.ok(await reasoning.isVisible(), 'the reasoning is shown');
    assert.match((await reasoning.textContent()) ?? '', /Thinking <script>.*hard\./);
    assert.is(await reasoning.locator('script').count(), 0);
    assert.ok((await content.locator('pre code.hljs span').count()) > 0, 'the code block is highlighted');
    assert.ok(await content.locator('pre button.copy-code').isVisible(), 'code blocks have a copy button');
    assert.is(await content.locator('script, img, [onerror], [onclick], a[href^="javascript:"]').count(), 0, 'no active content');
    assert.match((await content.textContent()) ?? '', /<script>window\.__pwned = 1<\/script>/, 'the tag is shown as text');
    await page.click('.msg.assistant .copy-code'); // must not run anything either
    await page.waitForTimeout(300);
    assert.is(await page.evaluate(() => window.__pwned), undefined, 'nothing ran');
  });

  test(TESTS[5]!, async () => {
    const webui = await startWebui(server.url);
    try {
      assert.is.not(new URL(webui.url).port, new URL(server.url).port);
      const page = await openChat(webui.url);
      assert.match((await page.locator('#status').textContent()) ?? '', /stories260K/);
      await setSampling(page, 0, 24);
      await send(page, PROMPT);
      await waitAnswer(page, 1);
      const answer = (await storedTurns(page))[1]!.content;
      assert.is(answer, await apiGreedy(server.url, [{ role: 'user', content: PROMPT }], 24));
      // Stop through the proxy: the closed page request aborts the upstream one, and the API server frees it.
      await setSampling(page, 0, 400);
      await send(page, 'Lily');
      await page.waitForFunction(() => (document.querySelectorAll('.msg.assistant .content')[1]?.textContent ?? '').length > 0, null, { timeout: 60_000 });
      await page.click('#stop');
      await waitAnswer(page, 2, 30_000);
      assert.is((await storedTurns(page))[3]!.stats?.finishReason, 'abort');
      let running = -1;
      for (let i = 0; i < 50 && running !== 0; i++) {
        running = await runningRequests(server.url);
        if (running !== 0) await new Promise((r) => setTimeout(r, 100));
      }
      assert.is(running, 0, 'the API server runs nothing after a stop through webui');
      // Without the key the API server's 401 reaches the page through webui.
      const res = await fetch(`${webui.url}/v1/models`);
      assert.is(res.status, 401);
      const root = await fetch(`${webui.url}/`, { redirect: 'manual' });
      assert.is(root.headers.get('location'), '/chat');
    } finally {
      webui.child.kill('SIGTERM');
    }
  });

  test(TESTS[6]!, async () => {
    mkdirSync('test-artifacts', { recursive: true });
    const shots: [string, { width: number; height: number }, 'light' | 'dark'][] = [
      ['chat-desktop.png', { width: 1280, height: 800 }, 'light'],
      ['chat-phone.png', { width: 390, height: 844 }, 'dark'],
    ];
    for (const [name, viewport, scheme] of shots) {
      const page = await openChat(server.url, viewport, scheme);
      await setSampling(page, 0, 64);
      await send(page, PROMPT);
      await waitAnswer(page, 1);
      await send(page, 'What did Lily do next?');
      await waitAnswer(page, 2);
      await page.waitForFunction(() => /running 0/.test(document.getElementById('status')?.textContent ?? ''));
      await page.locator('#prompt').blur();
      const file = join('test-artifacts', name);
      await page.screenshot({ path: file });
      if (process.env.UPDATE_SCREENSHOTS) copyFileSync(file, join(ROOT, 'docs', 'images', name));
    }
  });

  test(TESTS[7]!, async () => {
    const page = await openChat(server.url);
    await setSampling(page, 0, 32);
    const bodies: { response_format?: unknown }[] = [];
    page.on('request', (req) => {
      if (req.url().endsWith('/v1/chat/completions')) bodies.push(req.postDataJSON());
    });
    // /v1/chat/interactive has no response_format: the switch is off-limits in session mode.
    await page.check('input[name="mode"][value="session"]');
    assert.ok(await page.locator('#json-mode').isDisabled(), 'disabled in session mode');
    await page.check('input[name="mode"][value="stateless"]');
    await page.check('#json-mode');
    await send(page, PROMPT);
    await waitAnswer(page, 1);
    assert.equal(bodies[0]!.response_format, { type: 'json_object' });
    const turn = (await storedTurns(page))[1]!;
    // stories260K knows no JSON (its greedy answer is the story): only the grammar makes this an object. It never
    // closes one within a few dozen tokens (no seed or temperature tried did), so the answer is cut off by
    // max_tokens inside its first key: closing that key and the object must give valid JSON.
    assert.is(turn.stats?.finishReason, 'length');
    assert.ok(turn.content.startsWith('{"') && !turn.content.slice(2).includes('"'), `a JSON prefix: ${JSON.stringify(turn.content)}`);
    const parsed = JSON.parse(`${turn.content}": 0}`) as Record<string, number>;
    assert.equal(Object.values(parsed), [0]);
    const code = page.locator('.msg.assistant .content pre code.hljs.language-json');
    assert.is((await code.textContent())?.trimEnd(), turn.content, 'shown as a JSON code block (pretty-printed once it parses)');
    assert.ok((await code.locator('span').count()) > 0, 'highlighted');
    // The switch is a setting: it survives a reload.
    await page.reload();
    await page.waitForSelector('.msg.assistant .stats');
    assert.ok(await page.locator('#json-mode').isChecked());
    assert.is(await page.locator('.msg.assistant .content pre code.language-json').count(), 1);
  });

  test(TESTS[8]!, async () => {
    const page = await openChat(server.url);
    const bodies: { messages: { role: string; content?: string | null; tool_calls?: unknown }[] }[] = [];
    // No tools for stories260K here: the answer stream is stood in for by the browser, as the server streams calls.
    await page.route('**/v1/chat/completions', (route) => {
      bodies.push(route.request().postDataJSON());
      const chunk = (delta: Record<string, unknown>, finish: string | null) =>
        `data: ${JSON.stringify({ id: 'x', object: 'chat.completion.chunk', created: 0, model: 'stories260K', choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] })}\n\n`;
      const call = (index: number, id: string, name: string) => ({ tool_calls: [{ index, id, type: 'function', function: { name, arguments: '' } }] });
      const args = (index: number, text: string) => ({ tool_calls: [{ index, function: { arguments: text } }] });
      void route.fulfill({
        status: 200,
        contentType: 'text/event-stream',
        body:
          bodies.length > 1
            ? chunk({ role: 'assistant', content: 'Sunny.' }, 'stop') + 'data: [DONE]\n\n'
            : chunk({ role: 'assistant', content: '' }, null) +
              chunk(call(0, 'call_a', 'get_weather'), null) +
              chunk(args(0, '{"city": "Par'), null) +
              chunk(call(1, 'call_b', 'lookup<b>'), null) +
              chunk(args(0, 'is", "unit": "C"}'), null) +
              chunk(args(1, '{"q": "<script>window.__pwned = 6</script>"}'), 'tool_calls') +
              'data: [DONE]\n\n',
      });
    });
    await send(page, 'weather in Paris?');
    await waitAnswer(page, 1);
    const check = async () => {
      const cards = page.locator('.msg.assistant details.tool-call');
      assert.is(await cards.count(), 2);
      assert.is(await cards.nth(0).locator('summary .tool-name').textContent(), 'get_weather');
      assert.is(await cards.nth(1).locator('summary .tool-name').textContent(), 'lookup<b>', 'the name is text');
      assert.not.ok(await cards.nth(0).locator('pre').isVisible(), 'folded');
      await cards.nth(0).locator('summary').click();
      assert.is(await cards.nth(0).locator('pre').textContent(), JSON.stringify({ city: 'Paris', unit: 'C' }, null, 2));
      assert.match((await cards.nth(1).locator('pre').textContent()) ?? '', /<script>window\.__pwned = 6<\/script>/);
      assert.is(await page.locator('.msg.assistant script, .msg.assistant b').count(), 0, 'no markup from the model');
    };
    await check();
    assert.match((await page.locator('.msg.assistant .stats').textContent()) ?? '', /finish_reason: tool_calls/);
    const calls = [
      { id: 'call_a', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris", "unit": "C"}' } },
      { id: 'call_b', type: 'function', function: { name: 'lookup<b>', arguments: '{"q": "<script>window.__pwned = 6</script>"}' } },
    ];
    assert.equal((await storedTurns(page))[1]!.tool_calls, calls);
    await page.reload();
    await page.waitForSelector('.msg.assistant .stats');
    await check();
    // The next turn sends the calls back as the assistant message's tool_calls.
    await send(page, 'and tomorrow?');
    await waitAnswer(page, 2);
    assert.equal(bodies[1]!.messages, [
      { role: 'user', content: 'weather in Paris?' },
      { role: 'assistant', content: null, tool_calls: calls },
      { role: 'user', content: 'and tomorrow?' },
    ]);
    assert.is(await page.evaluate(() => window.__pwned), undefined, 'nothing ran');
  });
}

test.run();
