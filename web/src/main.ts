// The chat page: conversations in localStorage, answers streamed from /v1/chat/completions (the page
// sends the whole conversation) or /v1/chat/interactive (a server-side session: only the new turn is
// sent), rendered as sanitized Markdown once per animation frame, and a status strip polled from
// GET /status.
import {
  endSession,
  fetchStatus,
  HttpError,
  type Sampling,
  type ServerStatus,
  type StreamEvent,
  streamChat,
  type ToolCall,
  streamInteractive,
  type WireFinishReason,
} from './api.js';
import { renderCode, renderMarkdown } from './markdown.js';
import {
  type AnswerStats,
  type Conversation,
  loadConversations,
  loadSettings,
  newConversation,
  saveConversations,
  saveSettings,
  type Settings,
  type Turn,
} from './store.js';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const el = {
  menu: $<HTMLButtonElement>('menu'),
  sidebar: $('sidebar'),
  theme: $<HTMLButtonElement>('theme'),
  modelName: $('model-name'),
  newChat: $<HTMLButtonElement>('new-chat'),
  conversations: $<HTMLUListElement>('conversations'),
  settings: $<HTMLFormElement>('settings'),
  system: $<HTMLTextAreaElement>('system'),
  temperature: $<HTMLInputElement>('temperature'),
  topP: $<HTMLInputElement>('top-p'),
  maxTokens: $<HTMLInputElement>('max-tokens'),
  seed: $<HTMLInputElement>('seed'),
  jsonMode: $<HTMLInputElement>('json-mode'),
  apiKeyRow: $('api-key-row'),
  apiKey: $<HTMLInputElement>('api-key'),
  sessionBar: $('session-bar'),
  sessionInfo: $('session-info'),
  endSession: $<HTMLButtonElement>('end-session'),
  messages: $('messages'),
  composer: $<HTMLFormElement>('composer'),
  prompt: $<HTMLTextAreaElement>('prompt'),
  send: $<HTMLButtonElement>('send'),
  stop: $<HTMLButtonElement>('stop'),
  status: $('status'),
};

let settings: Settings = loadSettings();
let conversations: Conversation[] = loadConversations();
let current: Conversation = conversations[0] ?? newConversation(settings.mode);
let status: ServerStatus | null = null;
let modelName = '';
/** The answer being generated, if any. */
let running: { controller: AbortController; conversation: Conversation } | null = null;

// ---- settings ----

function readSettingsForm(): void {
  const num = (input: HTMLInputElement, fallback: number) =>
    input.value.trim() === '' || !Number.isFinite(input.valueAsNumber) ? fallback : input.valueAsNumber;
  const mode = (el.settings.elements.namedItem('mode') as RadioNodeList).value === 'session' ? 'session' : 'stateless';
  settings = {
    ...settings,
    system: el.system.value,
    temperature: num(el.temperature, 0.7),
    topP: num(el.topP, 0.95),
    maxTokens: Math.max(1, Math.round(num(el.maxTokens, 256))),
    seed: el.seed.value.trim() === '' ? null : Math.round(el.seed.valueAsNumber),
    apiKey: el.apiKey.value,
    mode,
    jsonMode: el.jsonMode.checked,
  };
  saveSettings(settings);
}

function writeSettingsForm(): void {
  el.system.value = settings.system;
  el.temperature.value = String(settings.temperature);
  el.topP.value = String(settings.topP);
  el.maxTokens.value = String(settings.maxTokens);
  el.seed.value = settings.seed === null ? '' : String(settings.seed);
  el.apiKey.value = settings.apiKey;
  el.jsonMode.checked = settings.jsonMode;
  // /v1/chat/interactive has no response_format.
  el.jsonMode.disabled = current.mode === 'session';
  (el.settings.elements.namedItem('mode') as RadioNodeList).value = current.mode;
  el.apiKeyRow.hidden = !(status?.auth_required || settings.apiKey);
}

el.settings.addEventListener('input', () => readSettingsForm());
el.settings.addEventListener('change', (ev) => {
  readSettingsForm();
  // The mode belongs to a conversation: an empty one switches, otherwise a new chat starts in the new mode.
  if ((ev.target as HTMLInputElement).name === 'mode' && settings.mode !== current.mode) {
    if (current.messages.length === 0) current.mode = settings.mode;
    else startConversation();
    writeSettingsForm();
    renderAll();
  }
});
el.settings.addEventListener('submit', (ev) => ev.preventDefault());

function sampling(): Sampling {
  return { temperature: settings.temperature, topP: settings.topP, maxTokens: settings.maxTokens, seed: settings.seed };
}

// ---- theme and layout ----

const THEMES = ['auto', 'light', 'dark'] as const;
function applyTheme(): void {
  if (settings.theme === 'auto') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = settings.theme;
  const label = `Theme: ${settings.theme}`;
  el.theme.setAttribute('aria-label', label);
  el.theme.title = label;
  el.theme.textContent = settings.theme === 'light' ? '☀' : settings.theme === 'dark' ? '☾' : '◐';
}
el.theme.addEventListener('click', () => {
  settings.theme = THEMES[(THEMES.indexOf(settings.theme) + 1) % THEMES.length]!;
  saveSettings(settings);
  applyTheme();
});

function setSidebar(open: boolean): void {
  document.body.classList.toggle('sidebar-open', open);
  el.menu.setAttribute('aria-expanded', String(open));
}
el.menu.addEventListener('click', () => setSidebar(!document.body.classList.contains('sidebar-open')));
// A tap outside the drawer (phone width) closes it.
document.querySelector('main')!.addEventListener('pointerdown', () => setSidebar(false));
document.addEventListener('keydown', (ev) => {
  if (ev.key !== 'Escape') return;
  if (running) running.controller.abort();
  else setSidebar(false);
});

// ---- conversations ----

function persist(): void {
  if (current.messages.length > 0 && !conversations.includes(current)) conversations.unshift(current);
  saveConversations(conversations);
}

function startConversation(): void {
  current = newConversation(settings.mode);
  writeSettingsForm();
}

el.newChat.addEventListener('click', () => {
  if (running) return;
  startConversation();
  renderAll();
  setSidebar(false);
  el.prompt.focus();
});

function renderConversationList(): void {
  el.conversations.replaceChildren(
    ...conversations.map((c) => {
      const li = document.createElement('li');
      const open = document.createElement('button');
      open.type = 'button';
      open.className = 'conversation';
      open.textContent = c.title || 'New chat';
      if (c.mode === 'session') open.textContent += ' · session';
      if (c === current) open.setAttribute('aria-current', 'true');
      open.addEventListener('click', () => {
        if (running) return;
        current = c;
        writeSettingsForm();
        renderAll();
        setSidebar(false);
      });
      const del = document.createElement('button');
      del.type = 'button';
      del.className = 'icon delete';
      del.textContent = '×';
      del.setAttribute('aria-label', `Delete "${open.textContent}"`);
      del.addEventListener('click', () => {
        if (running?.conversation === c) return;
        conversations = conversations.filter((x) => x !== c);
        if (c.mode === 'session' && c.sessionId !== null) void endSession(c.sessionId, settings.apiKey).catch(() => {});
        if (c === current) startConversation();
        saveConversations(conversations);
        renderAll();
      });
      li.append(open, del);
      return li;
    }),
  );
}

// ---- messages ----

async function copyText(text: string, button: HTMLButtonElement): Promise<void> {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // Not a secure context (plain http on a LAN address): the old way.
    const area = document.createElement('textarea');
    area.value = text;
    area.style.position = 'fixed';
    area.style.opacity = '0';
    document.body.append(area);
    area.select();
    document.execCommand('copy');
    area.remove();
  }
  const before = button.textContent;
  button.textContent = 'Copied';
  setTimeout(() => {
    button.textContent = before;
  }, 1200);
}

function button(label: string, title: string, onClick: (b: HTMLButtonElement) => void): HTMLButtonElement {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.title = title;
  b.setAttribute('aria-label', title);
  b.addEventListener('click', () => onClick(b));
  return b;
}

/** Fills a content element with rendered Markdown and a copy button on each code block. */
function fillMarkdown(content: HTMLElement, text: string): void {
  content.innerHTML = renderMarkdown(text);
  for (const pre of content.querySelectorAll('pre')) {
    const code = pre.textContent ?? '';
    const copy = button('Copy', 'Copy code', (b) => void copyText(code, b));
    copy.className = 'copy-code';
    pre.append(copy);
  }
}

/** An answer: Markdown, or a JSON code block for a JSON-mode answer (pretty-printed once it parses). */
function fillAnswer(content: HTMLElement, turn: Turn): void {
  if (!turn.json) {
    fillMarkdown(content, turn.content);
    return;
  }
  let code = turn.content;
  try {
    code = JSON.stringify(JSON.parse(code), null, 2);
  } catch {
    // Still streaming (or cut off by max_tokens): shown as it is.
  }
  content.innerHTML = renderCode(code, 'json');
  const copy = button('Copy', 'Copy code', (b) => void copyText(turn.content, b));
  copy.className = 'copy-code';
  content.querySelector('pre')?.append(copy);
}

/** Tool calls as folded cards: the function's name, then its arguments (pretty-printed when they parse), as text. */
function fillToolCalls(container: HTMLElement, calls: ToolCall[] | undefined): void {
  container.hidden = !calls?.length;
  container.replaceChildren(
    ...(calls ?? []).map((call) => {
      const card = document.createElement('details');
      card.className = 'tool-call';
      const summary = document.createElement('summary');
      summary.append(Object.assign(document.createElement('span'), { className: 'muted', textContent: 'Tool call ' }));
      summary.append(Object.assign(document.createElement('code'), { className: 'tool-name', textContent: call.function.name }));
      let args = call.function.arguments;
      try {
        args = JSON.stringify(JSON.parse(args), null, 2);
      } catch {
        // Partial (still streaming) or not JSON: shown as it is.
      }
      const pre = document.createElement('pre');
      pre.className = 'code tool-args';
      pre.textContent = args;
      card.append(summary, pre);
      return card;
    }),
  );
}

function formatStats(stats: AnswerStats): string {
  const parts: string[] = [];
  if (stats.tokPerSec !== null) parts.push(`${stats.tokPerSec.toFixed(1)} tok/s`);
  if (stats.ttftMs !== null) parts.push(`TTFT ${Math.round(stats.ttftMs)} ms`);
  if (stats.tokens !== null) parts.push(`${stats.tokens} tokens`);
  if (stats.historyTokens !== undefined) parts.push(`history_tokens ${stats.historyTokens}`);
  parts.push(`finish_reason: ${stats.finishReason ?? 'error'}`);
  return parts.join(' · ');
}

function statsElement(stats: AnswerStats): HTMLElement {
  const div = document.createElement('div');
  div.className = 'stats';
  div.textContent = formatStats(stats);
  div.dataset.finishReason = stats.finishReason ?? 'error';
  if (stats.historyTokens !== undefined) div.dataset.historyTokens = String(stats.historyTokens);
  return div;
}

function messageElement(turn: Turn, index: number, conversation: Conversation): HTMLElement {
  const div = document.createElement('div');
  div.className = `msg ${turn.role}`;
  div.dataset.index = String(index);
  if (turn.role === 'note') {
    div.textContent = turn.content;
    return div;
  }
  const role = document.createElement('div');
  role.className = 'role';
  role.textContent = turn.role === 'user' ? 'You' : 'Assistant';
  const content = document.createElement('div');
  content.className = 'content';
  if (turn.role === 'user') content.textContent = turn.content;
  else fillAnswer(content, turn);
  const tools = document.createElement('div');
  tools.className = 'tool-calls';
  fillToolCalls(tools, turn.tool_calls);
  const reasoning = document.createElement('details');
  reasoning.className = 'reasoning';
  reasoning.hidden = !turn.reasoning;
  reasoning.append(Object.assign(document.createElement('summary'), { textContent: 'Reasoning' }), document.createElement('div'));
  if (turn.reasoning) fillMarkdown(reasoning.lastElementChild as HTMLElement, turn.reasoning);
  if (turn.error) {
    const err = document.createElement('div');
    err.className = 'error';
    err.textContent = turn.error;
    content.append(err);
  }
  const actions = document.createElement('div');
  actions.className = 'actions';
  actions.append(button('Copy', 'Copy message', (b) => void copyText(turn.content, b)));
  const isLast = index === conversation.messages.length - 1;
  const lastUser = conversation.messages.findLastIndex((m) => m.role === 'user');
  const stateless = conversation.mode === 'stateless';
  if (stateless && turn.role === 'assistant' && isLast) {
    actions.append(button('Regenerate', 'Regenerate the answer', () => void regenerate()));
  }
  if (stateless && turn.role === 'user' && index === lastUser) {
    actions.append(button('Edit', 'Edit and resend', () => editTurn(div, index)));
  }
  div.append(role, reasoning, content, tools, actions);
  if (turn.stats) div.append(statsElement(turn.stats));
  return div;
}

function renderMessages(): void {
  el.messages.replaceChildren(...current.messages.map((t, i) => messageElement(t, i, current)));
  if (current.messages.length === 0) {
    const empty = document.createElement('p');
    empty.className = 'empty muted';
    empty.textContent =
      current.mode === 'session'
        ? 'Server-side session: the server keeps the conversation (LMDeploy interactive inference); each message sends only the new turn.'
        : 'Say something to the model.';
    el.messages.append(empty);
  }
  el.messages.scrollTop = el.messages.scrollHeight;
}

function renderSessionBar(): void {
  const session = current.mode === 'session';
  el.sessionBar.hidden = !session;
  if (!session) return;
  el.sessionInfo.textContent =
    current.sessionId === null ? 'Server-side session: starts with the next message' : `Session ${current.sessionId} · history_tokens ${current.historyTokens}`;
  el.sessionInfo.dataset.historyTokens = String(current.historyTokens);
  el.endSession.disabled = current.sessionId === null || running !== null;
}

function renderAll(): void {
  renderConversationList();
  renderMessages();
  renderSessionBar();
  const busy = running !== null;
  el.send.hidden = busy;
  el.stop.hidden = !busy;
}

function editTurn(div: HTMLElement, index: number): void {
  if (running) return;
  const turn = current.messages[index]!;
  const area = document.createElement('textarea');
  area.className = 'edit';
  area.value = turn.content;
  area.rows = Math.min(10, turn.content.split('\n').length + 1);
  area.setAttribute('aria-label', 'Edit message');
  const save = button('Send', 'Send the edited message', () => {
    const text = area.value.trim();
    if (!text) return;
    current.messages.splice(index);
    void ask(text);
  });
  save.className = 'primary';
  const cancel = button('Cancel', 'Cancel editing', () => renderMessages());
  area.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      save.click();
    } else if (ev.key === 'Escape') {
      ev.stopPropagation();
      cancel.click();
    }
  });
  const actions = document.createElement('div');
  actions.className = 'actions';
  actions.append(save, cancel);
  div.querySelector('.content')!.replaceChildren(area);
  div.querySelector('.actions')!.replaceWith(actions);
  area.focus();
}

async function regenerate(): Promise<void> {
  if (running || current.messages.at(-1)?.role !== 'assistant') return;
  current.messages.pop();
  await generate();
}

// ---- generation ----

async function ask(text: string): Promise<void> {
  if (running) return;
  readSettingsForm();
  current.messages.push({ role: 'user', content: text });
  if (!current.title) current.title = text.slice(0, 60);
  await generate();
}

async function generate(): Promise<void> {
  const conversation = current;
  const controller = new AbortController();
  running = { controller, conversation };
  const json = settings.jsonMode && conversation.mode === 'stateless';
  const turn: Turn = { role: 'assistant', content: '', ...(json ? { json } : {}) };
  conversation.messages.push(turn);
  persist();
  renderAll();
  const node = el.messages.lastElementChild as HTMLElement;
  node.classList.add('streaming');
  node.setAttribute('aria-busy', 'true'); // screen readers read the answer once, when it is complete
  const content = node.querySelector<HTMLElement>('.content')!;
  const reasoning = node.querySelector<HTMLDetailsElement>('details.reasoning')!;
  const tools = node.querySelector<HTMLElement>('.tool-calls')!;
  node.querySelector('.actions')!.replaceChildren();

  let frame = 0;
  const paint = () => {
    frame = 0;
    fillAnswer(content, turn);
    if (turn.tool_calls) fillToolCalls(tools, turn.tool_calls);
    if (turn.reasoning) {
      reasoning.hidden = false;
      fillMarkdown(reasoning.lastElementChild as HTMLElement, turn.reasoning);
    }
    const nearBottom = el.messages.scrollHeight - el.messages.scrollTop - el.messages.clientHeight < 120;
    if (nearBottom) el.messages.scrollTop = el.messages.scrollHeight;
  };
  const started = performance.now();
  let firstAt: number | null = null;
  let lastAt = started;
  let tokens: number | null = null;
  let finishReason: WireFinishReason = null;
  let historyTokens: number | undefined;
  let inputTokens = 0;
  const onEvent = (ev: StreamEvent) => {
    if (ev.reasoning) {
      firstAt ??= performance.now();
      lastAt = performance.now();
      turn.reasoning = (turn.reasoning ?? '') + ev.reasoning;
      if (!frame) frame = requestAnimationFrame(paint);
    }
    if (ev.text) {
      firstAt ??= performance.now();
      lastAt = performance.now();
      turn.content += ev.text;
      if (!frame) frame = requestAnimationFrame(paint);
    }
    for (const d of ev.toolCalls ?? []) {
      firstAt ??= performance.now();
      lastAt = performance.now();
      turn.tool_calls ??= [];
      const call = (turn.tool_calls[d.index] ??= { id: '', type: 'function', function: { name: '', arguments: '' } });
      if (d.id) call.id = d.id;
      if (d.function?.name) call.function.name += d.function.name;
      if (d.function?.arguments) call.function.arguments += d.function.arguments;
      if (!frame) frame = requestAnimationFrame(paint);
    }
    if (ev.tokens !== undefined) tokens = ev.tokens;
    if (ev.historyTokens !== undefined) historyTokens = ev.historyTokens;
    if (ev.inputTokens !== undefined) inputTokens = ev.inputTokens;
    if (ev.finishReason) finishReason = ev.finishReason;
  };
  try {
    if (conversation.mode === 'session') {
      const first = conversation.sessionId === null;
      conversation.sessionId ??= 1 + Math.floor(Math.random() * 2 ** 30);
      const userText = conversation.messages.at(-2)!.content;
      const prompt =
        first && settings.system.trim()
          ? [
              { role: 'system' as const, content: settings.system },
              { role: 'user' as const, content: userText },
            ]
          : userText;
      for await (const ev of streamInteractive(conversation.sessionId, prompt, sampling(), settings.apiKey, controller.signal)) onEvent(ev);
    } else {
      const messages = [
        ...(settings.system.trim() ? [{ role: 'system' as const, content: settings.system }] : []),
        ...conversation.messages
          .slice(0, -1)
          .filter((m): m is Turn & { role: 'user' | 'assistant' } => m.role === 'user' || m.role === 'assistant')
          .map((m) =>
            m.tool_calls?.length
              ? { role: m.role, content: m.content || null, tool_calls: m.tool_calls.filter(Boolean) }
              : { role: m.role, content: m.content },
          ),
      ];
      for await (const ev of streamChat(modelName || status?.model || '', messages, sampling(), settings.apiKey, controller.signal, json)) onEvent(ev);
    }
  } catch (err) {
    if (controller.signal.aborted) finishReason = 'abort';
    else {
      turn.error = (err as Error).message;
      if (err instanceof HttpError && err.status === 401) {
        el.apiKeyRow.hidden = false;
        turn.error += ' (enter the API key in the settings)';
      }
    }
  } finally {
    if (frame) cancelAnimationFrame(frame);
    if (controller.signal.aborted) finishReason = 'abort';
    const n = tokens as number | null;
    const decodeSeconds = firstAt === null ? 0 : (lastAt - firstAt) / 1000;
    turn.stats = {
      ttftMs: firstAt === null ? null : firstAt - started,
      tokens: n,
      tokPerSec: n !== null && n > 1 && decodeSeconds > 0 ? (n - 1) / decodeSeconds : null,
      finishReason: turn.error ? null : finishReason,
      ...(historyTokens === undefined ? {} : { historyTokens }),
    };
    if (conversation.mode === 'session' && historyTokens !== undefined) {
      conversation.historyTokens = historyTokens + inputTokens + (n ?? 0);
    }
    if (turn.tool_calls) turn.tool_calls = turn.tool_calls.filter(Boolean); // indexes the stream skipped
    running = null;
    persist();
    if (conversation === current) renderAll();
    else renderConversationList();
  }
}

el.composer.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = el.prompt.value.trim();
  if (!text || running) return;
  el.prompt.value = '';
  void ask(text);
});
el.prompt.addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    el.composer.requestSubmit();
  }
});
el.stop.addEventListener('click', () => running?.controller.abort());

el.endSession.addEventListener('click', async () => {
  if (running || current.sessionId === null) return;
  const id = current.sessionId;
  try {
    await endSession(id, settings.apiKey);
  } catch (err) {
    current.messages.push({ role: 'note', content: `could not end session ${id}: ${(err as Error).message}` });
  }
  current.messages.push({ role: 'note', content: `Session ${id} ended (${current.historyTokens} tokens freed); the next message starts a new one.` });
  current.sessionId = null;
  current.historyTokens = 0;
  persist();
  renderAll();
});

// ---- status strip ----

function renderStatus(error?: string): void {
  if (error || !status) {
    el.status.replaceChildren(Object.assign(document.createElement('span'), { className: 'bad', textContent: `server unreachable: ${error ?? ''}` }));
    return;
  }
  const items: [string, string][] = [
    ['model', status.model],
    ['devices', status.devices.join(', ') || '–'],
    // Absent from servers older than these fields (webui can point anywhere): shown only when known.
    ...(status.weights ? [['weights', status.weights] as [string, string]] : []),
    ['running', String(status.num_requests_running)],
    ['waiting', String(status.num_requests_waiting)],
    ['KV cache', `${(status.kv_cache_usage * 100).toFixed(1)}%${status.kv_cache_dtype ? ` ${status.kv_cache_dtype}` : ''}`],
  ];
  const spans = items.map(([k, v]) => {
    const span = document.createElement('span');
    span.dataset.key = k;
    span.append(Object.assign(document.createElement('b'), { textContent: `${k} ` }), v);
    return span;
  });
  const state = document.createElement('span');
  state.className = status.ready ? 'ok' : 'bad';
  state.textContent = status.ready ? 'ready' : `not ready: ${status.reason ?? ''}`;
  el.status.replaceChildren(state, ...spans);
}

async function pollStatus(): Promise<void> {
  if (!document.hidden) {
    try {
      status = await fetchStatus(AbortSignal.timeout(5000));
      if (status.model !== modelName) {
        modelName = status.model;
        el.modelName.textContent = modelName;
        document.title = `Chat · ${modelName}`;
      }
      if (status.auth_required) el.apiKeyRow.hidden = false;
      renderStatus();
    } catch (err) {
      renderStatus((err as Error).message);
    }
  }
  setTimeout(() => void pollStatus(), 2000);
}

applyTheme();
writeSettingsForm();
renderAll();
void pollStatus();
