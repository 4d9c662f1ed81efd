// A deterministic EngineClient for server tests (no GPU). The codec maps every character to one
// token; generation replays a fixed story one character per token with a small delay, honouring
// maxTokens, stop strings, stop token ids, ignoreEos, logprobs and the session length. Requests are
// checked by the real engine's checkRequest, so the server sees the same 400s (and the same
// max_tokens cap) as in production. It counts live requests so tests can prove that aborted and
// disconnected requests are released.
import type { EngineClient, EngineHealth, EngineStats, GenerateDelta, GenerateRequest, LoadedFormat, TokenLogprob } from '../../src/engine/types.js';
import type { ChatMessage, ChatTemplateOptions, TextCodec } from '../../src/common/types.js';
import type { SamplingParams } from '../../src/sampling/params.js';
import { EngineOverloadedError, EngineUnavailableError } from '../../src/common/errors.js';
import { checkRequest } from '../../src/engine/validate.js';

export const BOS_ID = 1;
export const EOS_ID = 2;
const SPECIAL_TEXT = new Map([
  [BOS_ID, '<s>'],
  [EOS_ID, '</s>'],
]);
/** Characters map to codePoint + CHAR_OFFSET so ids 0..2 stay free for <unk>, <s>, </s>. */
const CHAR_OFFSET = 3;
/** Every Unicode code point has a token. */
export const VOCAB_SIZE = 0x110000 + CHAR_OFFSET;

export const STORY =
  'Once upon a time, a little robot named Pip lived in a quiet town. Pip liked to count the stars. ' +
  'One night a star fell into the garden, and Pip carried it home. The end.';

export class ToyCodec implements TextCodec {
  readonly bosTokenId = BOS_ID;

  encode(text: string, options?: { addSpecialTokens?: boolean }): number[] {
    const ids: number[] = options?.addSpecialTokens === false ? [] : [BOS_ID];
    for (let i = 0; i < text.length; ) {
      if (text.startsWith('<s>', i)) {
        ids.push(BOS_ID);
        i += 3;
        continue;
      }
      if (text.startsWith('</s>', i)) {
        ids.push(EOS_ID);
        i += 4;
        continue;
      }
      const cp = text.codePointAt(i)!;
      ids.push(cp + CHAR_OFFSET);
      i += cp > 0xffff ? 2 : 1;
    }
    return ids;
  }

  decode(tokenIds: readonly number[], options?: { skipSpecialTokens?: boolean }): string {
    let text = '';
    for (const id of tokenIds) {
      const special = SPECIAL_TEXT.get(id);
      if (special !== undefined) text += options?.skipSpecialTokens ? '' : special;
      // Like the real tokenizer, ids outside the vocabulary decode to nothing.
      else if (id >= CHAR_OFFSET && id < VOCAB_SIZE) text += String.fromCodePoint(id - CHAR_OFFSET);
    }
    return text;
  }

  /** Template kwargs, when given, are rendered as "{k=v}" after the generation prompt (so tests can see them). */
  applyChatTemplate(messages: readonly ChatMessage[], options?: ChatTemplateOptions): string {
    const turns = messages.map((m) => `<|${m.role}|>${m.content}</s>`).join('');
    const kwargs = Object.entries(options?.kwargs ?? {})
      .map(([k, v]) => `{${k}=${JSON.stringify(v)}}`)
      .join('');
    return `<s>${turns}${options?.addGenerationPrompt === false ? '' : '<|assistant|>'}${kwargs}`;
  }
}

export interface FakeEngineOptions {
  modelName?: string;
  sessionLen?: number;
  /** Delay before each generated token, so streams interleave and aborts land mid-generation. */
  tokenDelayMs?: number;
  /** More live requests than this -> EngineOverloadedError (HTTP 429). */
  maxLive?: number;
  /** The text generated (default STORY), e.g. a "<think>...</think>" answer for reasoning tests. */
  story?: string;
}

export class FakeEngine implements EngineClient {
  readonly modelName: string;
  readonly sessionLen: number;
  readonly codec = new ToyCodec();
  /** What generation_config.json would give (serve --generation-config auto). */
  generationDefaults: Partial<SamplingParams> = {};
  format?: LoadedFormat;
  readonly story: string;
  tokenDelayMs: number;
  maxLive: number;
  /** Every request generate() was given, in order (tests inspect seeds, caps, prompts). */
  readonly requests: GenerateRequest[] = [];
  /** Set to make generate() fail with this error (e.g. EngineOverloadedError). */
  failWith: Error | null = null;
  /** Set to make generation throw this after its third token (errors after the stream started). */
  failMidStream: Error | null = null;
  healthState: EngineHealth = { ready: true };
  numAborted = 0;
  private readonly live = new Set<string>();
  private readonly aborted = new Set<string>();
  private readonly seenPrompts: number[][] = [];
  private nextId = 0;
  private totals = { prefixCacheQueries: 0, prefixCacheHits: 0, promptTokens: 0, generationTokens: 0, finished: 0 };
  private shutDown = false;

  constructor(options: FakeEngineOptions = {}) {
    this.modelName = options.modelName ?? 'fake-model';
    this.sessionLen = options.sessionLen ?? 256;
    this.tokenDelayMs = options.tokenDelayMs ?? 1;
    this.maxLive = options.maxLive ?? Infinity;
    this.story = options.story ?? STORY;
  }

  /** Requests generating right now; 0 after every test proves nothing leaked. */
  get numLive(): number {
    return this.live.size;
  }

  generate(request: GenerateRequest, signal?: AbortSignal): AsyncIterable<GenerateDelta> {
    return this.run(request, signal);
  }

  abort(requestId: string): void {
    if (this.live.delete(requestId)) {
      this.aborted.add(requestId);
      this.numAborted++;
    }
  }

  stats(): EngineStats {
    return {
      numRunning: this.live.size,
      numWaiting: 0,
      kvCacheUsage: Math.min(1, this.live.size / 64),
      numKvBlocks: 64,
      numFreeKvBlocks: Math.max(0, 64 - this.live.size),
      prefixCacheQueries: this.totals.prefixCacheQueries,
      prefixCacheHits: this.totals.prefixCacheHits,
      promptTokensTotal: this.totals.promptTokens,
      generationTokensTotal: this.totals.generationTokens,
      numPreemptionsTotal: 0,
      requestsFinishedTotal: this.totals.finished,
    };
  }

  health(): EngineHealth {
    return this.healthState;
  }

  async shutdown(): Promise<void> {
    this.shutDown = true;
  }

  private async *run(request: GenerateRequest, signal?: AbortSignal): AsyncGenerator<GenerateDelta> {
    if (this.shutDown) throw new EngineUnavailableError('shutting down');
    if (this.failWith) throw this.failWith;
    const maxTokens = checkRequest(request, { sessionLen: this.sessionLen, vocabSize: VOCAB_SIZE });
    if (this.live.size >= this.maxLive) throw new EngineOverloadedError(this.live.size, this.maxLive);
    const requestId = request.requestId ?? `fake-${this.nextId++}`;
    this.requests.push(request);
    this.live.add(requestId);
    const onAbort = () => this.abort(requestId);
    signal?.addEventListener('abort', onAbort);
    try {
      yield* this.steps(requestId, request, maxTokens, signal);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      this.live.delete(requestId);
    }
  }

  /** The generation loop: one story character per step until a stop condition. */
  private async *steps(requestId: string, request: GenerateRequest, maxTokens: number, signal?: AbortSignal): AsyncGenerator<GenerateDelta> {
    const prompt = request.promptTokenIds;
    const cachedTokens = this.lookupPrefix(prompt);
    const usage = { promptTokens: prompt.length, completionTokens: 0, cachedTokens };
    const story = this.story;
    const offset = request.sampling.temperature === 0 ? 0 : Math.abs(request.sampling.seed) % story.length;
    const stopIds = new Set(request.stopTokenIds);
    // The engine's phases (GenerateDelta.timing): scheduled at once, the first token after one delay.
    const scheduledMs = performance.now();
    let firstTokenMs: number | null = null;
    const timing = () => ({
      queueSeconds: 0,
      prefillSeconds: firstTokenMs === null ? null : (firstTokenMs - scheduledMs) / 1000,
      decodeSeconds: firstTokenMs === null ? null : (performance.now() - firstTokenMs) / 1000,
    });
    let pending = '';
    for (let step = 0; ; step++) {
      await sleep(this.tokenDelayMs);
      if (signal?.aborted || this.aborted.has(requestId)) {
        this.aborted.delete(requestId);
        yield { requestId, text: '', tokenIds: [], finishReason: 'abort', usage: { ...usage }, timing: timing() };
        return;
      }
      firstTokenMs ??= performance.now();
      if (step === 3 && this.failMidStream) throw this.failMidStream;
      const position = offset + step;
      const atStoryEnd = position >= story.length && position % story.length === 0 && !request.ignoreEos;
      const tokenId = atStoryEnd ? EOS_ID : story.codePointAt(position % story.length)! + CHAR_OFFSET;
      usage.completionTokens++;
      this.totals.generationTokens++;
      const logprobs = request.sampling.logprobs === null ? undefined : [this.logprobFor(tokenId, step, request.sampling.logprobs)];
      let finishReason: GenerateDelta['finishReason'] = null;
      let stopReason: string | number | null = null;
      let text = '';
      if (tokenId === EOS_ID || stopIds.has(tokenId)) {
        finishReason = 'stop';
        if (tokenId !== EOS_ID) stopReason = tokenId;
        text = pending;
      } else {
        pending += this.codec.decode([tokenId], { skipSpecialTokens: request.skipSpecialTokens });
        const held = splitAtStop(pending, request.stop, request.includeStopStrInOutput ?? false);
        if (held.stopped) {
          finishReason = 'stop';
          stopReason = held.stop ?? null;
          text = held.emit;
        } else if (usage.completionTokens >= maxTokens) {
          finishReason = 'length';
          text = pending;
        } else {
          text = held.emit;
          pending = held.keep;
        }
      }
      if (finishReason) {
        this.totals.finished++;
        this.live.delete(requestId);
      }
      yield {
        requestId,
        text,
        tokenIds: [tokenId],
        logprobs,
        finishReason,
        ...(finishReason ? { stopReason } : {}),
        usage: { ...usage },
        ...(finishReason ? { timing: timing() } : {}),
      };
      if (finishReason) return;
    }
  }

  private logprobFor(tokenId: number, step: number, numTop: number): TokenLogprob {
    const logprob = -0.25 * ((step % 5) + 1);
    const token = this.codec.decode([tokenId]);
    const top = Array.from({ length: numTop }, (_, j) => {
      const id = j === 0 ? tokenId : CHAR_OFFSET + 97 + ((tokenId + j) % 26);
      return { tokenId: id, token: this.codec.decode([id]), logprob: logprob - 0.5 * j };
    });
    return { tokenId, token, logprob, top };
  }

  /** A toy prefix cache: the longest prefix (in blocks of 4) shared with an earlier prompt. */
  private lookupPrefix(prompt: readonly number[]): number {
    let best = 0;
    for (const seen of this.seenPrompts) {
      let n = 0;
      while (n < seen.length && n < prompt.length - 1 && seen[n] === prompt[n]) n++;
      best = Math.max(best, n - (n % 4));
    }
    this.seenPrompts.push([...prompt]);
    if (this.seenPrompts.length > 64) this.seenPrompts.shift();
    this.totals.prefixCacheQueries += prompt.length;
    this.totals.prefixCacheHits += best;
    this.totals.promptTokens += prompt.length;
    return best;
  }
}

/** Emit what cannot be the start of a stop string; keep the rest until the next token decides. */
function splitAtStop(pending: string, stops: readonly string[], includeStop: boolean): { stopped: boolean; stop?: string; emit: string; keep: string } {
  for (const stop of stops) {
    const at = pending.indexOf(stop);
    if (at >= 0) return { stopped: true, stop, emit: pending.slice(0, at + (includeStop ? stop.length : 0)), keep: '' };
  }
  let keepFrom = pending.length;
  for (const stop of stops) {
    for (let n = Math.min(stop.length - 1, pending.length); n > 0; n--) {
      if (pending.endsWith(stop.slice(0, n))) {
        keepFrom = Math.min(keepFrom, pending.length - n);
        break;
      }
    }
  }
  return { stopped: false, emit: pending.slice(0, keepFrom), keep: pending.slice(keepFrom) };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A fake engine behind a real server on 127.0.0.1:0, quiet unless LOG=1. */
export async function startFakeServer(
  engineOptions: FakeEngineOptions = {},
  serverOptions: Partial<import('../../src/server/app.js').ServerOptions> = {},
): Promise<{ engine: FakeEngine; url: string; close(): Promise<void>; logLines: string[] }> {
  const { startServer } = await import('../../src/server/listen.js');
  const engine = new FakeEngine(engineOptions);
  const logLines: string[] = [];
  const server = await startServer(engine, {
    modelName: engine.modelName,
    apiKeys: [],
    allowOrigins: [],
    logLevel: process.env.LOG ? 'debug' : 'info',
    logSink: (line) => {
      logLines.push(line);
      if (process.env.LOG) process.stderr.write(`${line}\n`);
    },
    ...serverOptions,
    host: '127.0.0.1',
    port: 0,
  });
  return { engine, url: server.url, close: () => server.close(), logLines };
}
