// The user documentation, executed: every `curl` line in a bash/sh/shell/console block and every `openai`
// snippet in a js block of README.md and docs/*.md runs against a real `serve` on stories260K, and every
// flag that `--help` lists must be documented in docs/configuration.md.
//
// Markers, as HTML comments on the lines just above a code block (they apply to the whole block):
//   <!-- expect-status: 400 -->   the example shows an error on purpose: check this status and an error body
//   <!-- server: secured -->      run against a second server with --api-keys and --allow-origins (below)
//   <!-- skip: why -->            do not run (counted and printed; keep these rare)
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, runCli, startServe, type ServeProcess } from '../helpers/cli.js';
import { STORIES } from '../helpers/engine.js';
import { skip } from '../helpers/skip.js';

/** The key and origin the docs' `server: secured` examples use. */
const SECURED_API_KEY = 'sk-example-key';
const SECURED_ORIGIN = 'http://localhost:8080';
const MIN_EXAMPLES = 10;
const COMMANDS = ['devices', 'serve', 'generate', 'chat', 'api_client', 'webui', 'quantize'];

type ServerName = 'main' | 'secured';

interface Example {
  where: string;
  kind: 'curl' | 'js';
  code: string;
  expectStatus: number | null;
  server: ServerName;
  skip: string | null;
}

interface Markers {
  expectStatus: number | null;
  server: ServerName;
  skip: string | null;
}

const DOC_FILES = [
  'README.md',
  ...readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => `docs/${f}`),
];

/** The HTML-comment markers on the lines right above line `fence` (blank lines in between are allowed). */
function markersAbove(lines: string[], fence: number, where: string): Markers {
  const markers: Markers = { expectStatus: null, server: 'main', skip: null };
  for (let i = fence - 1; i >= 0; i--) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    const m = /^<!--\s*([\w-]+)\s*:\s*(.*?)\s*-->$/.exec(line);
    if (!m) break;
    const [, key, value] = m;
    if (key === 'expect-status') markers.expectStatus = Number(value);
    else if (key === 'server') {
      assert.ok(value === 'secured' || value === 'main', `${where}: unknown server "${value}"`);
      markers.server = value as ServerName;
    } else if (key === 'skip') markers.skip = value || 'no reason given';
  }
  return markers;
}

/** Curl lines (with `\` continuations joined and a leading `$ ` prompt dropped) and openai snippets. */
function extractExamples(file: string, text: string): Example[] {
  const lines = text.split('\n');
  const examples: Example[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^\s*```\s*([\w-]*)/.exec(lines[i]!);
    if (!open) continue;
    const lang = open[1]!.toLowerCase();
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^\s*```\s*$/.test(lines[i]!); i++) body.push(lines[i]!);
    const markers = markersAbove(lines, start, `${file}:${start + 1}`);
    if (['bash', 'sh', 'shell', 'console', 'zsh'].includes(lang)) {
      let pending = '';
      body.forEach((raw, k) => {
        const line = raw.trim();
        pending = pending ? `${pending} ${line}` : line;
        if (pending.endsWith('\\')) {
          pending = pending.slice(0, -1).trimEnd();
          return;
        }
        const command = pending.replace(/^\$\s+/, '');
        pending = '';
        if (/^curl\s/.test(command)) {
          examples.push({ where: `${file}:${start + 2 + k}`, kind: 'curl', code: command, ...markers });
        }
      });
    } else if (['js', 'javascript', 'mjs'].includes(lang) && /from\s+['"]openai['"]/.test(body.join('\n'))) {
      examples.push({ where: `${file}:${start + 1}`, kind: 'js', code: body.join('\n'), ...markers });
    }
  }
  return examples;
}

/** Examples address the default port; point them at the test server instead. */
function rewriteHost(code: string, url: string): string {
  return code.replace(/(?:https?:\/\/)?(?:127\.0\.0\.1|localhost|0\.0\.0\.0):23333/g, url);
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[], input: string | null, timeoutMs = 60_000): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: ROOT, env: { ...process.env, XDG_RUNTIME_DIR: '/tmp' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(input ?? undefined);
  });
}

/** The last response head curl dumped with -D: its status and content type. */
function responseHead(headers: string): { status: number; contentType: string } {
  const heads = headers.split(/\r?\n\r?\n/).filter((h) => /^HTTP\//.test(h));
  const last = heads.at(-1) ?? '';
  const status = Number(/^HTTP\/[\d.]+ (\d{3})/.exec(last)?.[1] ?? 0);
  const contentType = /^content-type:\s*(.+)$/im.exec(last)?.[1]?.trim().toLowerCase() ?? '';
  return { status, contentType };
}

/** Whether the shell line pipes curl's output into another program (then the body may be cut). */
function isPiped(command: string): boolean {
  return /\|/.test(command.replace(/'[^']*'|"(?:[^"\\]|\\.)*"/g, ''));
}

/** What a sensible body of this content type looks like; returns the problem, or null. */
function checkBody(body: string, contentType: string, status: number, piped: boolean): string | null {
  const ok = status >= 200 && status < 300;
  if (status === 204) return body === '' ? null : 'a 204 response has a body';
  if (body.trim() === '') return 'the body is empty';
  if (piped) return null; // cut or filtered by the pipe: non-empty is all we can ask
  if (contentType.startsWith('application/json')) {
    let value: { error?: { message?: unknown; type?: unknown } };
    try {
      value = JSON.parse(body) as typeof value;
    } catch (err) {
      return `the body is not JSON: ${(err as Error).message}`;
    }
    if (ok && value.error !== undefined) return `a ${status} body carries an error: ${JSON.stringify(value.error)}`;
    if (!ok && (typeof value.error?.message !== 'string' || typeof value.error.type !== 'string')) return 'an error status without the OpenAI error body';
    return null;
  }
  if (contentType.startsWith('text/event-stream')) {
    const events = body
      .split(/\n\n/)
      .map((e) => e.trim())
      .filter(Boolean);
    if (events.at(-1) !== 'data: [DONE]') return 'the event stream does not end with data: [DONE]';
    let finished = false;
    for (const event of events.slice(0, -1)) {
      if (!event.startsWith('data: ')) return `an event is not "data: <json>": ${event.slice(0, 80)}`;
      const chunk = JSON.parse(event.slice(6)) as { error?: unknown; choices?: { finish_reason?: string | null }[] };
      if (chunk.error) return `the stream carries an error: ${JSON.stringify(chunk.error)}`;
      if (chunk.choices?.some((c) => c.finish_reason)) finished = true;
    }
    return finished ? null : 'no chunk has a finish_reason';
  }
  if (contentType.startsWith('application/x-ndjson')) {
    const objects = body
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { error?: unknown; finish_reason?: string | null });
    if (objects.some((o) => o.error)) return 'the stream carries an error line';
    return objects.at(-1)?.finish_reason ? null : 'the last line has no finish_reason';
  }
  if (contentType.startsWith('text/html')) return /<html/i.test(body) ? null : 'the HTML page has no <html>';
  return null; // text/plain (metrics) and the rest: non-empty is enough
}

/** Strips the response heads that `curl -i` puts on stdout. */
function stripIncludedHeads(stdout: string): string {
  let body = stdout;
  while (/^HTTP\/[\d.]+ \d{3}/.test(body)) {
    const cut = body.search(/\r?\n\r?\n/);
    if (cut < 0) return '';
    body = body.slice(cut).replace(/^\r?\n\r?\n/, '');
  }
  return body;
}

async function runCurl(example: Example, url: string, scratch: string, n: number): Promise<string | null> {
  const headersFile = join(scratch, `headers-${n}.txt`);
  // -D dumps the response head to a file, so the example's own output (and pipes) stay untouched.
  const command = rewriteHost(example.code, url).replace(/^curl\s/, `curl -D '${headersFile}' `);
  const result = await run('/bin/sh', ['-c', command], null);
  if (result.code !== 0) return `exit ${result.code}: ${result.stderr.trim().slice(0, 300)}`;
  let head: { status: number; contentType: string };
  try {
    head = responseHead(readFileSync(headersFile, 'utf8'));
  } catch {
    return 'curl wrote no response head';
  }
  const wanted = example.expectStatus;
  if (wanted !== null ? head.status !== wanted : head.status < 200 || head.status >= 300) {
    return `HTTP ${head.status}, expected ${wanted ?? '2xx'}: ${result.stdout.slice(0, 300)}`;
  }
  const problem = checkBody(stripIncludedHeads(result.stdout), head.contentType, head.status, isPiped(example.code));
  return problem ? `${problem}: ${result.stdout.slice(0, 300)}` : null;
}

async function runSnippet(example: Example, url: string): Promise<string | null> {
  // Read from stdin as an ES module: bare imports resolve from the repository's node_modules (cwd).
  const result = await run(process.execPath, ['--input-type=module'], rewriteHost(example.code, url));
  if (result.code !== 0) return `exit ${result.code}: ${result.stderr.trim().slice(0, 500)}`;
  if (result.stdout.trim() === '') return 'printed nothing';
  return null;
}

const examplesByFile = new Map(DOC_FILES.map((f) => [f, extractExamples(f, readFileSync(join(ROOT, f), 'utf8'))]));
const allExamples = [...examplesByFile.values()].flat();
const servers = new Map<ServerName, ServeProcess>();
let scratch: string;
let counter = 0;
const skipped: Example[] = [];

test.before(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'docs-examples-'));
  const common = [STORIES, '--dtype', 'f32', '--kv-cache-blocks', '64', '--model-name', 'stories260K'];
  const needSecured = allExamples.some((e) => e.server === 'secured' && !e.skip);
  const [main, secured] = await Promise.all([
    startServe(common),
    needSecured ? startServe([...common, '--api-keys', SECURED_API_KEY, '--allow-origins', SECURED_ORIGIN]) : null,
  ]);
  servers.set('main', main);
  if (secured) servers.set('secured', secured);
});

test.after(async () => {
  for (const server of servers.values()) await server.stop();
  rmSync(scratch, { recursive: true, force: true });
  const ran = allExamples.length - skipped.length;
  console.log(`docs examples: ${ran} ran, ${skipped.length} skipped${skipped.map((e) => `\n  skipped ${e.where}: ${e.skip}`).join('')}`);
});

test(`the docs hold at least ${MIN_EXAMPLES} runnable examples, and the API reference covers every endpoint`, () => {
  const runnable = allExamples.filter((e) => !e.skip);
  assert.ok(runnable.length >= MIN_EXAMPLES, `found only ${runnable.length} runnable examples in ${DOC_FILES.join(', ')}`);
  const api = (examplesByFile.get('docs/api.md') ?? [])
    .filter((e) => e.kind === 'curl')
    .map((e) => e.code)
    .join('\n');
  for (const path of [
    '/v1/models',
    '/v1/completions',
    '/v1/chat/completions',
    '/v1/chat/interactive',
    '/v1/encode',
    '/health',
    '/metrics',
    '/openapi.json',
    '/docs',
  ]) {
    assert.ok(api.includes(`23333${path}`), `docs/api.md has no curl example for ${path}`);
  }
  const snippets = (examplesByFile.get('docs/api.md') ?? [])
    .filter((e) => e.kind === 'js')
    .map((e) => e.code)
    .join('\n');
  for (const call of ['models.list', 'completions.create', 'chat.completions.create']) {
    assert.ok(snippets.includes(call), `docs/api.md has no openai client example calling ${call}`);
  }
});

for (const file of DOC_FILES) {
  const examples = examplesByFile.get(file)!;
  if (examples.length === 0) continue;
  test(`${file}: every example runs (${examples.length})`, async () => {
    const failures: string[] = [];
    for (const example of examples) {
      if (example.skip) {
        skipped.push(example);
        skip(`docs example ${example.where}`, example.skip);
        continue;
      }
      const server = servers.get(example.server);
      assert.ok(server, `${example.where}: no "${example.server}" server`);
      const problem = example.kind === 'curl' ? await runCurl(example, server.url, scratch, counter++) : await runSnippet(example, server.url);
      if (problem) failures.push(`${example.where} (${example.kind}): ${problem}\n    ${example.code.split('\n')[0]}`);
    }
    assert.is(failures.length, 0, `\n${failures.join('\n')}`);
  });
}

test('every flag that --help lists is in docs/configuration.md, and every flag the doc tables name exists', async () => {
  const doc = readFileSync(join(ROOT, 'docs/configuration.md'), 'utf8');
  const known = new Set<string>();
  const missing: string[] = [];
  for (const command of ['', ...COMMANDS]) {
    const help = await runCli(command ? [command, '--help'] : ['--help']);
    assert.is(help.code, 0, help.stderr);
    const flags = [...help.stdout.matchAll(/^\s+(--[a-z][\w-]*)/gm)].map((m) => m[1]!);
    assert.ok(flags.length >= 2, `${command || 'top level'} --help lists no flags:\n${help.stdout}`);
    for (const flag of flags) {
      known.add(flag);
      if (!new RegExp(`${flag}(?![\\w-])`).test(doc)) missing.push(`${command || '(top level)'} ${flag}`);
    }
  }
  assert.equal(missing, [], 'flags missing from docs/configuration.md');
  // The other way round: a flag named in a table's first column must exist (yargs adds --no-<flag> for booleans).
  const tabled = [...doc.matchAll(/^\|\s*`(--[a-z][\w-]*)/gm)].map((m) => m[1]!);
  assert.ok(tabled.length >= known.size - 2, 'docs/configuration.md should document flags in tables');
  const stale = tabled.filter((flag) => !known.has(flag) && !known.has(flag.replace(/^--no-/, '--')));
  assert.equal(stale, [], 'docs/configuration.md documents flags that no command has');
});

test.run();
