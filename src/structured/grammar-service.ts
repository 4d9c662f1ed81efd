// The engine's side of grammar-constrained decoding: compiles grammars (cached by their text) and
// keeps one matcher per guided request in a worker thread (grammar-worker.ts), so xgrammar's work
// runs beside the event loop and an abort() inside it costs one request, not the server. The
// service remembers every matcher's grammar and accepted tokens: when the worker dies it starts a
// new one and rebuilds the matchers there by replaying their tokens.
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { childEntry } from '../common/child-entry.js';
import { InvalidRequestError } from '../common/errors.js';
import { createLogger } from '../common/log.js';
import { grammarKey } from './grammar-source.js';
import type { FromWorker, GrammarSpec, GrammarVocab, StepItem, StepResult, ToWorker } from './types.js';

const log = createLogger('structured');

/** The grammar engine failed on one request (not the request's fault, or a grammar it could not compile). */
export class GrammarError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GrammarError';
  }
}

interface MatcherState {
  key: string;
  spec: GrammarSpec;
  /** Every token the matcher has accepted, for a replay in a fresh worker. */
  accepted: number[];
  /** The worker generation holding it. */
  generation: number;
}

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void };
type WorkerRequest = ToWorker extends infer T ? (T extends { id: number } ? Omit<T, 'id'> : never) : never;

export class GrammarService {
  private worker: Worker | null = null;
  private ready: Promise<void> | null = null;
  private generation = 0;
  private nextId = 1;
  private nextMatcher = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly matchers = new Map<number, MatcherState>();
  /** Worker restarts after an abort or crash (tests and logs). */
  restarts = 0;

  constructor(private readonly vocab: GrammarVocab) {}

  /** Opens a matcher for a new request; throws InvalidRequestError when the grammar does not compile. */
  async open(spec: GrammarSpec): Promise<number> {
    const key = grammarKey(spec);
    const id = this.nextMatcher++;
    const generation = await this.start();
    try {
      await this.request({ op: 'open', matcher: id, key, spec, replay: [] });
    } catch (err) {
      throw new InvalidRequestError(`the grammar could not be compiled: ${(err as Error).message}`);
    }
    this.matchers.set(id, { key, spec, accepted: [], generation });
    return id;
  }

  /**
   * Accepts each matcher's new tokens and returns its next-token bitmask. A failed item has a null
   * mask and an error; the others are unaffected, also when the worker died on that item.
   */
  async step(items: readonly StepItem[]): Promise<StepResult[]> {
    const results = new Array<StepResult>(items.length);
    let todo = items.map((_, i) => i);
    for (let attempt = 0; attempt < 2 && todo.length > 0; attempt++) {
      const generation = await this.start();
      const send: number[] = [];
      for (const i of todo) {
        const item = items[i]!;
        const m = this.matchers.get(item.matcher);
        if (!m) {
          results[i] = { mask: null, error: `no grammar matcher ${item.matcher}` };
          continue;
        }
        if (m.generation !== generation) {
          try {
            await this.request({ op: 'open', matcher: item.matcher, key: m.key, spec: m.spec, replay: m.accepted });
            m.generation = generation;
          } catch (err) {
            results[i] = { mask: null, error: `rebuilding its grammar matcher failed: ${(err as Error).message}` };
            continue;
          }
        }
        send.push(i);
      }
      if (send.length === 0) break;
      let got: StepResult[];
      try {
        got = (await this.request({ op: 'step', items: send.map((i) => items[i]!) })) as StepResult[];
      } catch (err) {
        // The worker died before it took the step (another request's abort): redo it in a new one.
        if (this.generation !== generation || !this.worker) {
          todo = send;
          continue;
        }
        for (const i of send) results[i] = { mask: null, error: (err as Error).message };
        break;
      }
      const retry: number[] = [];
      send.forEach((i, j) => {
        const r = got[j]!;
        if (r.error === 'retry') {
          retry.push(i);
          return;
        }
        results[i] = r;
        if (r.mask) this.matchers.get(items[i]!.matcher)?.accepted.push(...items[i]!.accept);
      });
      todo = retry;
    }
    for (const i of todo) results[i] ??= { mask: null, error: 'the grammar engine failed twice' };
    return results;
  }

  close(matcher: number): void {
    if (!this.matchers.delete(matcher)) return;
    if (this.worker) this.worker.postMessage({ op: 'close', matcher } satisfies ToWorker);
  }

  /** Tests: makes the worker's WebAssembly instance abort, as a failed check inside xgrammar does. */
  async crashForTest(): Promise<void> {
    await this.start();
    await this.request({ op: 'crash' }).catch(() => undefined);
  }

  get numMatchers(): number {
    return this.matchers.size;
  }

  destroy(): void {
    const w = this.worker;
    this.worker = null;
    this.ready = null;
    void w?.terminate();
  }

  /** The live worker's generation, starting one when there is none. */
  private async start(): Promise<number> {
    if (!this.ready) {
      const generation = ++this.generation;
      const worker = spawnWorker();
      worker.unref();
      this.worker = worker;
      // xgrammar prints why it aborted on stderr ("[FATAL] file:line: message"): keep it for the error.
      let fatal = '';
      worker.stderr.on('data', (chunk: Buffer) => {
        for (const line of chunk.toString('utf8').split('\n')) {
          const m = /\[FATAL\][^:]*:\d+: (.*)/.exec(line);
          if (m) fatal = m[1]!;
          else if (line.trim() && !line.startsWith('Aborted(')) process.stderr.write(`${line}\n`);
        }
      });
      worker.on('message', (msg: FromWorker) => {
        const p = this.pending.get(msg.id);
        this.pending.delete(msg.id);
        if (msg.aborted) onGone('aborted');
        if (!p) return;
        this.refWorker(worker);
        if (msg.ok) p.resolve(msg.value);
        // The abort's reason reaches stderr a moment after the reply.
        else if (msg.aborted) setTimeout(() => p.reject(new GrammarError(fatal || msg.error)), 50);
        else p.reject(new GrammarError(msg.error));
      });
      const onGone = (why: string) => {
        if (this.worker !== worker) return;
        void worker.terminate();
        this.worker = null;
        this.ready = null;
        this.restarts++;
        log.warn(`grammar worker ${why}; the next guided step starts a new one`);
        for (const [id, p] of this.pending) {
          this.pending.delete(id);
          p.reject(new GrammarError(`the grammar engine ${why}`));
        }
      };
      worker.on('error', (err) => onGone(`failed: ${err.message}`));
      worker.on('exit', (code) => onGone(`exited (code ${code})`));
      const ready = this.request({ op: 'init', vocab: this.vocab }).then(() => undefined);
      this.ready = ready;
      ready.catch(() => {
        if (this.ready === ready) this.ready = null;
      });
      await ready;
      return generation;
    }
    await this.ready;
    return this.generation;
  }

  /** The worker keeps the process alive only while a request waits on it. */
  private refWorker(worker: Worker): void {
    if (this.pending.size > 0) worker.ref();
    else worker.unref();
  }

  private request(msg: WorkerRequest): Promise<unknown> {
    const worker = this.worker;
    if (!worker) return Promise.reject(new GrammarError('the grammar engine is not running'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.refWorker(worker);
      worker.postMessage({ ...msg, id } as ToWorker);
    });
  }
}

/** grammar-worker.js from dist/, or the .ts under tsx (tests, benches), whose loader a worker thread registers itself. */
function spawnWorker(): Worker {
  const { path } = childEntry(import.meta.url, 'grammar-worker');
  if (!path.endsWith('.ts')) return new Worker(path, { stderr: true });
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const code = `import(${JSON.stringify(tsxApi)}).then((api) => { api.register(); return import(${JSON.stringify(pathToFileURL(path).href)}); });`;
  return new Worker(code, { eval: true, stderr: true });
}
