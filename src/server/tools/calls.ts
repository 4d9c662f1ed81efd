// Tool calling on /v1/chat/completions, as vLLM does it:
//   tool_choice "auto":     the model decides; the --tool-call-parser finds calls in its text. With a
//                           strict: true tool, a structural tag enforces calls once the parser's opening
//                           tag is written (structural-tag.ts).
//   tool_choice "required": the grammar forces a JSON array of 1 (or more, with parallel_tool_calls)
//                           {"name", "parameters"} objects, one of the tools each; the array becomes tool_calls,
//                           streamed as it is written (parsers.ts' required_array format, call-scanner.ts).
//   a named function:       the grammar forces that function's parameters; the output is its arguments.
//   tool_choice "none":     plain content (the template still sees the tools, vLLM's default).
// One ToolCallStream per choice turns text deltas into content and OpenAI tool-call deltas; a whole
// answer goes through the same stream, so streamed deltas assemble to exactly the non-streamed message.
// finish_reason "stop" reads "tool_calls" for auto and required calls, and stays "stop" for a named
// function, as OpenAI does (and vLLM since its PR #25054).
import { randomBytes } from 'node:crypto';
import type { GuidedDecoding } from '../../engine/types.js';
import type { ChatCompletionRequest, ToolCall, ToolCallDelta, ToolDefinition } from '../../protocol/types.js';
import { checkJsonSchema } from '../../structured/json-schema.js';
import { ApiError } from '../errors.js';
import { ToolCallParser, type ToolCallEvent, type ToolCallParserName } from './parsers.js';
import { hasStrictTool, strictToolsFormat } from './structural-tag.js';

/** How one request's answer is read. */
export type ToolMode =
  | { kind: 'none' }
  | { kind: 'auto'; parser: ToolCallParserName; parallel: boolean }
  | { kind: 'named'; name: string }
  | { kind: 'required'; parallel: boolean };

function invalidTools(message: string, param: string): ApiError {
  return new ApiError(400, 'invalid_request_error', message, param, null);
}

/**
 * The request's tool mode (400s for an inconsistent tools/tool_choice pair, as vLLM and OpenAI).
 * Without a parser, "auto" answers are plain content (nothing can read the model's calls).
 */
export function toolModeFor(body: Pick<ChatCompletionRequest, 'tools' | 'tool_choice' | 'parallel_tool_calls'>, parser: ToolCallParserName | null): ToolMode {
  const tools = body.tools ?? [];
  const choice = body.tool_choice ?? (tools.length ? 'auto' : 'none');
  if (choice === 'none') return { kind: 'none' };
  if (tools.length === 0) throw invalidTools(`tool_choice ${JSON.stringify(choice)} needs tools`, 'tool_choice');
  if (choice === 'auto') return parser === null ? { kind: 'none' } : { kind: 'auto', parser, parallel: body.parallel_tool_calls ?? true };
  if (choice === 'required') return { kind: 'required', parallel: body.parallel_tool_calls ?? true };
  const name = choice.function.name;
  if (!tools.some((t) => t.function.name === name)) {
    throw invalidTools(`tool_choice names the function "${name}", which is not in tools`, 'tool_choice');
  }
  return { kind: 'named', name };
}

/** A tool's parameters schema, checked here so that an unenforceable one is a 400 naming `tools`. */
function parametersOf(tool: ToolDefinition): Record<string, unknown> {
  const schema = (tool.function.parameters as Record<string, unknown> | undefined) ?? { type: 'object', properties: {} };
  checkJsonSchema(schema, 'tools');
  return schema;
}

/** The grammar a mode needs (vLLM's _get_json_schema_from_tool, and structural tags for strict tools in auto), or null. */
export function toolGuidedDecoding(mode: ToolMode, tools: readonly ToolDefinition[]): GuidedDecoding | null {
  if (mode.kind === 'auto') {
    return hasStrictTool(tools) ? { type: 'structural_tag', format: strictToolsFormat(mode.parser, tools, mode.parallel, parametersOf) } : null;
  }
  if (mode.kind === 'named') {
    const tool = tools.find((t) => t.function.name === mode.name)!;
    return { type: 'json_schema', schema: parametersOf(tool) };
  }
  if (mode.kind === 'required') {
    const schema: Record<string, unknown> = {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        anyOf: tools.map((t) => ({
          properties: { name: { type: 'string', enum: [t.function.name] }, parameters: parametersOf(t) },
          required: ['name', 'parameters'],
        })),
      },
    };
    if (!mode.parallel) schema.maxItems = 1;
    return { type: 'json_schema', schema };
  }
  return null;
}

export function newToolCallId(): string {
  return `call_${randomBytes(12).toString('hex')}`;
}

/** One push's worth of output: content to show and tool-call deltas (in order). */
export interface ToolStreamPiece {
  content: string;
  toolCalls: ToolCallDelta[];
}

/** One choice's reader: push text deltas in order, then finish() once. */
export class ToolCallStream {
  private readonly parser: ToolCallParser | null;
  private calls = 0;
  private namedStarted = false;

  constructor(private readonly mode: ToolMode) {
    this.parser = mode.kind === 'auto' ? new ToolCallParser(mode.parser) : mode.kind === 'required' ? new ToolCallParser('required_array') : null;
  }

  /** The choice's finish_reason: "stop" reads "tool_calls" once a call was produced, except for a named function (OpenAI keeps "stop"). */
  finishReason<R extends string | null>(reason: R): R | 'tool_calls' {
    return reason === 'stop' && this.calls > 0 && this.mode.kind !== 'named' ? 'tool_calls' : reason;
  }

  push(text: string): ToolStreamPiece {
    const mode = this.mode;
    if (mode.kind === 'none') return { content: text, toolCalls: [] };
    if (this.parser) {
      const split = this.parser.push(text);
      return { content: split.content, toolCalls: this.deltas(split.events) };
    }
    if (mode.kind === 'named') {
      // The output is the arguments: stream them as they come.
      const toolCalls: ToolCallDelta[] = [];
      if (!this.namedStarted && text !== '') {
        this.namedStarted = true;
        this.calls = 1;
        toolCalls.push({ index: 0, id: newToolCallId(), type: 'function', function: { name: mode.name, arguments: '' } });
      }
      if (text !== '') toolCalls.push({ index: 0, function: { arguments: text } });
      return { content: '', toolCalls };
    }
    return { content: '', toolCalls: [] };
  }

  finish(): ToolStreamPiece {
    if (this.parser) {
      const split = this.parser.flush();
      return { content: split.content, toolCalls: this.deltas(split.events) };
    }
    return { content: '', toolCalls: [] };
  }

  /** OpenAI's deltas: a call's first carries index, id, type, name and empty arguments; later ones argument text. */
  private deltas(events: readonly ToolCallEvent[]): ToolCallDelta[] {
    return events.map((e): ToolCallDelta => {
      if (e.type === 'start') return { index: this.calls++, id: newToolCallId(), type: 'function', function: { name: e.name, arguments: '' } };
      return { index: this.calls - 1, function: { arguments: e.text } };
    });
  }
}

/** Tool-call deltas folded into whole calls (what a client does with the stream). */
export function assembleToolCalls(deltas: readonly ToolCallDelta[]): ToolCall[] {
  const calls: ToolCall[] = [];
  for (const d of deltas) {
    let call = calls[d.index];
    if (!call) {
      call = { id: d.id ?? '', type: 'function', function: { name: d.function?.name ?? '', arguments: '' } };
      calls[d.index] = call;
    }
    call.function.arguments += d.function?.arguments ?? '';
  }
  return calls;
}

/** A whole answer read by a fresh stream: content (null when empty), tool calls and the finish_reason they make of `reason`. */
export function wholeToolAnswer<R extends string | null>(
  mode: ToolMode,
  text: string,
  reason: R,
): { content: string | null; toolCalls: ToolCall[]; finishReason: R | 'tool_calls' } {
  const stream = new ToolCallStream(mode);
  const a = stream.push(text);
  const b = stream.finish();
  const content = a.content + b.content;
  return {
    content: content === '' ? null : content,
    toolCalls: assembleToolCalls([...a.toolCalls, ...b.toolCalls]),
    finishReason: stream.finishReason(reason),
  };
}
