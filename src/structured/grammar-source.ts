// A grammar spec -> what xgrammar compiles: a JSON schema, a structural tag (regexes and tool-call
// formats) or EBNF.
import type { GrammarSpec } from './types.js';

export type GrammarSource = { kind: 'json_schema'; text: string } | { kind: 'structural_tag'; tag: unknown } | { kind: 'ebnf'; text: string };

export function grammarSource(spec: GrammarSpec): GrammarSource {
  switch (spec.type) {
    case 'json_object':
      return { kind: 'json_schema', text: '{"type":"object"}' };
    case 'json_schema':
      return { kind: 'json_schema', text: JSON.stringify(spec.schema) };
    case 'regex':
      return { kind: 'structural_tag', tag: { type: 'structural_tag', format: { type: 'regex', pattern: spec.pattern } } };
    case 'structural_tag':
      return { kind: 'structural_tag', tag: { type: 'structural_tag', format: spec.format } };
    case 'choice':
      return { kind: 'ebnf', text: `root ::= ${spec.choices.map(ebnfString).join(' | ')}` };
    case 'grammar':
      return { kind: 'ebnf', text: spec.ebnf };
  }
}

/** A string literal of xgrammar's EBNF: ASCII printables as they are, everything else escaped. */
export function ebnfString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"' || ch === '\\') out += `\\${ch}`;
    else if (c >= 0x20 && c < 0x7f) out += ch;
    else if (c <= 0xffff) out += `\\u${c.toString(16).padStart(4, '0')}`;
    else out += `\\U${c.toString(16).padStart(8, '0')}`;
  }
  return `${out}"`;
}

/** The cache key of a spec: its grammar text. */
export function grammarKey(spec: GrammarSpec): string {
  const src = grammarSource(spec);
  return src.kind === 'structural_tag' ? `structural_tag:${JSON.stringify(src.tag)}` : `${src.kind}:${src.text}`;
}
