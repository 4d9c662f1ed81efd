// Tool-call parsers (serve --tool-call-parser, named as in vLLM, LMDeploy's names as aliases): find the
// calls a model wrote in its own format in a chat answer, incrementally, so a tag split across stream
// chunks ("<tool_" + "call>") is still found and never shown as content. Like reasoning/parser.ts,
// one parser per choice: push its text deltas in order, then flush once. The non-streaming answer is
// the same machine fed the whole text, so streamed pieces assemble to exactly the whole message.
//   hermes:      <tool_call>{"name": ..., "arguments": {...}}</tool_call>, any number, text around (Qwen2.5/Qwen3)
//   llama3_json: {"name": ..., "parameters": {...}} at the start (optionally after <|python_tag|>), several joined by ";"
//   internlm:    <|action_start|><|plugin|>{"name": ..., "parameters": {...}}<|action_end|> (InternLM2)
//   mistral:     [TOOL_CALLS][{"name": ..., "arguments": {...}}, ...] (or [TOOL_CALLS]name{...} of newer tokenizers)
// and, not a --tool-call-parser but read the same way, tool_choice "required"'s grammar-forced answer:
//   required_array: [{"name": ..., "parameters": {...}}, ...] and nothing else (vLLM's required-mode schema)
// A call's name and arguments are streamed as they are written once its JSON reads
// `{"name": ..., "arguments": {` (call-scanner.ts): from then on it is a call, even if cut off or
// malformed later (its arguments are then what the model wrote). A region that does not read like that
// is parsed whole when it closes; one whose JSON does not parse stays in the content, tags included
// (as vLLM does).

import { scanRegion, type RegionLayout, type ScannedCall } from './call-scanner.js';

export const TOOL_CALL_PARSERS = ['hermes', 'llama3_json', 'internlm', 'mistral'] as const;
export type ToolCallParserName = (typeof TOOL_CALL_PARSERS)[number];
/** What a ToolCallParser reads: a --tool-call-parser format, or the array tool_choice "required" forces. */
export type ToolCallFormatName = ToolCallParserName | 'required_array';
/** LMDeploy's names for the same formats. */
export const TOOL_CALL_PARSER_ALIASES: Readonly<Record<string, ToolCallParserName>> = {
  qwen: 'hermes',
  qwen2d5: 'hermes',
  qwen3: 'hermes',
  llama3: 'llama3_json',
};
/** Every name --tool-call-parser accepts. */
export const TOOL_CALL_PARSER_CHOICES = [...TOOL_CALL_PARSERS, ...Object.keys(TOOL_CALL_PARSER_ALIASES)];

export function resolveToolCallParser(name: string): ToolCallParserName {
  if ((TOOL_CALL_PARSERS as readonly string[]).includes(name)) return name as ToolCallParserName;
  const alias = TOOL_CALL_PARSER_ALIASES[name];
  if (alias) return alias;
  throw new Error(`unknown tool call parser "${name}"; known: ${TOOL_CALL_PARSER_CHOICES.join(', ')}`);
}

/** One call as the model wrote it: arguments already serialized as JSON text. */
export interface ParsedToolCall {
  name: string;
  arguments: string;
}

/**
 * The parser a model's chat template implies (serve without --tool-call-parser), or null: the
 * template's own tool-call markup names the format, the architecture settles InternLM2.
 */
export function detectToolCallParser(template: string | null, architecture: string | null = null): ToolCallParserName | null {
  if (architecture && /^InternLM2/i.test(architecture)) return 'internlm';
  if (template === null) return null;
  if (template.includes('<tool_call>')) return 'hermes';
  if (template.includes('[TOOL_CALLS]')) return 'mistral';
  if (template.includes('<|action_start|>') || template.includes('<|plugin|>')) return 'internlm';
  if (template.includes('<|python_tag|>') || (template.includes('<|start_header_id|>') && template.includes('tools'))) return 'llama3_json';
  return null;
}

/**
 * Special tokens some formats are made of: they must survive detokenization (vLLM's parsers turn
 * skip_special_tokens off the same way), or the parser never sees the tags.
 */
export function needsSpecialTokens(name: ToolCallParserName): boolean {
  return name === 'internlm' || name === 'mistral';
}

/** A call's start (its name; a new call) or more of the current call's arguments text. */
export type ToolCallEvent = { type: 'start'; name: string } | { type: 'arguments'; text: string };

/** The result of one push: content to show now, and call events in order. */
export interface ToolCallSplit {
  content: string;
  events: ToolCallEvent[];
}

/** Call events folded into whole calls. */
export function assembleCalls(events: readonly ToolCallEvent[]): ParsedToolCall[] {
  const calls: ParsedToolCall[] = [];
  for (const e of events) {
    if (e.type === 'start') calls.push({ name: e.name, arguments: '' });
    else calls[calls.length - 1]!.arguments += e.text;
  }
  return calls;
}

/** Whole calls as events. */
export function callEvents(calls: readonly ParsedToolCall[]): ToolCallEvent[] {
  return calls.flatMap((c): ToolCallEvent[] => [
    { type: 'start', name: c.name },
    { type: 'arguments', text: c.arguments },
  ]);
}

interface Format {
  /** Tags that open a call region anywhere in the text. */
  starts: readonly string[];
  /** The tag that closes a region; null: the region runs to the end of the answer. */
  end: string | null;
  /** The region may also open at the very start (after whitespace) with this text, which belongs to the body. */
  leading?: string;
  /** How a region's calls are laid out, for streaming them. */
  layout: RegionLayout;
  /** The calls in one region's body, or null when it is malformed. */
  parse(body: string): ParsedToolCall[] | null;
}

const FORMATS: Record<ToolCallFormatName, Format> = {
  hermes: { starts: ['<tool_call>'], end: '</tool_call>', layout: 'single', parse: oneCall },
  internlm: {
    starts: ['<|action_start|><|plugin|>'],
    end: '<|action_end|>',
    layout: 'single',
    parse: oneCall,
  },
  llama3_json: { starts: ['<|python_tag|>'], end: null, leading: '{', layout: 'semicolon', parse: llamaCalls },
  mistral: { starts: ['[TOOL_CALLS]'], end: null, layout: 'array', parse: mistralCalls },
  // The grammar makes the whole answer the array; text that is not one (no grammar) stays content.
  required_array: { starts: [], end: null, leading: '[', layout: 'array', parse: arrayCalls },
};

type Mode = 'start' | 'text' | 'call';

export class ToolCallParser {
  private readonly format: Format;
  private mode: Mode = 'start';
  /** Text not decided yet: a possible tag prefix, or a call region's body so far. */
  private held = '';
  /** The tag that opened the current region ('' for a leading one). */
  private openTag = '';
  /** Whitespace after the last content, shown only if more content follows (not around calls). */
  private pendingSpace = '';
  private sawCall = false;
  /** Arguments text length already emitted for each call of the open region that was streamed. */
  private streamed: number[] = [];

  constructor(readonly name: ToolCallFormatName) {
    this.format = FORMATS[name];
  }

  push(text: string): ToolCallSplit {
    const out: ToolCallSplit = { content: '', events: [] };
    let buffer = this.held + text;
    this.held = '';
    while (buffer.length > 0) {
      if (this.mode === 'start') {
        // Only formats with a leading opener (llama3_json's bare JSON) decide anything here.
        const leading = this.format.leading;
        const trimmed = buffer.trimStart();
        if (leading && trimmed === '') {
          this.held = buffer;
          return out;
        }
        if (leading && trimmed.startsWith(leading)) {
          this.enterCall(buffer.slice(0, buffer.length - trimmed.length)); // malformed: shown as written
          buffer = trimmed;
          continue;
        }
        this.mode = 'text';
        continue;
      }
      if (this.mode === 'text') {
        const found = firstTag(buffer, this.format.starts);
        if (found) {
          this.emitText(out, buffer.slice(0, found.at));
          this.enterCall(found.tag);
          buffer = buffer.slice(found.at + found.tag.length);
          continue;
        }
        const keep = Math.max(0, ...this.format.starts.map((tag) => partialTagLength(buffer, tag)));
        this.emitText(out, buffer.slice(0, buffer.length - keep));
        this.held = buffer.slice(buffer.length - keep);
        return out;
      }
      // mode 'call'
      const end = this.format.end;
      if (end === null) {
        this.held = buffer; // runs to the end of the answer
        this.streamCalls(out, buffer);
        return out;
      }
      const at = buffer.indexOf(end);
      if (at < 0) {
        this.held = buffer;
        // Text that may be the start of the end tag is not the body's (yet).
        this.streamCalls(out, buffer.slice(0, buffer.length - partialTagLength(buffer, end)));
        return out;
      }
      this.closeCall(out, buffer.slice(0, at), end);
      buffer = buffer.slice(at + end.length);
    }
    return out;
  }

  /** End of the answer: an open region is parsed as it stands; held text is content. */
  flush(): ToolCallSplit {
    const out: ToolCallSplit = { content: '', events: [] };
    const rest = this.held;
    this.held = '';
    if (this.mode === 'call') this.closeCall(out, rest, '');
    else this.emitText(out, rest);
    if (!this.sawCall) out.content += this.pendingSpace;
    this.pendingSpace = '';
    return out;
  }

  private enterCall(tag: string): void {
    this.mode = 'call';
    this.openTag = tag;
    this.streamed = [];
  }

  /** Streams the committed calls of the open region's body so far: new names, then new argument text. */
  private streamCalls(out: ToolCallSplit, body: string): void {
    this.emitScanned(out, scanRegion(body, this.format.layout).calls);
  }

  private emitScanned(out: ToolCallSplit, calls: readonly ScannedCall[]): void {
    if (calls.length > 0 && this.streamed.length === 0) {
      this.sawCall = true;
      this.pendingSpace = ''; // whitespace between content and a call is not content
    }
    calls.forEach((call, i) => {
      if (i === this.streamed.length) {
        this.streamed.push(0);
        out.events.push({ type: 'start', name: call.name });
      }
      const text = call.arguments.slice(this.streamed[i]!);
      if (text !== '') out.events.push({ type: 'arguments', text });
      this.streamed[i] = call.arguments.length;
    });
  }

  private closeCall(out: ToolCallSplit, body: string, endTag: string): void {
    this.mode = 'text';
    const scan = scanRegion(body, this.format.layout);
    let rest = body;
    if (scan.calls.length > 0) {
      const calls = scan.calls.map((c) => ({ ...c }));
      rest = body.slice(scan.restAt);
      if (scan.state === 'broken-arguments') {
        // A committed call stays a call: its arguments are the rest, as the model wrote them.
        calls[calls.length - 1]!.arguments += rest.trimEnd();
        rest = '';
      }
      this.emitScanned(out, calls);
      if (scan.state === 'broken' || rest.trim() === '') {
        this.emitText(out, rest);
        return;
      }
    }
    // What the scan could not stream: parsed whole (a different key order, string arguments, ...).
    const calls = this.format.parse(rest);
    if (calls === null || calls.length === 0) {
      this.emitText(out, scan.calls.length > 0 ? rest : this.openTag + body + endTag);
      return;
    }
    this.sawCall = true;
    this.pendingSpace = '';
    out.events.push(...callEvents(calls));
  }

  private emitText(out: ToolCallSplit, text: string): void {
    if (text === '') return;
    const trimmed = text.trimEnd();
    if (trimmed === '') {
      this.pendingSpace += text;
      return;
    }
    out.content += this.pendingSpace + trimmed;
    this.pendingSpace = text.slice(trimmed.length);
  }
}

/** A whole answer's content (null when none) and calls (non-streaming responses). */
export function extractToolCalls(name: ToolCallParserName, text: string): { content: string | null; calls: ParsedToolCall[] } {
  const parser = new ToolCallParser(name);
  const a = parser.push(text);
  const b = parser.flush();
  const content = a.content + b.content;
  return { content: content === '' ? null : content, calls: assembleCalls([...a.events, ...b.events]) };
}

function firstTag(text: string, tags: readonly string[]): { at: number; tag: string } | null {
  let best: { at: number; tag: string } | null = null;
  for (const tag of tags) {
    const at = text.indexOf(tag);
    if (at >= 0 && (best === null || at < best.at)) best = { at, tag };
  }
  return best;
}

/** Length of the longest suffix of text that is a proper prefix of tag. */
function partialTagLength(text: string, tag: string): number {
  for (let n = Math.min(text.length, tag.length - 1); n > 0; n--) if (tag.startsWith(text.slice(text.length - n))) return n;
  return 0;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** {"name": string, <argsKey> | "arguments" | "parameters": object} -> a call; anything else: null. */
function toCall(value: unknown): ParsedToolCall | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return null;
  const obj = value as Record<string, unknown>;
  if (typeof obj.name !== 'string' || obj.name === '') return null;
  const args = obj.arguments ?? obj.parameters ?? {};
  if (typeof args === 'string') {
    // Some models write the arguments already serialized.
    const parsed = parseJson(args);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return null;
    return { name: obj.name, arguments: JSON.stringify(parsed) };
  }
  if (typeof args !== 'object' || args === null || Array.isArray(args)) return null;
  return { name: obj.name, arguments: JSON.stringify(args) };
}

function oneCall(body: string): ParsedToolCall[] | null {
  const call = toCall(parseJson(body.trim()));
  return call ? [call] : null;
}

/** Llama 3.1+: one JSON object, or several separated by ";". */
function llamaCalls(body: string): ParsedToolCall[] | null {
  const whole = parseJson(body.trim());
  if (whole !== undefined) {
    const call = toCall(whole);
    return call ? [call] : null;
  }
  const calls: ParsedToolCall[] = [];
  for (const part of splitTopLevel(body, ';')) {
    const call = toCall(parseJson(part.trim()));
    if (!call) return null;
    calls.push(call);
  }
  return calls.length ? calls : null;
}

/** A JSON array of one or more calls; anything else: null. */
function arrayCalls(body: string): ParsedToolCall[] | null {
  const parsed = parseJson(body.trim());
  if (!Array.isArray(parsed)) return null;
  const calls = parsed.map(toCall);
  return calls.length && calls.every((c) => c !== null) ? (calls as ParsedToolCall[]) : null;
}

/** Mistral: a JSON array of calls, or (v11+ tokenizers) name{...} pairs each after [TOOL_CALLS]. */
function mistralCalls(body: string): ParsedToolCall[] | null {
  const trimmed = body.trim();
  const parsed = parseJson(trimmed);
  if (Array.isArray(parsed)) return arrayCalls(trimmed);
  if (parsed !== undefined) {
    const call = toCall(parsed);
    return call ? [call] : null;
  }
  const calls: ParsedToolCall[] = [];
  for (const part of trimmed.split('[TOOL_CALLS]')) {
    const m = /^\s*([A-Za-z0-9_.-]+)\s*(?:\[ARGS\])?\s*(\{[\s\S]*\})\s*$/.exec(part);
    if (!m) return null;
    const call = toCall({ name: m[1], arguments: parseJson(m[2]!) });
    if (!call) return null;
    calls.push(call);
  }
  return calls.length ? calls : null;
}

/** Splits on sep outside JSON strings and brackets. */
function splitTopLevel(text: string, sep: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let inString = false;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (inString) {
      if (ch === '\\') i++;
      else if (ch === '"') inString = false;
    } else if (ch === '"') inString = true;
    else if (ch === '{' || ch === '[') depth++;
    else if (ch === '}' || ch === ']') depth--;
    else if (ch === sep && depth === 0) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts.filter((p) => p.trim() !== '');
}
