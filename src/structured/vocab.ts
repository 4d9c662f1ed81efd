// The vocabulary xgrammar needs, read from the model's tokenizer.json: every token's text in id
// order (added tokens included) and how the decoder turns it into bytes.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { GrammarVocab } from './types.js';

interface TokenizerJson {
  model?: { vocab?: Record<string, number> | [string, number][] };
  added_tokens?: { id: number; content: string }[];
  decoder?: unknown;
}

export function grammarVocab(modelDir: string, vocabSize: number, stopTokenIds: number[]): GrammarVocab {
  const json = JSON.parse(readFileSync(join(modelDir, 'tokenizer.json'), 'utf8')) as TokenizerJson;
  const tokens: string[] = [];
  const v = json.model?.vocab;
  if (Array.isArray(v)) v.forEach(([piece], id) => (tokens[id] = piece));
  else if (v) for (const [piece, id] of Object.entries(v)) tokens[id] = piece;
  for (const a of json.added_tokens ?? []) tokens[a.id] = a.content;
  for (let i = 0; i < tokens.length; i++) tokens[i] ??= '';
  return { tokens, vocabType: vocabType(json.decoder), vocabSize: Math.max(vocabSize, tokens.length), stopTokenIds };
}

function vocabType(decoder: unknown): GrammarVocab['vocabType'] {
  const types = new Set<string>();
  const walk = (d: unknown) => {
    if (!d || typeof d !== 'object') return;
    const o = d as { type?: string; decoders?: unknown[] };
    if (o.type) types.add(o.type);
    for (const c of o.decoders ?? []) walk(c);
  };
  walk(decoder);
  if (types.has('ByteLevel')) return 'byte_level';
  if (types.has('ByteFallback')) return 'byte_fallback';
  return 'raw';
}
