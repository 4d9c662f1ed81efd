// Grammar-engine cost with a real-sized vocabulary: xgrammar's compile and per-token mask time grow
// with the vocabulary, and the bench model's 512 tokens say nothing about a 100k+ one. No hub is
// reachable, so the vocabulary is an OpenAI tiktoken encoding (js-tiktoken's cl100k_base or
// o200k_base ranks), turned into what src/structured/vocab.ts hands xgrammar for a byte-level
// tokenizer.json: each id's bytes as GPT-2's byte-to-unicode characters, in id order, special tokens
// at their ids, unused ids empty. Everything goes through the server's own GrammarService (worker
// thread included): per grammar the cold compile (first open), the cached one (second open of the
// same text), and the mask time per token (accept the previous token, compute the next bitmask,
// round trip to the worker) while a matcher walks a valid output tokenized with the same encoding.
// Usage: npm run bench:structured-vocab [-- --encoding o200k_base] [-- --json]
import { Tiktoken, type TiktokenBPE } from 'js-tiktoken/lite';
import type { GrammarSpec, GrammarVocab } from '../src/structured/types.js';
import { GrammarService } from '../src/structured/grammar-service.js';
import { nodeVersion, wantsJson } from './common.js';
import { TEN_PROPERTY_SCHEMA } from './bench-model.js';

const ENCODINGS = ['cl100k_base', 'o200k_base'] as const;
type Encoding = (typeof ENCODINGS)[number];

function encodingArg(argv: readonly string[]): Encoding {
  const at = argv.indexOf('--encoding');
  if (at < 0) return 'cl100k_base';
  const name = argv[at + 1];
  if (!(ENCODINGS as readonly string[]).includes(name ?? '')) throw new Error(`--encoding must be one of ${ENCODINGS.join(', ')}, got ${name}`);
  return name as Encoding;
}

/** GPT-2's bytes_to_unicode: the printable character standing for each byte (as ByteLevel tokenizers store tokens). */
const CHAR_OF_BYTE: readonly string[] = (() => {
  const chars: string[] = [];
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    chars.push(String.fromCodePoint(printable ? b : next++));
  }
  return chars;
})();

/** The ranks file's lines are "<token> <first rank> <base64 bytes>..." (js-tiktoken's compressed form). */
function byteLevelVocab(bpe: TiktokenBPE): { vocab: GrammarVocab; eos: number } {
  const tokens: string[] = [];
  for (const line of bpe.bpe_ranks.split('\n')) {
    if (line === '') continue;
    const [, offset, ...pieces] = line.split(' ');
    const first = Number.parseInt(offset!, 10);
    pieces.forEach((b64, i) => {
      tokens[first + i] = Array.from(Buffer.from(b64, 'base64'), (b) => CHAR_OF_BYTE[b]!).join('');
    });
  }
  for (const [text, id] of Object.entries(bpe.special_tokens)) tokens[id] = text;
  for (let i = 0; i < tokens.length; i++) tokens[i] ??= '';
  const eos = bpe.special_tokens['<|endoftext|>'];
  if (eos === undefined) throw new Error('the encoding has no <|endoftext|>');
  return { vocab: { tokens, vocabType: 'byte_level', vocabSize: tokens.length, stopTokenIds: [eos] }, eos };
}

const SCHEMA = TEN_PROPERTY_SCHEMA;
const VALUES = Array.from({ length: 10 }, (_, i) => [`p${i}`, i % 3 === 0 ? `item ${i} ok` : i % 3 === 1 ? 100 + i * 37 : 'green'] as const);
/** A document valid under SCHEMA, compact as the schema grammar wants it (separators "," and ":"). */
const DOCUMENT = JSON.stringify(Object.fromEntries(VALUES));
/** The same as any JSON object: xgrammar's grammar for properties beyond a schema's writes ", " between them. */
const LOOSE_DOCUMENT = `{${VALUES.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(', ')}}`;

interface Case {
  name: string;
  spec: GrammarSpec;
  /** A valid output, walked token by token. */
  output: string;
}

const CASES: Case[] = [
  { name: 'json_schema (10 properties)', spec: { type: 'json_schema', schema: SCHEMA }, output: DOCUMENT },
  { name: 'json_object', spec: { type: 'json_object' }, output: LOOSE_DOCUMENT },
  {
    name: 'regex',
    spec: { type: 'regex', pattern: '[a-z]{3,12}@[a-z]{2,10}\\.(com|org|net) [0-9]{4}-[0-9]{2}-[0-9]{2}' },
    output: 'alice@example.org 2024-05-17',
  },
  {
    name: 'ebnf (arithmetic)',
    spec: {
      type: 'grammar',
      ebnf: 'root ::= expr\nexpr ::= term (("+" | "-") term)*\nterm ::= factor (("*" | "/") factor)*\nfactor ::= [0-9]+ | "(" expr ")"',
    },
    output: '(12+345)*6-(78/9+10)*11',
  },
];

const json = wantsJson();
const say = (s: string) => {
  if (!json) process.stderr.write(`${s}\n`);
};
const encoding = encodingArg(process.argv);
const ranks = ((await import(`js-tiktoken/ranks/${encoding}`)) as { default: TiktokenBPE }).default;
const { vocab, eos } = byteLevelVocab(ranks);
const tokenizer = new Tiktoken(ranks);
say(`${encoding}: ${vocab.vocabSize} token ids (byte_level), eos ${eos}`);

const service = new GrammarService(vocab);
let t = performance.now();
const first = await service.open({ type: 'grammar', ebnf: 'root ::= "a"' }); // starts the worker: TokenizerInfo + compiler
const initMs = performance.now() - t;
service.close(first);

const WALKS = 10;
const pct = (sorted: readonly number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
const isAllowed = (mask: Uint32Array, id: number) => ((mask[id >> 5]! >>> (id & 31)) & 1) === 1;
const rows: Record<string, number | string>[] = [];
for (const c of CASES) {
  t = performance.now();
  const cold = await service.open(c.spec);
  const coldMs = performance.now() - t;
  t = performance.now();
  const warm = await service.open(c.spec);
  const cachedMs = performance.now() - t;
  service.close(warm);
  const ids = tokenizer.encode(c.output);
  const times: number[] = [];
  // Each walk opens a fresh matcher (the grammar is cached by then), so p99 has WALKS x tokens samples.
  for (let walk = 0; walk < WALKS; walk++) {
    const matcher = walk === 0 ? cold : await service.open(c.spec);
    let accept: number[] = [];
    for (const next of [...ids, eos]) {
      t = performance.now();
      const [r] = await service.step([{ matcher, accept }]);
      times.push(performance.now() - t);
      if (!r?.mask) throw new Error(`${c.name}: the grammar engine failed: ${r?.error}`);
      if (!isAllowed(r.mask, next)) throw new Error(`${c.name}: token ${next} of the valid output is masked`);
      accept = [next];
    }
    service.close(matcher);
  }
  times.sort((a, b) => a - b);
  rows.push({
    grammar: c.name,
    cold_compile_ms: coldMs,
    cached_compile_ms: cachedMs,
    tokens: ids.length + 1,
    samples: times.length,
    mask_ms_p50: pct(times, 0.5),
    mask_ms_p99: pct(times, 0.99),
  });
}
service.destroy();

if (json) {
  process.stdout.write(`${JSON.stringify({ bench: 'structured-vocab', node: nodeVersion(), encoding, vocab: vocab.vocabSize, init_ms: initMs, rows })}\n`);
} else {
  say(`grammar worker start (TokenizerInfo + compiler for ${vocab.vocabSize} tokens): ${initMs.toFixed(0)} ms`);
  say('| grammar | cold compile | cached | tokens x walks | mask p50 | mask p99 |');
  say('| --- | --- | --- | --- | --- | --- |');
  const ms = (v: number | string) => `${(v as number).toFixed((v as number) < 10 ? 2 : 0)} ms`;
  for (const r of rows) {
    say(`| ${r.grammar} | ${ms(r.cold_compile_ms!)} | ${ms(r.cached_compile_ms!)} | ${r.tokens} x ${WALKS} | ${ms(r.mask_ms_p50!)} | ${ms(r.mask_ms_p99!)} |`);
  }
}
