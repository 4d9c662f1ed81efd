// The grammar worker thread: owns one xgrammar WebAssembly instance, its compiled-grammar cache
// (keyed by the grammar's text) and the matchers of the requests. A failed internal check in
// xgrammar calls abort(), after which the instance is unusable: the worker then answers what it
// was doing with `aborted` and exits, and GrammarService starts a fresh one.
import { parentPort } from 'node:worker_threads';
import { grammarSource } from './grammar-source.js';
import type { FromWorker, GrammarSpec, GrammarVocab, StepItem, StepResult, ToWorker } from './types.js';
import { loadXGrammar, type XCompiledGrammar, type XGrammarCompiler, type XGrammarMatcher } from './xgrammar.js';

const port = parentPort;
if (!port) throw new Error('grammar-worker.ts runs as a worker thread');

let compiler: XGrammarCompiler | null = null;
let vocab: GrammarVocab | null = null;
const compiled = new Map<string, Promise<XCompiledGrammar>>();
const matchers = new Map<number, XGrammarMatcher>();

class Aborted extends Error {}

function isAbort(err: unknown): boolean {
  return /Aborted\(/.test(String((err as Error)?.message ?? err));
}

async function init(v: GrammarVocab): Promise<void> {
  const xg = loadXGrammar();
  const tokens = v.tokens.length < v.vocabSize ? [...v.tokens, ...new Array<string>(v.vocabSize - v.tokens.length).fill('')] : v.tokens;
  const info = await xg.TokenizerInfo.createTokenizerInfo(tokens, v.vocabType, false, v.vocabSize, v.stopTokenIds);
  compiler = await xg.GrammarCompiler.createGrammarCompiler(info, true);
  vocab = v;
  (globalThis as { xgrammar?: unknown }).xgrammar = xg;
}

function compile(key: string, spec: GrammarSpec): Promise<XCompiledGrammar> {
  let c = compiled.get(key);
  if (!c) {
    if (!compiler) throw new Error('grammar worker: not initialised');
    const src = grammarSource(spec);
    const comp = compiler;
    c =
      src.kind === 'json_schema'
        ? comp.compileJSONSchema(src.text, false, -1, [',', ':'], true)
        : src.kind === 'structural_tag'
          ? comp.compileStructuralTag(src.tag)
          : comp.compileGrammar(src.text, 'root');
    compiled.set(key, c);
    c.catch(() => compiled.delete(key));
  }
  return c;
}

async function open(id: number, key: string, spec: GrammarSpec, replay: number[]): Promise<void> {
  const g = await compile(key, spec);
  const xg = (globalThis as { xgrammar?: ReturnType<typeof loadXGrammar> }).xgrammar!;
  const m = await xg.GrammarMatcher.createGrammarMatcher(g, vocab!.stopTokenIds);
  for (const t of replay) {
    if (!m.acceptToken(t)) {
      m.dispose();
      throw new Error(`the grammar rejects the already generated token ${t}`);
    }
  }
  matchers.get(id)?.dispose();
  matchers.set(id, m);
}

async function step(items: StepItem[]): Promise<StepResult[]> {
  const out: StepResult[] = [];
  for (const item of items) {
    const m = matchers.get(item.matcher);
    if (!m) {
      out.push({ mask: null, error: `no grammar matcher ${item.matcher}` });
      continue;
    }
    try {
      const bad = item.accept.find((t) => m.isTerminated() || !m.acceptToken(t));
      if (bad !== undefined) throw new Error(`the grammar rejects the sampled token ${bad}`);
      // Asking a terminated matcher (it accepted a stop token) for a mask aborts the instance: refuse here.
      if (m.isTerminated()) throw new Error('the grammar has already ended: no token can follow its stop token');
      const bits = await m.getNextTokenBitmask();
      out.push({ mask: new Uint32Array(bits.buffer, bits.byteOffset, bits.length).slice() });
    } catch (err) {
      if (isAbort(err)) {
        // The instance is gone: this item failed, the rest are redone by a fresh worker.
        out.push({ mask: null, error: `the grammar engine aborted: ${(err as Error).message}` });
        while (out.length < items.length) out.push({ mask: null, error: 'retry' });
        throw Object.assign(new Aborted('aborted'), { results: out });
      }
      out.push({ mask: null, error: (err as Error).message });
    }
  }
  return out;
}

async function handle(msg: ToWorker): Promise<unknown> {
  switch (msg.op) {
    case 'init':
      return init(msg.vocab);
    case 'compile':
      await compile(msg.key, msg.spec);
      return undefined;
    case 'open':
      return open(msg.matcher, msg.key, msg.spec, msg.replay);
    case 'step':
      return step(msg.items);
    case 'close':
      matchers.get(msg.matcher)?.dispose();
      matchers.delete(msg.matcher);
      return undefined;
    case 'crash':
      if (!compiler) throw new Error('grammar worker: not initialised');
      await compiler.compileGrammar('root ::= undefined_rule', 'root');
      return undefined;
  }
}

// One message at a time, in order (matcher state depends on it).
let chain: Promise<void> = Promise.resolve();
port.on('message', (msg: ToWorker) => {
  chain = chain.then(async () => {
    const id = 'id' in msg ? msg.id : -1;
    try {
      const value = await handle(msg);
      if (id >= 0) port.postMessage({ id, ok: true, value } satisfies FromWorker);
    } catch (err) {
      if (err instanceof Aborted) {
        port.postMessage({ id, ok: true, value: (err as Aborted & { results: StepResult[] }).results, aborted: true } satisfies FromWorker);
        process.exit(1);
      }
      const aborted = isAbort(err);
      if (id >= 0) port.postMessage({ id, ok: false, error: String((err as Error)?.message ?? err), aborted } satisfies FromWorker);
      if (aborted) process.exit(1);
    }
  });
});
