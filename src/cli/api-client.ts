// `api_client <url>`: a terminal client for a running server. Interactive chat with streaming, or
// one-shot with --prompt. Talks plain HTTP + SSE so it needs nothing beyond Node.
import { createInterface } from 'node:readline/promises';

export interface ApiClientArgs {
  url: string;
  prompt?: string;
  apiKey?: string;
  model?: string;
  maxTokens: number;
  temperature?: number;
}

interface ChatTurn {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export async function runApiClient(args: ApiClientArgs): Promise<void> {
  const base = args.url.replace(/\/+$/, '').replace(/\/v1$/, '');
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (args.apiKey ?? process.env.OPENAI_API_KEY) headers.authorization = `Bearer ${args.apiKey ?? process.env.OPENAI_API_KEY}`;
  const model = args.model ?? (await firstModel(base, headers));
  const history: ChatTurn[] = [];
  const ask = async (text: string, out: NodeJS.WritableStream) => {
    history.push({ role: 'user', content: text });
    try {
      const answer = await streamChat(base, headers, { model, messages: history, max_tokens: args.maxTokens, temperature: args.temperature }, out);
      history.push({ role: 'assistant', content: answer });
    } catch (err) {
      history.pop(); // a failed turn must not leave two user messages in a row
      throw err;
    }
  };
  if (args.prompt !== undefined) {
    await ask(args.prompt, process.stdout);
    process.stdout.write('\n');
    return;
  }
  const rl = createInterface({ input: process.stdin, terminal: process.stdin.isTTY });
  process.stderr.write(`connected to ${base} (model ${model}); an empty line or Ctrl-D quits\n`);
  try {
    process.stdout.write('user> ');
    // Iterating the interface buffers lines that arrive while an answer streams (question() drops them).
    for await (const line of rl) {
      if (line.trim() === '') break;
      process.stdout.write('assistant> ');
      await ask(line, process.stdout);
      process.stdout.write('\nuser> ');
    }
  } finally {
    rl.close();
  }
}

/** fetch, with a failure that says which URL could not be reached and what to check. */
async function reach(url: string, init?: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new Error(`cannot reach ${url}: ${cause?.code ?? cause?.message ?? (err as Error).message}; is the server running? (node dist/cli.js serve <model>)`);
  }
}

async function firstModel(base: string, headers: Record<string, string>): Promise<string> {
  const res = await reach(`${base}/v1/models`, { headers });
  if (!res.ok) throw new Error(`GET ${base}/v1/models answered ${res.status}: ${await res.text()}`);
  const body = (await res.json()) as { data?: { id: string }[] };
  const id = body.data?.[0]?.id;
  if (!id) throw new Error(`${base}/v1/models lists no model`);
  return id;
}

/** POSTs a streaming chat completion and writes each content delta as it arrives; returns the whole answer. */
async function streamChat(base: string, headers: Record<string, string>, body: object, out: NodeJS.WritableStream): Promise<string> {
  const res = await reach(`${base}/v1/chat/completions`, { method: 'POST', headers, body: JSON.stringify({ ...body, stream: true }) });
  if (!res.ok || !res.body) {
    const text = await res.text();
    let message = text;
    try {
      message = (JSON.parse(text) as { error?: { message?: string } }).error?.message ?? text;
    } catch {
      // not JSON: keep the raw text
    }
    throw new Error(`the server answered ${res.status}: ${message}`);
  }
  const decoder = new TextDecoder();
  let buffered = '';
  let answer = '';
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffered += decoder.decode(chunk, { stream: true });
    let cut: number;
    while ((cut = buffered.indexOf('\n\n')) >= 0) {
      const event = buffered.slice(0, cut);
      buffered = buffered.slice(cut + 2);
      for (const line of event.split('\n')) {
        if (!line.startsWith('data:')) continue;
        const data = line.slice(5).trim();
        if (data === '[DONE]') return answer;
        const parsed = JSON.parse(data) as { choices?: { delta?: { content?: string } }[]; error?: { message: string } };
        if (parsed.error) throw new Error(parsed.error.message);
        const piece = parsed.choices?.[0]?.delta?.content ?? '';
        answer += piece;
        out.write(piece);
      }
    }
  }
  return answer;
}
