// strict: true tools in tool_choice "auto", enforced as vLLM does with xgrammar's structural tags: the
// answer is free text until the model writes the tool-call parser's opening tag (the trigger); from
// there the grammar forces one of the tools' names, its arguments, and the closing tag, then the text
// is free again. Per OpenAI, strict is a property of each function: a strict tool's arguments must
// validate against its parameters, a non-strict tool's are any JSON object (its name is still one of
// the request's tools, as no other function can be called). The call's spelling is the one the
// parser reads and the chat templates render (a newline after <tool_call>, `"name": ..., "arguments": `).
import type { StructuralTagFormat } from '../../engine/types.js';
import type { ToolDefinition } from '../../protocol/types.js';
import type { ToolCallParserName } from './parsers.js';

type TagFormat = Extract<StructuralTagFormat, { type: 'tag' }>;

interface CallSpelling {
  /** Opening tags: each tag's begin starts with one, and free text may not contain one outside a call. */
  triggers: string[];
  /** The call's begin strings up to its arguments (one per opening tag, for the given name). */
  begins(name: string): string[];
  /** Closes the call object and the tag. */
  end: string;
  /** The parser reads the region to the end of the answer: no free text may follow a call. */
  runsToEnd: boolean;
}

const head = (argsKey: string, name: string) => `{"name": ${JSON.stringify(name)}, "${argsKey}": `;

const SPELLINGS: Record<ToolCallParserName, CallSpelling> = {
  hermes: { triggers: ['<tool_call>'], begins: (n) => [`<tool_call>\n${head('arguments', n)}`], end: '}\n</tool_call>', runsToEnd: false },
  internlm: {
    triggers: ['<|action_start|><|plugin|>'],
    begins: (n) => [`<|action_start|><|plugin|>\n${head('parameters', n)}`],
    end: '}<|action_end|>',
    runsToEnd: false,
  },
  llama3_json: {
    triggers: ['{"name": ', '<|python_tag|>'],
    begins: (n) => [head('parameters', n), `<|python_tag|>${head('parameters', n)}`],
    end: '}',
    runsToEnd: true,
  },
  mistral: { triggers: ['[TOOL_CALLS]'], begins: (n) => [`[TOOL_CALLS][${head('arguments', n)}`], end: '}]', runsToEnd: true },
};

/** Any JSON object: the arguments of a tool without strict. */
const ANY_OBJECT: Record<string, unknown> = { type: 'object' };

/** Whether the request has a strict tool, so "auto" needs a grammar. */
export function hasStrictTool(tools: readonly ToolDefinition[]): boolean {
  return tools.some((t) => t.function.strict === true);
}

/**
 * The structural tag for `tools` under `parser`. parametersOf returns a strict tool's checked schema.
 * With `parallel` false, or a format whose call region runs to the end of the answer (llama3_json,
 * mistral), the answer ends after the first call.
 */
export function strictToolsFormat(
  parser: ToolCallParserName,
  tools: readonly ToolDefinition[],
  parallel: boolean,
  parametersOf: (tool: ToolDefinition) => Record<string, unknown>,
): StructuralTagFormat {
  const spelling = SPELLINGS[parser];
  const tags: TagFormat[] = tools.flatMap((tool) => {
    const schema = tool.function.strict === true ? parametersOf(tool) : ANY_OBJECT;
    return spelling
      .begins(tool.function.name)
      .map((begin): TagFormat => ({ type: 'tag', begin, content: { type: 'json_schema', json_schema: schema }, end: spelling.end }));
  });
  return { type: 'triggered_tags', triggers: spelling.triggers, tags, stop_after_first: !parallel || spelling.runsToEnd };
}
