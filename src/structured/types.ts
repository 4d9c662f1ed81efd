// What the grammar service and its worker thread say to each other, and the grammar specs they share.

/** A grammar as the engine asks for it (GenerateRequest.guided is this type). */
export type GrammarSpec =
  | { type: 'json_object' }
  | { type: 'json_schema'; schema: Record<string, unknown> }
  | { type: 'regex'; pattern: string }
  | { type: 'choice'; choices: string[] }
  | { type: 'grammar'; ebnf: string }
  | { type: 'structural_tag'; format: StructuralTagFormat };

/**
 * The part of xgrammar's structural-tag language the server builds (xgrammar's structural_tag.d.ts,
 * the same JSON as the Python package's StructuralTag): free text, fixed strings, JSON-schema values,
 * sequences and alternatives of them, and tags that free text may open.
 */
export type StructuralTagFormat =
  | { type: 'any_text' }
  | { type: 'const_string'; value: string }
  | { type: 'json_schema'; json_schema: Record<string, unknown> | boolean }
  | { type: 'regex'; pattern: string }
  | { type: 'sequence'; elements: StructuralTagFormat[] }
  | { type: 'or'; elements: StructuralTagFormat[] }
  | StructuralTagTag
  | { type: 'triggered_tags'; triggers: string[]; tags: StructuralTagTag[]; at_least_one?: boolean; stop_after_first?: boolean };

/** A tag: its begin string, then its content, then its end string. */
export interface StructuralTagTag {
  type: 'tag';
  begin: string;
  content: StructuralTagFormat;
  end: string;
}

/** The model's vocabulary as xgrammar wants it: every id's token text (added tokens included), in id order. */
export interface GrammarVocab {
  tokens: string[];
  /** From the tokenizer's decoder: ByteLevel -> 'byte_level', ByteFallback -> 'byte_fallback', else 'raw'. */
  vocabType: 'byte_level' | 'byte_fallback' | 'raw';
  /** The model's vocab size (logits columns), >= tokens.length. */
  vocabSize: number;
  /** Tokens that end a grammar's output (the model's eos ids). */
  stopTokenIds: number[];
}

export interface StepItem {
  matcher: number;
  /** Tokens sampled since the last step, accepted before the next mask. */
  accept: number[];
}

export type ToWorker =
  | { op: 'init'; id: number; vocab: GrammarVocab }
  | { op: 'compile'; id: number; key: string; spec: GrammarSpec }
  | { op: 'open'; id: number; matcher: number; key: string; spec: GrammarSpec; replay: number[] }
  | { op: 'step'; id: number; items: StepItem[] }
  | { op: 'close'; matcher: number }
  /** Tests: make the WebAssembly instance abort, as a failed internal check does. */
  | { op: 'crash'; id: number };

export interface StepResult {
  /** The allowed-token bitmask for the next token; null when the item failed. */
  mask: Uint32Array | null;
  error?: string;
}

/** aborted: the WebAssembly instance aborted; the worker exits after this reply. */
export type FromWorker = { id: number; ok: true; value?: unknown; aborted?: boolean } | { id: number; ok: false; error: string; aborted: boolean };
